"""Finding counts and newest dates kept beside the change counter.

A tenant pack states how many of its findings there are per severity and per
status, and how fresh they are: the newest last_seen_at, or the newest
updated_at where the host records no sightings. Aggregating them read every
finding of the tenant before the first row of findings.csv could be written
(0.2 s for a million findings, 0.8 s for ten million). The same triggers that
keep the change counter (0005) now keep them too:

- reviewpacks_finding_counts holds one row per tenant, severity and status with
  how many findings have them; a group that empties is deleted.
- reviewpacks_finding_stats gains last_seen_at and updated_at, the newest of
  each over the tenant's findings. A write raises them. A write that deletes,
  moves or lowers the finding holding the newest value cannot know the next
  newest without reading the tenant's findings, which would make that one host
  write cost a pass over them; it marks the value stale instead
  (last_seen_at_stale, updated_at_stale), the value staying an upper bound. A
  pack reads a stale value from the findings; the next write that reaches the
  bound makes it exact again (a host's next sighting or write usually does).

Both start from the existing rows.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

from storage.migrations.earlier import revision_module

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The tenants whose newest value the rows in ``old_rows`` held (deleted, or updated to a lower
# value or to another tenant) and ``{new}``, the rows that replaced them, does not hold: the value
# stays as an upper bound, marked stale.
_SEEN_LOST = "o.seen >= s.last_seen_at AND (n.seen IS NULL OR n.seen < s.last_seen_at)"
_WRITE_LOST = "o.wrote >= s.updated_at AND (n.wrote IS NULL OR n.wrote < s.updated_at)"
_PG_MARK_STALE = f"""
        UPDATE reviewpacks_finding_stats AS s
        SET last_seen_at_stale = s.last_seen_at_stale OR coalesce({_SEEN_LOST}, false),
            updated_at_stale = s.updated_at_stale OR coalesce({_WRITE_LOST}, false)
        FROM (SELECT tenant_id, max(last_seen_at) AS seen, max(updated_at) AS wrote FROM old_rows GROUP BY tenant_id) AS o
        LEFT JOIN ({{new}}) AS n ON n.tenant_id = o.tenant_id
        WHERE s.tenant_id = o.tenant_id AND (({_SEEN_LOST}) OR ({_WRITE_LOST}));
"""
_PG_NEW_NEWEST = "SELECT tenant_id, max(last_seen_at) AS seen, max(updated_at) AS wrote FROM new_rows GROUP BY tenant_id"
_PG_NO_ROWS = "SELECT NULL::bigint AS tenant_id, NULL::timestamptz AS seen, NULL::timestamptz AS wrote WHERE false"
# A value that reaches the bound is the newest again, stale or not.
_PG_RAISE = """ON CONFLICT (tenant_id) DO UPDATE SET changes = s.changes + EXCLUDED.changes,
            last_seen_at = greatest(s.last_seen_at, EXCLUDED.last_seen_at),
            last_seen_at_stale = s.last_seen_at_stale AND NOT coalesce(EXCLUDED.last_seen_at >= s.last_seen_at, false),
            updated_at = greatest(s.updated_at, EXCLUDED.updated_at),
            updated_at_stale = s.updated_at_stale AND NOT coalesce(EXCLUDED.updated_at >= s.updated_at, false);"""

PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION reviewpacks_count_finding_changes() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    -- Rows are written in key order so that two bulk writes never wait on each other in a cycle.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO reviewpacks_finding_stats AS s (tenant_id, changes, last_seen_at, updated_at)
        SELECT tenant_id, count(*), max(last_seen_at), max(updated_at) FROM new_rows GROUP BY tenant_id ORDER BY tenant_id
        {_PG_RAISE}
        INSERT INTO reviewpacks_finding_counts AS c (tenant_id, severity, status, findings)
        SELECT tenant_id, severity, status, count(*) FROM new_rows
        GROUP BY tenant_id, severity, status ORDER BY tenant_id, severity, status
        ON CONFLICT (tenant_id, severity, status) DO UPDATE SET findings = c.findings + EXCLUDED.findings;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO reviewpacks_finding_stats AS s (tenant_id, changes, last_seen_at, updated_at)
        SELECT tenant_id, count(*), max(last_seen_at), max(updated_at)
        FROM (SELECT tenant_id, last_seen_at, updated_at FROM new_rows
              UNION ALL SELECT tenant_id, NULL, NULL FROM old_rows) AS touched
        GROUP BY tenant_id ORDER BY tenant_id
        {_PG_RAISE}
        {_PG_MARK_STALE.format(new=_PG_NEW_NEWEST)}
        INSERT INTO reviewpacks_finding_counts AS c (tenant_id, severity, status, findings)
        SELECT tenant_id, severity, status, sum(n)
        FROM (SELECT tenant_id, severity, status, 1 AS n FROM new_rows
              UNION ALL SELECT tenant_id, severity, status, -1 FROM old_rows) AS moved
        GROUP BY tenant_id, severity, status HAVING sum(n) <> 0 ORDER BY tenant_id, severity, status
        ON CONFLICT (tenant_id, severity, status) DO UPDATE SET findings = c.findings + EXCLUDED.findings;
        DELETE FROM reviewpacks_finding_counts AS c
        USING (SELECT DISTINCT tenant_id, severity, status FROM old_rows) AS o
        WHERE c.tenant_id = o.tenant_id AND c.severity = o.severity AND c.status = o.status AND c.findings = 0;
    ELSIF TG_OP = 'DELETE' THEN
        -- Updates, not upserts: deleting a tenant cascades to its findings and to these rows,
        -- and inserting a row for a tenant being deleted would break that delete.
        UPDATE reviewpacks_finding_stats AS s SET changes = s.changes + d.n
        FROM (SELECT tenant_id, count(*) AS n FROM old_rows GROUP BY tenant_id ORDER BY tenant_id) AS d
        WHERE s.tenant_id = d.tenant_id;
        {_PG_MARK_STALE.format(new=_PG_NO_ROWS)}
        UPDATE reviewpacks_finding_counts AS c SET findings = c.findings - d.n
        FROM (SELECT tenant_id, severity, status, count(*) AS n FROM old_rows
              GROUP BY tenant_id, severity, status ORDER BY tenant_id, severity, status) AS d
        WHERE c.tenant_id = d.tenant_id AND c.severity = d.severity AND c.status = d.status;
        DELETE FROM reviewpacks_finding_counts AS c
        USING (SELECT DISTINCT tenant_id, severity, status FROM old_rows) AS o
        WHERE c.tenant_id = o.tenant_id AND c.severity = o.severity AND c.status = o.status AND c.findings <= 0;
    ELSE
        UPDATE reviewpacks_finding_stats SET changes = changes + 1,
            last_seen_at = NULL, updated_at = NULL, last_seen_at_stale = false, updated_at_stale = false;
        DELETE FROM reviewpacks_finding_counts;
    END IF;
    RETURN NULL;
END
$fn$;
"""

# SQLite: row triggers. Its max() of one column, the aggregate an export would run, compares
# the stored text; so do these comparisons (SET expressions read the row as it was).
_SQLITE_RAISE = (
    "INSERT OR IGNORE INTO reviewpacks_finding_stats (tenant_id, changes) VALUES (NEW.tenant_id, 0); "
    "UPDATE reviewpacks_finding_stats SET changes = changes + 1, "
    "last_seen_at_stale = CASE WHEN NEW.last_seen_at >= last_seen_at THEN 0 ELSE last_seen_at_stale END, "
    "last_seen_at = CASE WHEN last_seen_at IS NULL OR NEW.last_seen_at > last_seen_at THEN NEW.last_seen_at ELSE last_seen_at END, "
    "updated_at_stale = CASE WHEN NEW.updated_at >= updated_at THEN 0 ELSE updated_at_stale END, "
    "updated_at = CASE WHEN updated_at IS NULL OR NEW.updated_at > updated_at THEN NEW.updated_at ELSE updated_at END "
    "WHERE tenant_id = NEW.tenant_id; "
    "INSERT OR IGNORE INTO reviewpacks_finding_counts (tenant_id, severity, status, findings) "
    "VALUES (NEW.tenant_id, NEW.severity, NEW.status, 0); "
    "UPDATE reviewpacks_finding_counts SET findings = findings + 1 "
    "WHERE tenant_id = NEW.tenant_id AND severity = NEW.severity AND status = NEW.status;"
)
_SQLITE_LOWER = (
    "UPDATE reviewpacks_finding_counts SET findings = findings - 1 "
    "WHERE tenant_id = OLD.tenant_id AND severity = OLD.severity AND status = OLD.status; "
    "DELETE FROM reviewpacks_finding_counts "
    "WHERE tenant_id = OLD.tenant_id AND severity = OLD.severity AND status = OLD.status AND findings <= 0;"
)


def _sqlite_mark_stale(column: str, kept: str) -> str:
    """Mark the tenant's newest ``column`` stale when the old row held it and ``kept`` does not hold."""
    return (
        f"UPDATE reviewpacks_finding_stats SET {column}_stale = 1 "
        f"WHERE tenant_id = OLD.tenant_id AND OLD.{column} >= {column} AND NOT coalesce({kept}, 0);"
    )


def _sqlite_kept(column: str) -> str:
    return f"NEW.tenant_id = OLD.tenant_id AND NEW.{column} >= {column}"


SQLITE_TRIGGERS = (
    f"CREATE TRIGGER reviewpacks_findings_count_inserts AFTER INSERT ON findings BEGIN {_SQLITE_RAISE} END",
    "CREATE TRIGGER reviewpacks_findings_count_updates AFTER UPDATE ON findings BEGIN "
    f"{_SQLITE_RAISE} "
    "UPDATE reviewpacks_finding_stats SET changes = changes + 1 WHERE tenant_id = OLD.tenant_id AND OLD.tenant_id <> NEW.tenant_id; "
    f"{_sqlite_mark_stale('last_seen_at', _sqlite_kept('last_seen_at'))} "
    f"{_sqlite_mark_stale('updated_at', _sqlite_kept('updated_at'))} "
    f"{_SQLITE_LOWER} "
    "END",
    "CREATE TRIGGER reviewpacks_findings_count_deletes AFTER DELETE ON findings BEGIN "
    "UPDATE reviewpacks_finding_stats SET changes = changes + 1 WHERE tenant_id = OLD.tenant_id; "
    f"{_sqlite_mark_stale('last_seen_at', '0')} "
    f"{_sqlite_mark_stale('updated_at', '0')} "
    f"{_SQLITE_LOWER} "
    "END",
)


def _drop_sqlite_triggers() -> None:
    for name in revision_module("0005_provenance_and_one_active_generation").TRIGGER_NAMES[:3]:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if not postgres:
        # SQLite checks every trigger's tables whenever a table is altered: these go first.
        _drop_sqlite_triggers()
    op.create_table(
        "reviewpacks_finding_counts",
        sa.Column(
            "tenant_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("tenants.id", ondelete="CASCADE", name="fk_reviewpacks_finding_counts_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("findings", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "severity", "status", name="pk_reviewpacks_finding_counts"),
    )
    with op.batch_alter_table("reviewpacks_finding_stats") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_seen_at_stale", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("updated_at_stale", sa.Boolean(), nullable=False, server_default=sa.false()))
    if postgres:
        # Writers wait until the upgrade commits: none lands between the new triggers and the rows counted.
        op.execute("LOCK TABLE findings IN SHARE MODE")
        op.execute(PG_FUNCTION)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute(
        "INSERT INTO reviewpacks_finding_counts (tenant_id, severity, status, findings) "
        "SELECT tenant_id, severity, status, count(*) FROM findings GROUP BY tenant_id, severity, status"
    )
    op.execute(
        "INSERT INTO reviewpacks_finding_stats (tenant_id, changes) SELECT DISTINCT tenant_id, 0 FROM findings "
        # WHERE true: SQLite would read ON CONFLICT as a join's ON without it.
        "WHERE true ON CONFLICT (tenant_id) DO NOTHING"
    )
    op.execute(
        "UPDATE reviewpacks_finding_stats SET "
        "last_seen_at = (SELECT max(f.last_seen_at) FROM findings AS f WHERE f.tenant_id = reviewpacks_finding_stats.tenant_id), "
        "updated_at = (SELECT max(f.updated_at) FROM findings AS f WHERE f.tenant_id = reviewpacks_finding_stats.tenant_id)"
    )


def downgrade() -> None:
    before = revision_module("0005_provenance_and_one_active_generation")
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(before.PG_FUNCTION)
    else:
        _drop_sqlite_triggers()
    with op.batch_alter_table("reviewpacks_finding_stats") as batch:
        batch.drop_column("updated_at_stale")
        batch.drop_column("last_seen_at_stale")
        batch.drop_column("updated_at")
        batch.drop_column("last_seen_at")
    op.drop_table("reviewpacks_finding_counts")
    if not postgres:
        for statement in before.SQLITE_TRIGGERS:
            op.execute(statement)
