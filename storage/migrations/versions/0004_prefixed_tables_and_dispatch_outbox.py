"""Own tables under the reviewpacks_ prefix, and packs whose task could not be published.

Releases up to 0003 named the project's tables review_packs, audit_logs and
notifications, which collide with tables a host application commonly has. Revision
0001 now creates them as reviewpacks_packs, reviewpacks_audit_logs and
reviewpacks_notifications; a database migrated by those releases is brought to the
same names here, indexes, constraints and sequences included. (Carrying the old
``alembic_version`` row over to ``reviewpacks_alembic_version`` happens in env.py,
before any revision runs.) A downgrade keeps the new names, because the earlier
revisions now define them.

reviewpacks_packs.dispatch_pending_since marks a pack whose generate task could not
be handed to the broker; the dispatch sweep publishes it again as soon as the
broker answers, and clears the mark.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ACTIVE = sa.text("fingerprint IS NOT NULL AND status NOT IN ('expired', 'failed')")
PENDING = sa.text("dispatch_pending_since IS NOT NULL")

# old table -> (new table, {old index: (new index, columns, unique, where)})
LEGACY = {
    "review_packs": ("reviewpacks_packs", {
        "ix_review_packs_listing": ("ix_reviewpacks_packs_listing", ["workspace_id", "tenant_id", "created_at"], False, None),
        "ix_review_packs_retention": ("ix_reviewpacks_packs_retention", ["status", "expires_at"], False, None),
        "ix_review_packs_status_expired": ("ix_reviewpacks_packs_status_expired", ["status", "expired_at"], False, None),
        "uq_review_packs_active_fingerprint": (
            "uq_reviewpacks_packs_active_fingerprint", ["workspace_id", "tenant_id", "fingerprint"], True, ACTIVE
        ),
    }),
    "audit_logs": ("reviewpacks_audit_logs", {
        "ix_audit_logs_workspace_created": ("ix_reviewpacks_audit_logs_workspace_created", ["workspace_id", "created_at"], False, None),
    }),
    "notifications": ("reviewpacks_notifications", {
        "ix_notifications_user_created": ("ix_reviewpacks_notifications_user_created", ["user_id", "created_at"], False, None),
    }),
}


def _rename_legacy(old: str, new: str, indexes: dict) -> None:
    inspector = sa.inspect(op.get_bind())
    # Only the project's own legacy table: a host table of the same name stands beside ours untouched.
    if not inspector.has_table(old) or inspector.has_table(new):
        return
    present = {index["name"] for index in inspector.get_indexes(old)}
    if op.get_bind().dialect.name == "postgresql":
        constraints = [fk["name"] for fk in inspector.get_foreign_keys(old)]
        constraints.append(inspector.get_pk_constraint(old)["name"])
        op.rename_table(old, new)
        for name in constraints:
            if name and name.startswith((f"fk_{old}_", f"pk_{old}")):
                renamed = name.replace(f"_{old}", f"_{new}", 1)
                op.execute(f'ALTER TABLE "{new}" RENAME CONSTRAINT "{name}" TO "{renamed}"')
        for name, (renamed, *_rest) in indexes.items():
            if name in present:
                op.execute(f'ALTER INDEX "{name}" RENAME TO "{renamed}"')
        op.execute(f'ALTER SEQUENCE IF EXISTS "{old}_id_seq" RENAME TO "{new}_id_seq"')
        return
    # SQLite renames the table and the references to it; index names are global and cannot be renamed.
    op.rename_table(old, new)
    for name, (renamed, columns, unique, where) in indexes.items():
        if name in present:
            op.drop_index(name, table_name=new)
            op.create_index(renamed, new, columns, unique=unique, sqlite_where=where)


def upgrade() -> None:
    for old, (new, indexes) in LEGACY.items():
        _rename_legacy(old, new, indexes)
    with op.batch_alter_table("reviewpacks_packs") as batch:
        batch.add_column(sa.Column("dispatch_pending_since", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_reviewpacks_packs_dispatch_pending",
        "reviewpacks_packs",
        ["dispatch_pending_since"],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_reviewpacks_packs_dispatch_pending", table_name="reviewpacks_packs")
    with op.batch_alter_table("reviewpacks_packs") as batch:
        batch.drop_column("dispatch_pending_since")
