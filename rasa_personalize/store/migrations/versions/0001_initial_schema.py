"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 15:44:25.823452
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from rasa_personalize.store.dialect import DOUBLE, MYSQL, MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("age", sa.Integer(), nullable=True),
        sa.Column("gender", sa.String(length=32), nullable=True),
        sa.Column("country", sa.String(length=64), nullable=True),
        sa.Column("city", sa.String(length=128), nullable=True),
        sa.Column("loyalty_tier", sa.String(length=16), nullable=False),
        sa.Column("synthetic_group", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "loyalty_tier IN ('none', 'silver', 'gold', 'platinum')", name="ck_customers_tier"
        ),
        sa.CheckConstraint("age IS NULL OR (age >= 0 AND age < 150)", name="ck_customers_age"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_key"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_table(
        "products",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("brand", sa.String(length=64), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2, asdecimal=False), nullable=False),
        sa.Column("in_stock", sa.Boolean(), nullable=False),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.CheckConstraint("price >= 0", name="ck_products_price"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sku"),
        **MYSQL_TABLE_OPTIONS,
    )
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_products_category"), ["category"], unique=False)

    op.create_table(
        "customer_profiles",
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "metrics",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_table(
        "customer_tags",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("weight", DOUBLE, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "tag", name="uq_customer_tags_tag"),
        **MYSQL_TABLE_OPTIONS,
    )
    with op.batch_alter_table("customer_tags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_tags_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "interactions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "product_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", DOUBLE, nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Numeric(precision=12, scale=2, asdecimal=False), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("occurred_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(
            "kind IN ('view', 'search', 'cart', 'purchase', 'chat_click', 'feedback')",
            name="ck_interactions_kind",
        ),
        sa.CheckConstraint("quantity >= 0", name="ck_interactions_quantity"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
        **MYSQL_TABLE_OPTIONS,
    )
    with op.batch_alter_table("interactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_interactions_customer_time", ["customer_id", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_interactions_product", ["product_id"], unique=False)

    op.create_table(
        "segment_assignments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("segment", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("score", DOUBLE, nullable=True),
        sa.Column("assigned_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "method", name="uq_segment_assignments_method"),
        **MYSQL_TABLE_OPTIONS,
    )
    with op.batch_alter_table("segment_assignments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_segment_assignments_customer", ["customer_id", "assigned_at"], unique=False
        )


def downgrade() -> None:
    # MySQL refuses to drop an index that a foreign key needs; dropping the table drops
    # its indexes anyway, so there the tables go without the index drops first.
    drop_indexes = op.get_context().dialect.name != MYSQL
    if drop_indexes:
        with op.batch_alter_table("segment_assignments", schema=None) as batch_op:
            batch_op.drop_index("ix_segment_assignments_customer")

    op.drop_table("segment_assignments")
    if drop_indexes:
        with op.batch_alter_table("interactions", schema=None) as batch_op:
            batch_op.drop_index("ix_interactions_product")
            batch_op.drop_index("ix_interactions_customer_time")

    op.drop_table("interactions")
    if drop_indexes:
        with op.batch_alter_table("customer_tags", schema=None) as batch_op:
            batch_op.drop_index(batch_op.f("ix_customer_tags_customer_id"))

    op.drop_table("customer_tags")
    op.drop_table("customer_profiles")
    if drop_indexes:
        with op.batch_alter_table("products", schema=None) as batch_op:
            batch_op.drop_index(batch_op.f("ix_products_category"))

    op.drop_table("products")
    op.drop_table("customers")
