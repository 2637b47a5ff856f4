"""Kinds from Rasa's event broker: "chat_message", "session_start" and "session_end".

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_KINDS = (
    "kind IN ('view', 'search', 'cart', 'purchase', 'chat_click', 'feedback', 'rating', "
    "'shown', 'category_asked')"
)
NEW_KINDS = (
    "kind IN ('view', 'search', 'cart', 'purchase', 'chat_click', 'feedback', 'rating', "
    "'shown', 'category_asked', 'chat_message', 'session_start', 'session_end')"
)


def upgrade() -> None:
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_interactions_kind", type_="check")
        batch_op.create_check_constraint("ck_interactions_kind", NEW_KINDS)


def downgrade() -> None:
    op.execute(
        "DELETE FROM interactions WHERE kind IN ('chat_message', 'session_start', 'session_end')"
    )
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.drop_constraint("ck_interactions_kind", type_="check")
        batch_op.create_check_constraint("ck_interactions_kind", OLD_KINDS)
