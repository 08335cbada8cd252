"""The migration environment as released up to revision 0003, kept to build a legacy database in tests.

Those releases kept their history in Alembic's default ``alembic_version`` table and
named their own tables ``review_packs``, ``audit_logs`` and ``notifications``; the
upgrade test starts from exactly that state.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

config = context.config


def run_migrations_online() -> None:
    connectable = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
