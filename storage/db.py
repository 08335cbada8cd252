"""How to build an engine for a database URL, and schema migration.

Which engines a process keeps, and when they are dropped after a fork, is the
runtime's job (reviewpacks/runtime.py); this module only knows how to make one.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The project's own Alembic version table, so that a host's Alembic history in the default
# `alembic_version` and ours never meet. Releases up to revision 0003 used the default name.
VERSION_TABLE = "reviewpacks_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"


class DatabaseUnavailable(Exception):
    """The database connection broke (terminated, network gone) in the middle of work."""


class SchemaNotReady(Exception):
    """The database is not migrated to the revision this code needs."""

    def __init__(self, current: str | None, head: str):
        self.current, self.head = current, head
        at = f"at revision {current}" if current else "not migrated"
        super().__init__(f"the database is {at}, this version needs {head}: run `reviewpacks db upgrade`")


def create_engine_for(url: str) -> Engine:
    """A new engine with the pool and connection options this project needs for ``url``."""
    if url.startswith("sqlite"):
        # A worker process and the producer share the file: wait for locks instead of failing.
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    engine = create_engine(url, pool_size=5, max_overflow=5)
    _ping_idle_connections(engine)
    return engine


# A connection back from use this recently was alive a moment ago: a ping would cost every busy
# caller a round trip for nothing (HikariCP skips its liveness check the same way, for 500 ms).
PING_IDLE_AFTER = 0.5
_RETURNED = "reviewpacks_returned_at"


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a pooled connection at checkout when it sat idle, and replace it when it is gone.

    This is SQLAlchemy's pool_pre_ping for connections idle for PING_IDLE_AFTER seconds or
    more: after a database restart or a dropped network, the pool hands out a new connection
    instead of a dead one. A connection whose server went away within the last half second is
    found by its next statement instead: that statement fails, and SQLAlchemy replaces every
    connection of the pool that is older than the failure.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection, record) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection, record) -> None:
        if record is not None:
            record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, proxy) -> None:
        returned = record.info.get(_RETURNED)
        if returned is not None and time.monotonic() - returned < PING_IDLE_AFTER:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool discards this connection and checks out another (SQLAlchemy's checkout contract).
                raise exc.DisconnectionError("the pooled connection is gone") from error
            raise


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit, because callers return them as views."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Raise SchemaNotReady unless the database is at the head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotReady(current, head)
