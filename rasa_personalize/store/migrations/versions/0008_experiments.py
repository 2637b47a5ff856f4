"""Experiment exposures, and an index for retention's deletes by age.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rasa_personalize.store.dialect import MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_exposures",
        sa.Column("experiment", sa.String(length=64), nullable=False),
        sa.Column("customer_key", sa.String(length=64), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("exposed_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("experiment", "customer_key"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_experiment_exposures_customer", "experiment_exposures", ["customer_key"], unique=False
    )
    op.create_index("ix_interactions_occurred_at", "interactions", ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_interactions_occurred_at", table_name="interactions")
    op.drop_index("ix_experiment_exposures_customer", table_name="experiment_exposures")
    op.drop_table("experiment_exposures")
