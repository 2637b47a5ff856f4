"""Rating interactions and precomputed recommendations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from rasa_personalize.store.dialect import MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('view', 'search', 'cart', 'purchase', 'chat_click', 'feedback')"
NEW_KINDS = "kind IN ('view', 'search', 'cart', 'purchase', 'chat_click', 'feedback', 'rating')"


def upgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_interactions_kind", type_="check")
        batch_op.create_check_constraint("ck_interactions_kind", NEW_KINDS)
    op.create_table(
        "precomputed_recommendations",
        sa.Column(
            "customer_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "items",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("computed_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id"),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("precomputed_recommendations")
    op.execute("DELETE FROM interactions WHERE kind = 'rating'")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_interactions_kind", type_="check")
        batch_op.create_check_constraint("ck_interactions_kind", OLD_KINDS)
