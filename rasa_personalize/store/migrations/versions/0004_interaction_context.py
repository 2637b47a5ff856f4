"""Interaction location and category; chat-side kinds "shown" and "category_asked".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('view', 'search', 'cart', 'purchase', 'chat_click', 'feedback', 'rating')"
NEW_KINDS = (
    "kind IN ('view', 'search', 'cart', 'purchase', 'chat_click', 'feedback', 'rating', "
    "'shown', 'category_asked')"
)


def upgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("location", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("category", sa.String(length=64), nullable=True))
        batch_op.drop_constraint("ck_interactions_kind", type_="check")
        batch_op.create_check_constraint("ck_interactions_kind", NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM interactions WHERE kind IN ('shown', 'category_asked')")
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_interactions_kind", type_="check")
        batch_op.create_check_constraint("ck_interactions_kind", OLD_KINDS)
        batch_op.drop_column("category")
        batch_op.drop_column("location")
