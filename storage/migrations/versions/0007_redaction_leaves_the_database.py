"""Drop the redaction functions: the policy now runs once, in Python, on both export paths.

The COPY path sends plain columns and applies domain/redaction.py to the rows
that need it (storage/export.py), so the SQL copies of the policy from 0003
and 0006 have no caller. Keeping them would leave a second implementation to
drift. A downgrade puts them back as those revisions wrote them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from alembic import op

from storage.migrations.earlier import revision_module

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        revision_module("0006_redaction_policy").downgrade()
        revision_module("0003_scrub_function").downgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        revision_module("0003_scrub_function").upgrade()
        revision_module("0006_redaction_policy").upgrade()
