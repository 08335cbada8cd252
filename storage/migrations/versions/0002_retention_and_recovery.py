"""Retention and recovery bookkeeping: when a pack expired, when a run was last published.

reviewpacks_packs.expired_at starts the hard-delete grace period; operation_runs.published_at
lets the sweeper re-publish queued runs whose message the broker lost. operation_runs is a
source table that may belong to the host application: the column is added only when absent.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviewpacks_packs") as batch:
        batch.add_column(sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_reviewpacks_packs_status_expired", ["status", "expired_at"])
    if "published_at" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("operation_runs")}:
        with op.batch_alter_table("operation_runs") as batch:
            batch.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operation_runs") as batch:
        batch.drop_column("published_at")
    with op.batch_alter_table("reviewpacks_packs") as batch:
        batch.drop_index("ix_reviewpacks_packs_status_expired")
        batch.drop_column("expired_at")
