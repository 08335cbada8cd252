"""Watching the statements a test's code sends to the database, and ending a server connection under it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, event


@contextmanager
def recorded_statements(target: Any) -> Iterator[list[tuple[str, Any]]]:
    """Every statement ``target`` (an Engine or a Connection) sends inside the block, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, *_):
        sent.append((statement, parameters))

    event.listen(target, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(target, "before_cursor_execute", record)


def backend_pid(engine: Engine) -> int:
    """The server process behind the connection the engine's pool hands out next."""
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def terminate_backend(pg_url: str, pid: int) -> None:
    """End a PostgreSQL server process, as a restart or a dropped network would, and wait until it is gone."""
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        deadline = time.monotonic() + 5
        # The backend is gone once the server no longer lists it.
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.02)
