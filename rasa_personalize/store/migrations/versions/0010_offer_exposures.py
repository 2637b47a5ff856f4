"""Offer exposures: which offer the session actions showed a customer, once a day.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rasa_personalize.store.dialect import MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offer_exposures",
        sa.Column("customer_key", sa.String(length=64), nullable=False),
        sa.Column("offer", sa.String(length=64), nullable=False),
        sa.Column("shown_on", sa.Date(), nullable=False),
        sa.Column("segment", sa.String(length=32), nullable=False),
        sa.Column("shown_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("customer_key", "offer", "shown_on"),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("offer_exposures")
