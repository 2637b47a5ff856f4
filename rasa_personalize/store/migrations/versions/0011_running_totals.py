"""Running totals per customer, and the inbox of interactions not yet folded into them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from rasa_personalize.store.dialect import MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # No backfill: a customer without totals has them computed from their history by
    # the first refresh that needs them.
    op.create_table(
        "interaction_inbox",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("customer_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["interactions.event_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_interaction_inbox_customer_id", "interaction_inbox", ["customer_id"], unique=False
    )
    op.create_table(
        "customer_totals",
        sa.Column("customer_id", BIG_ID, nullable=False),
        sa.Column(
            "totals",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id"),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("customer_totals")
    # Its index goes with it (MySQL refuses to drop an index a foreign key needs).
    op.drop_table("interaction_inbox")
