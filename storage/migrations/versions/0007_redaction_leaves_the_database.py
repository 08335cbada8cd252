"""Drop the redaction functions: the policy now runs once, in Python, on both export paths.

The COPY path sends plain columns and applies domain/redaction.py to the rows
that need it (storage/export.py), so the SQL copies of the policy from 0003
and 0006 have no caller. Keeping them would leave a second implementation to
drift. A downgrade puts them back as those revisions wrote them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
import importlib.util
from pathlib import Path

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _revision(name: str):
    """An earlier revision's module, loaded from its file beside this one."""
    spec = importlib.util.spec_from_file_location(f"_reviewpacks_revision_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _revision("0006_redaction_policy").downgrade()
        _revision("0003_scrub_function").downgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _revision("0003_scrub_function").upgrade()
        _revision("0006_redaction_policy").upgrade()
