"""The decision audit's idempotency key (the outbox re-sends a batch after a crash; a unique key makes it land once).

Before migrations, the service added this column and index by hand at start: a database adopted at the baseline
may already have them, so each is added only when missing.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    found = sa.inspect(op.get_bind())
    if "audit_key" not in {column["name"] for column in found.get_columns("decision_audit")}:
        op.add_column("decision_audit", sa.Column("audit_key", sa.String(64)))
    if "uq_decision_audit_key" not in {index["name"] for index in found.get_indexes("decision_audit")}:
        # NULL for rows from before the outbox: NULLs never collide in a unique index.
        op.create_index("uq_decision_audit_key", "decision_audit", ["audit_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_decision_audit_key", table_name="decision_audit")
    with op.batch_alter_table("decision_audit") as table:
        table.drop_column("audit_key")
