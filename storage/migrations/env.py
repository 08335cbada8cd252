"""Alembic environment: migrates the database named by REVIEWPACKS_DATABASE_URL.

The project keeps its migration history in its own version table,
``reviewpacks_alembic_version``, so that it can live in a database whose host
application runs its own Alembic history in the default ``alembic_version``.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, PrimaryKeyConstraint, String, Table, create_engine, inspect, pool, select

from storage.db import LEGACY_VERSION_TABLE, VERSION_TABLE
from storage.models import Base

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    # Only `alembic` run by hand lacks a URL; storage.db always passes one.
    from reviewpacks.settings import Settings

    return Settings.from_env().database_url


def _carry_over_legacy_version(connection: Connection) -> None:
    """Move the project's row out of ``alembic_version``, where releases up to 0003 kept it.

    The row is the project's only when its revision is one of ours and the legacy
    ``review_packs`` table is there too; a host's own row is never touched. When the
    legacy table held nothing else, it was the project's alone and is dropped.
    """
    inspector = inspect(connection)
    if inspector.has_table(VERSION_TABLE) or not inspector.has_table(LEGACY_VERSION_TABLE):
        return
    if not inspector.has_table("review_packs"):
        return
    ours = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    legacy = Table(LEGACY_VERSION_TABLE, MetaData(), Column("version_num", String(32)))
    rows = [row for row in connection.execute(select(legacy.c.version_num)).scalars() if row in ours]
    if len(rows) != 1:
        return
    version = Table(
        VERSION_TABLE,
        MetaData(),
        Column("version_num", String(32), nullable=False),
        PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
    )
    version.create(connection)
    connection.execute(version.insert().values(version_num=rows[0]))
    connection.execute(legacy.delete().where(legacy.c.version_num == rows[0]))
    if connection.execute(select(legacy.c.version_num)).first() is None:
        legacy.drop(connection)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = create_engine(_url(), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            version_table=VERSION_TABLE,
        )
        with context.begin_transaction():
            _carry_over_legacy_version(connection)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
