"""Encrypted contact details with blind indexes; aliases of merged customers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from rasa_personalize.store.dialect import MYSQL, MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # MATCH is a reserved word on MySQL: the constraint's text names the column quoted
    # there; SQLite and PostgreSQL keep the text they were created with.
    match = "`match`" if op.get_context().dialect.name == MYSQL else "match"
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
        sa.Column("merged_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(f"{match} IN ('exact', 'fuzzy')", name="ck_customer_aliases_match"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alias_key"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_customer_aliases_customer_id", "customer_aliases", ["customer_id"], unique=False
    )


def downgrade() -> None:
    # MySQL refuses to drop the index the foreign key needs; the table takes it along.
    if op.get_context().dialect.name != MYSQL:
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
