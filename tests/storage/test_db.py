"""The engine's pool on real PostgreSQL: idle connections are pinged, busy ones are not."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import exc

from storage import db


@pytest.fixture
def engine(pg_url, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_AFTER", 0.2)
    engine = db.create_engine_for(pg_url)
    pings: list[object] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted)
    engine.pings = pings
    yield engine
    engine.dispose()


def _backend(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()


def _terminate(pg_url: str, pid: int) -> None:
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    # The backend is gone once the server no longer lists it.
    deadline = time.monotonic() + 5
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as admin:
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_a_connection_back_from_use_a_moment_ago_is_handed_out_without_a_ping(engine, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_AFTER", 30.0)  # "a moment ago", however slow the machine is today
    first = _backend(engine)
    again = [_backend(engine) for _ in range(5)]
    assert again == [first] * 5 and engine.pings == []


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(engine, pg_url):
    first = _backend(engine)
    time.sleep(db.PING_IDLE_AFTER + 0.05)
    assert _backend(engine) == first and len(engine.pings) == 1

    _terminate(pg_url, first)
    time.sleep(db.PING_IDLE_AFTER + 0.05)
    replaced = _backend(engine)
    # The ping found the connection dead; the pool opened another and the caller never saw an error.
    assert replaced != first and len(engine.pings) == 2


def test_a_connection_that_died_within_the_window_fails_once_and_the_pool_recovers(engine, pg_url, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_AFTER", 30.0)  # however long the termination takes, still "a moment ago"
    first = _backend(engine)
    _terminate(pg_url, first)
    with pytest.raises(exc.OperationalError) as raised:
        _backend(engine)
    assert raised.value.connection_invalidated
    assert _backend(engine) != first and engine.pings == []
