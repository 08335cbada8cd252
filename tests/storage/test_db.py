"""The engine's pool on real PostgreSQL: idle connections are pinged, busy ones are not."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import exc

from storage import db
from tests.support.sql import backend_pid, terminate_backend


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


def test_a_connection_back_from_use_a_moment_ago_is_handed_out_without_a_ping(engine, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_AFTER", 30.0)  # "a moment ago", however slow the machine is today
    first = backend_pid(engine)
    again = [backend_pid(engine) for _ in range(5)]
    assert again == [first] * 5 and engine.pings == []


def test_an_idle_connection_is_pinged_and_a_dead_one_replaced(engine, pg_url):
    first = backend_pid(engine)
    time.sleep(db.PING_IDLE_AFTER + 0.05)
    assert backend_pid(engine) == first and len(engine.pings) == 1

    terminate_backend(pg_url, first)
    time.sleep(db.PING_IDLE_AFTER + 0.05)
    replaced = backend_pid(engine)
    # The ping found the connection dead; the pool opened another and the caller never saw an error.
    assert replaced != first and len(engine.pings) == 2


def test_a_connection_that_died_within_the_window_fails_once_and_the_pool_recovers(engine, pg_url, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_AFTER", 30.0)  # however long the termination takes, still "a moment ago"
    first = backend_pid(engine)
    terminate_backend(pg_url, first)
    with pytest.raises(exc.OperationalError) as raised:
        backend_pid(engine)
    assert raised.value.connection_invalidated
    assert backend_pid(engine) != first and engine.pings == []
