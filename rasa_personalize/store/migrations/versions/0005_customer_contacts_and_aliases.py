"""Encrypted contact details with blind indexes; aliases of merged customers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_encrypted", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("email_encrypted", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("phone_encrypted", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("email_index", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("phone_index", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_customers_email_index", ["email_index"], unique=False)
        batch_op.create_index("ix_customers_phone_index", ["phone_index"], unique=False)
    op.create_table(
        "customer_aliases",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("alias_key", sa.String(length=64), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("match", sa.String(length=16), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("match IN ('exact', 'fuzzy')", name="ck_customer_aliases_match"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alias_key"),
    )
    op.create_index(
        "ix_customer_aliases_customer_id", "customer_aliases", ["customer_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_customer_aliases_customer_id", table_name="customer_aliases")
    op.drop_table("customer_aliases")
    op.drop_index("ix_customers_phone_index", table_name="customers")
    op.drop_index("ix_customers_email_index", table_name="customers")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35), not batch mode: a batch would
    # recreate "customers", and dropping the old table with foreign keys on would cascade
    # into every customer's interactions.
    for column in (
        "phone_index",
        "email_index",
        "phone_encrypted",
        "email_encrypted",
        "name_encrypted",
    ):
        op.drop_column("customers", column)
