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
OWN_TABLES = {"review_packs", "audit_logs", "notifications", "finding_stats"}


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


def _seed_before_0005(url: str, *, active_packs: int = 1) -> None:
    """Rows as a database at revision 0003 holds them: findings, a review pack whose review is gone."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO workspaces (id, name) VALUES (1, 'w')"))
        conn.execute(
            text("INSERT INTO tenants (id, workspace_id, external_id, name) VALUES (1, 1, :u, 't')"),
            {"u": "3f2504e04f8941d39a0c0305e82c3301" if url.startswith("sqlite") else "3f2504e0-4f89-41d3-9a0c-0305e82c3301"},
        )
        for i in range(3):
            conn.execute(
                text(
                    "INSERT INTO findings (tenant_id, finding_type, severity, status, subject_type, title, evidence, updated_at) "
                    "VALUES (1, 'x', 'high', 'new', 'user', :t, '{}', CURRENT_TIMESTAMP)"
                ),
                {"t": f"f{i}"},
            )
        conn.execute(
            text(
                "INSERT INTO operation_runs (id, workspace_id, tenant_id, type, status, context, created_at) VALUES "
                "(1, 1, 1, 'tenant.review_pack.generate', 'completed', '{\"review_id\": 5}', CURRENT_TIMESTAMP), "
                "(2, 1, 1, 'tenant.review_pack.generate', 'completed', '{}', CURRENT_TIMESTAMP)"
            )
        )
        # Pack 1 came from review 5, since deleted (tenant_review_id SET NULL); pack 2 is a tenant pack.
        conn.execute(
            text(
                "INSERT INTO review_packs (workspace_id, tenant_id, operation_run_id, status, options, summary, created_at, updated_at) "
                "VALUES (1, 1, 1, 'ready', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP), "
                "(1, 1, 2, 'ready', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        for _ in range(active_packs):
            conn.execute(
                text(
                    "INSERT INTO review_packs (workspace_id, tenant_id, status, options, summary, created_at, updated_at) "
                    "VALUES (1, 1, 'queued', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
    engine.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0005_starts_counters_from_existing_rows_and_recognises_review_packs(scratch_pg, tmp_path, dialect):
    url = scratch_pg if dialect == "postgresql" else f"sqlite:///{tmp_path / 'embedded.db'}"
    db.upgrade(url, "0003")
    _seed_before_0005(url)
    db.upgrade(url, "0005")
    engine = create_engine(url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT changes FROM finding_stats WHERE tenant_id = 1")).scalar_one() == 3
        kinds = conn.execute(text("SELECT operation_run_id, kind FROM review_packs WHERE operation_run_id IS NOT NULL ORDER BY 1")).all()
        assert [tuple(k) for k in kinds] == [(1, "review"), (2, "tenant")]
        # The triggers count the host's writes from now on, on either dialect.
        conn.execute(text("UPDATE findings SET last_seen_at = CURRENT_TIMESTAMP WHERE title = 'f0'"))
        after_update = conn.execute(text("SELECT changes FROM finding_stats WHERE tenant_id = 1")).scalar_one()
        conn.execute(text("DELETE FROM findings WHERE title = 'f1'"))
        after_delete = conn.execute(text("SELECT changes FROM finding_stats WHERE tenant_id = 1")).scalar_one()
        assert 3 < after_update < after_delete
        # A second queued pack for the tenant is refused by the database itself.
        with pytest.raises(Exception, match="uq_review_packs_one_active_per_tenant|UNIQUE constraint failed"):
            with conn.begin_nested():
                conn.execute(
                    text(
                        "INSERT INTO review_packs (workspace_id, tenant_id, status, options, summary, created_at, updated_at) "
                        "VALUES (1, 1, 'generating', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
    engine.dispose()
    db.downgrade(url, "0003")
    assert "finding_stats" not in _tables(url)


def test_0005_stops_with_a_message_when_a_tenant_has_two_active_packs(scratch_pg):
    db.upgrade(scratch_pg, "0003")
    _seed_before_0005(scratch_pg, active_packs=2)
    with pytest.raises(RuntimeError, match="more than one queued or generating pack: 1;"):
        db.upgrade(scratch_pg, "0005")
