"""Statements run on the driver's cursor (storage/driver.py), against real PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from sqlalchemy import BigInteger, Connection, bindparam, event, exc, insert, literal, select

from reviewpacks import runtime
from storage import db
from storage.demo_data import seed_demo
from storage.driver import DriverStatement
from storage.models import AuditLog, Json, Tenant, UTCDateTime
from tests.support.sql import backend_pid, terminate_backend

# Every kind of value the request path reads and binds: ids, a UUID, a JSON document, an aware
# timestamp (UTCDateTime's processors), a literal of the statement itself, and bound JSON and time.
TENANT = DriverStatement(
    select(
        Tenant.id,
        Tenant.external_id,
        Tenant.name,
        Tenant.hardening,
        Tenant.hardening_updated_at,
        literal("constant").label("constant"),
        bindparam("document", type_=Json).label("document"),
        bindparam("at", type_=UTCDateTime).label("at"),
    ).where(Tenant.id == bindparam("tenant_id", type_=BigInteger))
)
# A data-modifying statement, as the request's reuse is: the audit row it writes, and its id.
_WRITTEN = (
    insert(AuditLog)
    .from_select(
        ["workspace_id", "action", "resource_type", "metadata", "created_at"],
        select(
            bindparam("workspace_id", type_=BigInteger), literal("driver.test"), literal("test"),
            bindparam("details", type_=Json), bindparam("at", type_=UTCDateTime),
        ),
    )
    .returning(AuditLog.id)
    .cte("written")
)
WRITE = DriverStatement(select(_WRITTEN.c.id))


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request, pg_url, tmp_path):
    if request.param == "postgresql":
        return pg_url
    url = f"sqlite:///{tmp_path / 'driver.db'}"
    db.upgrade(url)
    return url


@pytest.fixture
def engine(url):
    engine = db.create_engine_for(url)
    yield engine
    engine.dispose()


@pytest.fixture
def seeded(url):
    with runtime.session_factory(url)() as session:
        ids = seed_demo(session, findings=0)
        session.get(Tenant, ids.tenant_id).hardening_updated_at = dt.datetime(2026, 11, 30, 12, 0, 1, 250, tzinfo=dt.timezone.utc)
        session.commit()
    return ids


class Spy:
    """Counts the statements SQLAlchemy's Connection.execute ran, calling through to it."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = Connection.execute

        def counted(conn, *args, **kwargs):
            self.calls += 1
            return original(conn, *args, **kwargs)

        monkeypatch.setattr(Connection, "execute", counted)


def _params(tenant_id: int) -> dict:
    at = dt.datetime(2026, 11, 30, 13, 0, 0, 500, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    return {"tenant_id": tenant_id, "document": {"b": [1, {"c": None}], "a": "ü"}, "at": at}


def test_a_row_from_the_driver_equals_sqlalchemys_value_for_value(engine, seeded, monkeypatch):
    params = _params(seeded.tenant_id)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        expected = conn.execute(TENANT.statement, params).one()
        spy = Spy(monkeypatch)
        row = TENANT.first(conn, params)
        missing = TENANT.first(conn, {**params, "tenant_id": seeded.tenant_id + 1000})
    assert tuple(row) == tuple(expected) and missing is None
    assert [type(v) for v in row] == [type(v) for v in expected]
    assert row.hardening_updated_at.tzinfo == dt.timezone.utc and row.at == params["at"] and row.at.tzinfo == dt.timezone.utc
    assert isinstance(row.external_id, uuid.UUID) and row.constant == "constant" and row.document == params["document"]
    # On PostgreSQL with psycopg the driver ran the statement; elsewhere SQLAlchemy did.
    assert spy.calls == (0 if engine.dialect.name == "postgresql" else 2)


def test_a_write_runs_in_autocommit_or_in_sqlalchemys_own_transaction(pg_url):
    engine = db.create_engine_for(pg_url)
    with runtime.session_factory(pg_url)() as session:
        workspace_id = seed_demo(session, findings=0).workspace_id
    params = {"workspace_id": workspace_id, "details": {"k": "v"}, "at": dt.datetime.now(dt.timezone.utc)}
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            kept = WRITE.first(conn, params).id
        # Outside autocommit the statement belongs to SQLAlchemy's transaction: commit-as-you-go keeps
        # it, and a rollback undoes it (SQLAlchemy must know of the transaction that it commits).
        with engine.connect() as conn:
            committed = WRITE.first(conn, params).id
            conn.commit()
        with engine.connect() as conn:
            with conn.begin() as transaction:
                undone = WRITE.first(conn, params).id
                transaction.rollback()
    finally:
        engine.dispose()
    with runtime.session_factory(pg_url)() as session:
        found = set(session.execute(select(AuditLog.id).where(AuditLog.action == "driver.test")).scalars())
        assert found == {kept, committed} and undone not in found
        assert session.get(AuditLog, kept).details == {"k": "v"}


def test_a_listener_on_the_engine_sees_the_statement(engine, seeded):
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = TENANT.first(conn, _params(seeded.tenant_id))
    # A host's tracing on a shared engine keeps seeing every statement: with a listener, SQLAlchemy runs it.
    assert row.id == seeded.tenant_id and len(seen) == 1 and seen[0].startswith("SELECT tenants.id")


def test_an_expanding_in_is_refused_when_compiled(pg_url):
    engine = db.create_engine_for(pg_url)
    statement = DriverStatement(select(Tenant.id).where(Tenant.id.in_([1, 2])))
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            with pytest.raises(ValueError, match="expanding parameter"):
                statement.first(conn, {})
    finally:
        engine.dispose()


def test_a_connection_that_died_fails_as_sqlalchemy_reports_it_and_the_pool_recovers(pg_url, seeded, monkeypatch):
    monkeypatch.setattr(db, "PING_IDLE_AFTER", 30.0)  # no ping at checkout: the statement meets the dead connection
    engine = db.create_engine_for(pg_url)
    try:
        first = backend_pid(engine)
        terminate_backend(pg_url, first)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            with pytest.raises(exc.OperationalError) as raised:
                TENANT.first(conn, _params(seeded.tenant_id))
        # Wrapped and flagged as SQLAlchemy does for any statement.
        assert raised.value.connection_invalidated and isinstance(raised.value.orig, psycopg.OperationalError)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            assert TENANT.first(conn, _params(seeded.tenant_id)).id == seeded.tenant_id
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != first
    finally:
        engine.dispose()
