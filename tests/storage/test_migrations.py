"""The schema exists only through Alembic: up, down and up again, on PostgreSQL and SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from storage import db
from storage.models import Base
from tests.conftest import PG_ADMIN_URL, ROOT, _recreate_database

CONTRACT_TABLES = {
    "workspaces",
    "tenants",
    "users",
    "workspace_memberships",
    "findings",
    "stored_reports",
    "operation_runs",
    "tenant_reviews",
}
OWN_TABLES = {"review_packs", "audit_logs", "notifications"}


@pytest.fixture
def scratch_pg():
    url = _recreate_database(f"reviewpacks_migrations_{os.getpid()}")
    yield url
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_matches_the_models(scratch_pg):
    db.upgrade(scratch_pg)
    assert _tables(scratch_pg) == CONTRACT_TABLES | OWN_TABLES
    engine = create_engine(scratch_pg)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_partial_unique_index_ignores_expired_and_failed_packs(scratch_pg):
    db.upgrade(scratch_pg)
    engine = create_engine(scratch_pg)
    with engine.connect() as conn:
        definition = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_review_packs_active_fingerprint'")
        ).scalar_one()
    engine.dispose()
    assert "UNIQUE INDEX" in definition
    assert "(workspace_id, tenant_id, fingerprint)" in definition
    assert "fingerprint IS NOT NULL" in definition
    assert "'expired'" in definition and "'failed'" in definition


def test_constraints_are_named(scratch_pg):
    db.upgrade(scratch_pg)
    engine = create_engine(scratch_pg)
    inspector = inspect(engine)
    for table in CONTRACT_TABLES | OWN_TABLES:
        assert inspector.get_pk_constraint(table)["name"] == f"pk_{table}"
        for fk in inspector.get_foreign_keys(table):
            assert fk["name"].startswith(f"fk_{table}_"), fk
    engine.dispose()


def test_downgrade_to_base_and_up_again(scratch_pg):
    db.upgrade(scratch_pg)
    db.downgrade(scratch_pg, "base")
    assert _tables(scratch_pg) == set()
    db.upgrade(scratch_pg)
    assert _tables(scratch_pg) == CONTRACT_TABLES | OWN_TABLES


def test_alembic_command_line_downgrades_to_base(scratch_pg):
    """`alembic downgrade base` from the project root, configured by REVIEWPACKS_DATABASE_URL."""
    env = {**os.environ, "REVIEWPACKS_DATABASE_URL": scratch_pg}
    subprocess.run([sys.executable, "-m", "workers.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True)
    assert _tables(scratch_pg) == CONTRACT_TABLES | OWN_TABLES
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run([str(alembic), "downgrade", "base"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert _tables(scratch_pg) == set()


def test_sqlite_embedded_default_migrates_up_and_down(tmp_path):
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    db.upgrade(url)
    assert _tables(url) == CONTRACT_TABLES | OWN_TABLES
    db.downgrade(url, "base")
    assert _tables(url) == set()
