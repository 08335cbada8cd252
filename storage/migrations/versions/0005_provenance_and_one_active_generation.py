"""Finding change counters, the pack's kind, and one active generation per tenant.

reviewpacks_finding_stats holds one row per tenant whose ``changes`` grows with every
inserted, updated or deleted finding. Triggers maintain it on the host's own
writes (PostgreSQL: one statement-level trigger per event reading the
transition tables, so a bulk write costs one grouped upsert; SQLite: row
triggers), so the fingerprint follows every exported value, including
last_seen_at or status changes that leave updated_at alone, while a request
reads one row instead of aggregating the tenant's findings. The counters start
from the existing rows.

reviewpacks_packs.kind records whether a pack is a tenant pack or a review pack, so
that a deleted review (tenant_review_id SET NULL) never turns a review pack
into a tenant pack. Existing review packs are recognised by their review id or
by the review id their run recorded.

uq_reviewpacks_packs_one_active_per_tenant lets at most one queued or generating
pack exist per tenant. A database that holds more than one today stops the
upgrade with a message instead of failing or dropping queued work.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION reviewpacks_count_finding_changes() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    -- Tenants are upserted in id order so that two bulk writes never wait on each other in a cycle.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO reviewpacks_finding_stats (tenant_id, changes)
        SELECT tenant_id, count(*) FROM new_rows GROUP BY tenant_id ORDER BY tenant_id
        ON CONFLICT (tenant_id) DO UPDATE SET changes = reviewpacks_finding_stats.changes + EXCLUDED.changes;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO reviewpacks_finding_stats (tenant_id, changes)
        SELECT tenant_id, count(*)
        FROM (SELECT tenant_id FROM new_rows UNION ALL SELECT tenant_id FROM old_rows) AS touched
        GROUP BY tenant_id ORDER BY tenant_id
        ON CONFLICT (tenant_id) DO UPDATE SET changes = reviewpacks_finding_stats.changes + EXCLUDED.changes;
    ELSIF TG_OP = 'DELETE' THEN
        -- An update, not an upsert: deleting a tenant cascades to its findings and its counter,
        -- and inserting a counter for a tenant being deleted would break that delete.
        UPDATE reviewpacks_finding_stats AS s SET changes = s.changes + d.n
        FROM (SELECT tenant_id, count(*) AS n FROM old_rows GROUP BY tenant_id ORDER BY tenant_id) AS d
        WHERE s.tenant_id = d.tenant_id;
    ELSE
        UPDATE reviewpacks_finding_stats SET changes = changes + 1;
    END IF;
    RETURN NULL;
END
$fn$;
"""

PG_TRIGGERS = (
    "CREATE TRIGGER reviewpacks_findings_count_inserts AFTER INSERT ON findings REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION reviewpacks_count_finding_changes()",
    "CREATE TRIGGER reviewpacks_findings_count_updates AFTER UPDATE ON findings REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION reviewpacks_count_finding_changes()",
    "CREATE TRIGGER reviewpacks_findings_count_deletes AFTER DELETE ON findings REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION reviewpacks_count_finding_changes()",
    "CREATE TRIGGER reviewpacks_findings_count_truncates AFTER TRUNCATE ON findings "
    "FOR EACH STATEMENT EXECUTE FUNCTION reviewpacks_count_finding_changes()",
)

SQLITE_BUMP = (
    "INSERT OR IGNORE INTO reviewpacks_finding_stats (tenant_id, changes) VALUES ({row}.tenant_id, 0); "
    "UPDATE reviewpacks_finding_stats SET changes = changes + 1 WHERE tenant_id = {row}.tenant_id;"
)

SQLITE_TRIGGERS = (
    f"CREATE TRIGGER reviewpacks_findings_count_inserts AFTER INSERT ON findings BEGIN {SQLITE_BUMP.format(row='NEW')} END",
    "CREATE TRIGGER reviewpacks_findings_count_updates AFTER UPDATE ON findings BEGIN "
    f"{SQLITE_BUMP.format(row='NEW')} "
    "UPDATE reviewpacks_finding_stats SET changes = changes + 1 WHERE tenant_id = OLD.tenant_id AND OLD.tenant_id <> NEW.tenant_id; "
    "END",
    "CREATE TRIGGER reviewpacks_findings_count_deletes AFTER DELETE ON findings BEGIN "
    "UPDATE reviewpacks_finding_stats SET changes = changes + 1 WHERE tenant_id = OLD.tenant_id; END",
)

TRIGGER_NAMES = ("reviewpacks_findings_count_inserts", "reviewpacks_findings_count_updates", "reviewpacks_findings_count_deletes", "reviewpacks_findings_count_truncates")


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    op.create_table(
        "reviewpacks_finding_stats",
        sa.Column(
            "tenant_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            sa.ForeignKey("tenants.id", ondelete="CASCADE", name="fk_reviewpacks_finding_stats_tenant_id_tenants"),
            primary_key=True,
        ),
        sa.Column("changes", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_reviewpacks_finding_stats"),
    )
    op.execute(
        "INSERT INTO reviewpacks_finding_stats (tenant_id, changes) SELECT tenant_id, count(*) FROM findings GROUP BY tenant_id"
    )
    if postgres:
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)

    with op.batch_alter_table("reviewpacks_packs") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="tenant"))
    review_id_in_context = "o.context ->> 'review_id'" if postgres else "json_extract(o.context, '$.review_id')"
    op.execute(
        "UPDATE reviewpacks_packs SET kind = 'review' WHERE tenant_review_id IS NOT NULL OR EXISTS ("
        "SELECT 1 FROM operation_runs AS o WHERE o.id = reviewpacks_packs.operation_run_id "
        f"AND {review_id_in_context} IS NOT NULL)"
    )

    crowded = bind.execute(
        sa.text(
            "SELECT tenant_id FROM reviewpacks_packs WHERE status IN ('queued', 'generating') "
            "GROUP BY tenant_id HAVING count(*) > 1 ORDER BY tenant_id"
        )
    ).scalars().all()
    if crowded:
        raise RuntimeError(
            "tenants with more than one queued or generating pack: "
            + ", ".join(str(t) for t in crowded)
            + "; let those generations finish (or fail them) and run the upgrade again"
        )
    op.create_index(
        "uq_reviewpacks_packs_one_active_per_tenant",
        "reviewpacks_packs",
        ["tenant_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('queued', 'generating')"),
        sqlite_where=sa.text("status IN ('queued', 'generating')"),
    )


def downgrade() -> None:
    op.drop_index("uq_reviewpacks_packs_one_active_per_tenant", table_name="reviewpacks_packs")
    with op.batch_alter_table("reviewpacks_packs") as batch:
        batch.drop_column("kind")
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGER_NAMES if postgres else TRIGGER_NAMES[:3]:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON findings" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS reviewpacks_count_finding_changes()")
    op.drop_table("reviewpacks_finding_stats")
