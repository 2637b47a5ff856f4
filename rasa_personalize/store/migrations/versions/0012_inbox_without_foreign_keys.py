"""The interaction inbox without foreign keys: they cost the event path more than the row.

Every stored event writes an inbox row; its two foreign keys checked the interaction and
the customer row by row, which made the insert cost PostgreSQL about four times what the
row itself costs. The refresh deletes inbox rows whose interaction is gone, and erasure
and merges delete a customer's inbox rows themselves, so the cascades are not needed.

The inbox is recreated rather than altered (foreign keys without names differ per
database). Its rows are dropped with it, so every customer's running totals are dropped
too: the next refresh sums each customer's history again (the invariant is that totals
cover exactly the interactions not in the inbox).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-11 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rasa_personalize.store.dialect import MYSQL_TABLE_OPTIONS

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _recreate_inbox(*, foreign_keys: bool) -> None:
    op.execute("DELETE FROM customer_totals")
    op.drop_table("interaction_inbox")
    constraints: list[sa.ForeignKeyConstraint] = []
    if foreign_keys:
        constraints = [
            sa.ForeignKeyConstraint(["event_id"], ["interactions.event_id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        ]
    op.create_table(
        "interaction_inbox",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", BIG_ID, nullable=False),
        *constraints,
        sa.PrimaryKeyConstraint("event_id"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_interaction_inbox_customer_id", "interaction_inbox", ["customer_id"], unique=False
    )


def upgrade() -> None:
    _recreate_inbox(foreign_keys=False)


def downgrade() -> None:
    _recreate_inbox(foreign_keys=True)
