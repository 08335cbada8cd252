"""The schema exists only through Alembic: up, down and up again, on PostgreSQL and SQLite.

Also beside a host application's schema (its own `users`, `notifications` and Alembic
history), and from a database that releases up to revision 0003 migrated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from storage import db, queries
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
OWN_TABLES = {
    "reviewpacks_packs", "reviewpacks_audit_logs", "reviewpacks_notifications", "reviewpacks_finding_stats", "reviewpacks_finding_counts"
}
LEGACY_MIGRATIONS = Path(__file__).resolve().parent / "legacy_migrations"


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
        return set(inspect(engine).get_table_names()) - {db.VERSION_TABLE}
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_matches_the_models(scratch_pg):
    db.upgrade(scratch_pg)
    assert _tables(scratch_pg) == CONTRACT_TABLES | OWN_TABLES
    engine = create_engine(scratch_pg)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_partial_unique_index_ignores_expired_and_failed_packs(scratch_pg):
    db.upgrade(scratch_pg)
    engine = create_engine(scratch_pg)
    with engine.connect() as conn:
        definition = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_reviewpacks_packs_active_fingerprint'")
        ).scalar_one()
    engine.dispose()
    assert "UNIQUE INDEX" in definition and "reviewpacks_packs" in definition
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
    # The source tables belong to the host application: a downgrade never drops them.
    assert _tables(scratch_pg) == CONTRACT_TABLES
    db.upgrade(scratch_pg)
    assert _tables(scratch_pg) == CONTRACT_TABLES | OWN_TABLES


def test_alembic_command_line_downgrades_to_base(scratch_pg):
    """`alembic downgrade base` from the project root, configured by REVIEWPACKS_DATABASE_URL."""
    env = {**os.environ, "REVIEWPACKS_DATABASE_URL": scratch_pg}
    subprocess.run([sys.executable, "-m", "workers.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True)
    assert _tables(scratch_pg) == CONTRACT_TABLES | OWN_TABLES
    alembic = Path(sys.executable).with_name("alembic")
    subprocess.run([str(alembic), "downgrade", "base"], cwd=ROOT, env=env, check=True, capture_output=True)
    assert _tables(scratch_pg) == CONTRACT_TABLES


def test_sqlite_embedded_default_migrates_up_and_down(tmp_path):
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    db.upgrade(url)
    assert _tables(url) == CONTRACT_TABLES | OWN_TABLES
    db.downgrade(url, "base")
    assert _tables(url) == CONTRACT_TABLES
    db.upgrade(url)
    assert _tables(url) == CONTRACT_TABLES | OWN_TABLES


HOST_SCHEMA = """
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('hostapp_0042');
CREATE TABLE users (id SERIAL PRIMARY KEY, email VARCHAR(320) NOT NULL UNIQUE, display_name VARCHAR(255) NOT NULL,
                    password_hash TEXT);
CREATE TABLE workspaces (id SERIAL PRIMARY KEY, name VARCHAR(255) NOT NULL, plan TEXT);
CREATE TABLE tenants (id SERIAL PRIMARY KEY, workspace_id INTEGER NOT NULL REFERENCES workspaces (id),
                      external_id UUID NOT NULL UNIQUE, name VARCHAR(255) NOT NULL, hardening JSONB NOT NULL DEFAULT '{}');
CREATE TABLE notifications (id SERIAL PRIMARY KEY, recipient TEXT NOT NULL, message TEXT NOT NULL);
INSERT INTO users (email, display_name, password_hash) VALUES ('owner@host.example', 'Host Owner', 'x');
INSERT INTO notifications (recipient, message) VALUES ('owner@host.example', 'welcome');
"""


def _columns(engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_db_upgrade_beside_a_host_schema_and_its_alembic_history(scratch_pg):
    engine = create_engine(scratch_pg)
    with engine.begin() as conn:
        for statement in filter(str.strip, HOST_SCHEMA.split(";")):
            conn.execute(text(statement))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVIEWPACKS_")}
    env["REVIEWPACKS_DATABASE_URL"] = scratch_pg
    upgrade = subprocess.run(
        [sys.executable, "-m", "workers.cli", "db", "upgrade"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert upgrade.returncode == 0, upgrade.stderr

    with engine.connect() as conn:
        # The host's Alembic history is untouched; ours is in its own table.
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["hostapp_0042"]
        assert conn.execute(text(f"SELECT version_num FROM {db.VERSION_TABLE}")).scalar_one() == db.head_revision()
        # The host's notifications table, columns and row, is its own; ours stands beside it.
        assert _columns(engine, "notifications") == {"id", "recipient", "message"}
        assert conn.execute(text("SELECT message FROM notifications")).scalar_one() == "welcome"
        # Existing source tables keep their rows and columns, and gain only the project's bookkeeping columns.
        assert conn.execute(text("SELECT password_hash FROM users")).scalar_one() == "x"
        assert _columns(engine, "users") == {"id", "email", "display_name", "password_hash"}
        assert _columns(engine, "tenants") >= {"external_id", "hardening", "hardening_updated_at"}
        assert "plan" in _columns(engine, "workspaces")
    assert _tables(scratch_pg) >= CONTRACT_TABLES | OWN_TABLES | {"notifications"}

    # The client works on the host's tables: seed through the CLI, then request a pack.
    seeded = subprocess.run(
        [sys.executable, "-m", "workers.cli", "seed-demo", "--findings", "3"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() > 1

    db.downgrade(scratch_pg, "base")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["hostapp_0042"]
        assert conn.execute(text("SELECT message FROM notifications")).scalar_one() == "welcome"
    assert _tables(scratch_pg) == CONTRACT_TABLES | {"notifications", "alembic_version"}
    engine.dispose()


def _legacy_upgrade(url: str, tmp_path: Path) -> None:
    """Migrate with the history exactly as released up to revision 0003.

    0001 and 0002 changed since that release and are kept as released in legacy_migrations/;
    0003 did not, so the project's own file is used.
    """
    import shutil

    from alembic import command
    from alembic.config import Config

    released = tmp_path / "released_migrations"
    shutil.copytree(LEGACY_MIGRATIONS, released)
    shutil.copy(ROOT / "storage" / "migrations" / "versions" / "0003_scrub_function.py", released / "versions")
    config = Config()
    config.set_main_option("script_location", str(released))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0003")


@pytest.fixture(params=["postgresql", "sqlite"])
def legacy_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'legacy.db'}"
    else:
        yield request.getfixturevalue("scratch_pg")


def test_a_database_at_legacy_revision_0003_upgrades_cleanly(legacy_url, tmp_path):
    _legacy_upgrade(legacy_url, tmp_path)
    engine = create_engine(legacy_url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"
        conn.execute(text("INSERT INTO users (id, email, display_name) VALUES (1, 'a@example.com', 'A')"))
        conn.execute(text("INSERT INTO workspaces (id, name) VALUES (1, 'w')"))
        conn.execute(text(
            "INSERT INTO tenants (id, workspace_id, external_id, name, hardening) "
            "VALUES (1, 1, '5b1f0a8e-2a7e-4bb5-8c1e-0d5f1d8c0a11', 't', '{}')"
        ))
        conn.execute(text(
            "INSERT INTO review_packs (workspace_id, tenant_id, status, fingerprint, summary, options) "
            "VALUES (1, 1, 'ready', 'abc', '{}', '{}')"
        ))
        conn.execute(text(
            "INSERT INTO audit_logs (workspace_id, action, resource_type, metadata) VALUES (1, 'review_pack.requested', 'review_pack', '{}')"
        ))
        conn.execute(text("INSERT INTO notifications (user_id, kind, title, body, data) VALUES (1, 'k', 't', 'b', '{}')"))

    db.upgrade(legacy_url)

    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == CONTRACT_TABLES | OWN_TABLES | {db.VERSION_TABLE}
    with engine.begin() as conn:
        assert conn.execute(text(f"SELECT version_num FROM {db.VERSION_TABLE}")).scalar_one() == db.head_revision()
        assert conn.execute(text("SELECT fingerprint FROM reviewpacks_packs")).scalar_one() == "abc"
        assert conn.execute(text("SELECT count(*) FROM reviewpacks_audit_logs")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM reviewpacks_notifications")).scalar_one() == 1
        # The renamed sequence still numbers new rows.
        conn.execute(text(
            "INSERT INTO reviewpacks_packs (workspace_id, tenant_id, status, fingerprint, summary, options) "
            "VALUES (1, 1, 'queued', 'def', '{}', '{}')"
        ))
    index_names = {ix["name"] for ix in inspector.get_indexes("reviewpacks_packs")}
    assert index_names >= {
        "uq_reviewpacks_packs_active_fingerprint",
        "ix_reviewpacks_packs_listing",
        "ix_reviewpacks_packs_retention",
        "ix_reviewpacks_packs_status_expired",
        "ix_reviewpacks_packs_dispatch_pending",
    }
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE}), Base.metadata)
        assert diff == []
        for table in OWN_TABLES:
            assert inspector.get_pk_constraint(table)["name"] == f"pk_{table}"
            assert all(fk["name"].startswith(f"fk_{table}_") for fk in inspector.get_foreign_keys(table))
    engine.dispose()


def _seed_before_0005(url: str, *, active_packs: int = 1) -> None:
    """Rows as a database at revision 0004 holds them: findings, a review pack whose review is gone."""
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
                "INSERT INTO reviewpacks_packs (workspace_id, tenant_id, operation_run_id, status, options, summary, created_at, updated_at) "
                "VALUES (1, 1, 1, 'ready', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP), "
                "(1, 1, 2, 'ready', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
        for _ in range(active_packs):
            conn.execute(
                text(
                    "INSERT INTO reviewpacks_packs (workspace_id, tenant_id, status, options, summary, created_at, updated_at) "
                    "VALUES (1, 1, 'queued', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
    engine.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0005_starts_counters_from_existing_rows_and_recognises_review_packs(scratch_pg, tmp_path, dialect):
    url = scratch_pg if dialect == "postgresql" else f"sqlite:///{tmp_path / 'embedded.db'}"
    db.upgrade(url, "0004")
    _seed_before_0005(url)
    db.upgrade(url, "0005")
    engine = create_engine(url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT changes FROM reviewpacks_finding_stats WHERE tenant_id = 1")).scalar_one() == 3
        kinds = conn.execute(text("SELECT operation_run_id, kind FROM reviewpacks_packs WHERE operation_run_id IS NOT NULL ORDER BY 1")).all()
        assert [tuple(k) for k in kinds] == [(1, "review"), (2, "tenant")]
        # The triggers count the host's writes from now on, on either dialect.
        conn.execute(text("UPDATE findings SET last_seen_at = CURRENT_TIMESTAMP WHERE title = 'f0'"))
        after_update = conn.execute(text("SELECT changes FROM reviewpacks_finding_stats WHERE tenant_id = 1")).scalar_one()
        conn.execute(text("DELETE FROM findings WHERE title = 'f1'"))
        after_delete = conn.execute(text("SELECT changes FROM reviewpacks_finding_stats WHERE tenant_id = 1")).scalar_one()
        assert 3 < after_update < after_delete
        # A second queued pack for the tenant is refused by the database itself.
        with pytest.raises(Exception, match="uq_reviewpacks_packs_one_active_per_tenant|UNIQUE constraint failed"):
            with conn.begin_nested():
                conn.execute(
                    text(
                        "INSERT INTO reviewpacks_packs (workspace_id, tenant_id, status, options, summary, created_at, updated_at) "
                        "VALUES (1, 1, 'generating', '{}', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                    )
                )
    engine.dispose()
    db.downgrade(url, "0004")
    assert "reviewpacks_finding_stats" not in _tables(url)


def test_0005_stops_with_a_message_when_a_tenant_has_two_active_packs(scratch_pg):
    db.upgrade(scratch_pg, "0004")
    _seed_before_0005(scratch_pg, active_packs=2)
    with pytest.raises(RuntimeError, match="more than one queued or generating pack: 1;"):
        db.upgrade(scratch_pg, "0005")


def test_0007_drops_the_sql_redaction_functions_and_a_downgrade_restores_them(scratch_pg):
    """The policy runs in Python only; the SQL copies of earlier revisions are gone at head."""
    def functions() -> set[str]:
        engine = create_engine(scratch_pg)
        with engine.connect() as conn:
            names = conn.execute(text("SELECT proname FROM pg_proc WHERE proname LIKE 'reviewpacks_%'")).scalars()
            found = set(names)
        engine.dispose()
        return found

    db.upgrade(scratch_pg)
    assert functions() == {"reviewpacks_count_finding_changes"}
    db.downgrade(scratch_pg, "0006")
    assert {"reviewpacks_redact_json", "reviewpacks_redact_text", "reviewpacks_scrub", "reviewpacks_mask"} <= functions()
    db.upgrade(scratch_pg)
    assert functions() == {"reviewpacks_count_finding_changes"}


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_0008_starts_counts_and_newest_dates_from_existing_rows_and_a_downgrade_restores_the_counter(scratch_pg, tmp_path, dialect):
    url = scratch_pg if dialect == "postgresql" else f"sqlite:///{tmp_path / 'embedded.db'}"
    db.upgrade(url, "0004")
    _seed_before_0005(url)
    db.upgrade(url, "0007")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE findings SET status = 'resolved', last_seen_at = updated_at WHERE title = 'f2'"))
        newest = conn.execute(text("SELECT max(updated_at) FROM findings")).scalar_one()
        changes = conn.execute(text("SELECT changes FROM reviewpacks_finding_stats WHERE tenant_id = 1")).scalar_one()
    engine.dispose()
    db.upgrade(url, "0008")
    engine = create_engine(url)
    with engine.begin() as conn:
        counts = conn.execute(text("SELECT severity, status, findings FROM reviewpacks_finding_counts WHERE tenant_id = 1 ORDER BY 2")).all()
        assert [tuple(c) for c in counts] == [("high", "new", 2), ("high", "resolved", 1)]
        stats = conn.execute(
            text("SELECT changes, last_seen_at, updated_at, last_seen_at_stale, updated_at_stale FROM reviewpacks_finding_stats WHERE tenant_id = 1")
        ).one()
        assert tuple(stats) == (changes, newest, newest, False, False)
        # From now on the triggers keep them, on either dialect.
        conn.execute(text("DELETE FROM findings WHERE title = 'f2'"))
        stats = conn.execute(text("SELECT changes, last_seen_at, last_seen_at_stale FROM reviewpacks_finding_stats WHERE tenant_id = 1")).one()
        # The deleted finding held the newest sighting: kept as a bound, marked stale, read from the findings.
        assert (stats.changes, stats.last_seen_at, bool(stats.last_seen_at_stale)) == (changes + 1, newest, True)
        assert queries.finding_figures(conn, 1).latest_seen is None
        counts = conn.execute(text("SELECT status, findings FROM reviewpacks_finding_counts WHERE tenant_id = 1")).all()
        assert [tuple(c) for c in counts] == [("new", 2)]
    engine.dispose()
    db.downgrade(url, "0007")
    assert "reviewpacks_finding_counts" not in _tables(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        # The counter of 0005 is kept by 0005's triggers again.
        conn.execute(text("DELETE FROM findings WHERE title = 'f1'"))
        assert conn.execute(text("SELECT changes FROM reviewpacks_finding_stats WHERE tenant_id = 1")).scalar_one() == changes + 2
        assert "last_seen_at" not in {c["name"] for c in inspect(conn).get_columns("reviewpacks_finding_stats")}
    engine.dispose()
