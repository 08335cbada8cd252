FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
RUN useradd --create-home --uid 10001 reviewpacks
COPY pyproject.toml README.md alembic.ini settings.py celeryconfig.py ./
COPY domain ./domain
COPY storage ./storage
COPY workers ./workers
COPY scheduler ./scheduler
RUN pip install --no-cache-dir ".[server]"
USER reviewpacks
CMD ["celery", "-A", "workers.app", "worker", "-Q", "review_packs,maintenance", "--loglevel=INFO"]
