FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN useradd --create-home --uid 10001 reviewpacks
# Every dependency at the version constraints.txt pins (generated with pip freeze from a
# venv holding `.[server]`; see README), so two builds of one commit run the same code.
COPY constraints.txt ./
COPY pyproject.toml README.md alembic.ini celeryconfig.py flowerconfig.py ./
COPY reviewpacks ./reviewpacks
COPY domain ./domain
COPY storage ./storage
COPY workers ./workers
COPY scheduler ./scheduler
RUN pip install --no-cache-dir --constraint constraints.txt '.[server]'
USER reviewpacks
CMD ["celery", "-A", "workers.app", "worker", "-Q", "review_packs,maintenance", "--loglevel=INFO"]
