"""How to build an engine for a database URL, and schema migration.

Which engines a process keeps, and when they are dropped after a fork, is the
runtime's job (reviewpacks/runtime.py); this module only knows how to make one.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
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
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


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
