"""Purchase-propensity scores, and the demo generator's true purchase probability.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rasa_personalize.store.dialect import DOUBLE, MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "propensity_scores",
        sa.Column("customer_id", BIG_ID, nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("score", DOUBLE, nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("scored_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint("score >= 0 AND score <= 1", name="ck_propensity_scores_score"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", "target"),
        **MYSQL_TABLE_OPTIONS,
    )
    # A plain ADD COLUMN on every backend: a batch copy of the customers table would
    # have to move every row that references it.
    op.add_column("customers", sa.Column("synthetic_purchase_probability", DOUBLE, nullable=True))


def downgrade() -> None:
    op.drop_column("customers", "synthetic_purchase_probability")
    op.drop_table("propensity_scores")
