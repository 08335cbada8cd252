"""`python -m workers.healthcheck`: exit 0 only when this worker can reach the database and the broker.

The container healthcheck runs it.  A worker whose broker connection is gone answers
no ping, and one that cannot reach PostgreSQL would fail every pack it takes, so either
makes the container unhealthy.  Messages name what failed, never a URL or password.
"""

from __future__ import annotations

import socket
import sys

from sqlalchemy import create_engine, text

from reviewpacks.settings import Settings


def check_database(settings: Settings) -> str | None:
    engine = create_engine(settings.database_url, connect_args={"connect_timeout": 5} if settings.database_url.startswith("postgresql") else {})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure makes the worker unhealthy
        return f"database unreachable ({type(exc).__name__})"
    finally:
        engine.dispose()
    return None


def check_broker(node: str) -> str | None:
    from workers.app import app

    try:
        # The ping travels through the broker to this worker's own consumer and back.
        replies = app.control.ping(destination=[node], timeout=10)
    except Exception as exc:  # noqa: BLE001
        return f"broker unreachable ({type(exc).__name__})"
    if not any(node in reply for reply in replies):
        return f"worker {node} did not answer a ping through the broker"
    return None


def main(argv: list[str]) -> int:
    node = argv[1] if len(argv) > 1 else f"celery@{socket.gethostname()}"
    settings = Settings.from_env()
    problems = [problem for problem in (check_database(settings), check_broker(node)) if problem]
    for problem in problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
