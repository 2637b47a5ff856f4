"""Consent states and history, the audit log and erasure tombstones.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from rasa_personalize.store.dialect import MYSQL_TABLE_OPTIONS, UTC_DATETIME

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "consent_states",
        sa.Column("customer_key", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(
            "purpose IN ('personalization', 'tracking', 'marketing')",
            name="ck_consent_states_purpose",
        ),
        sa.CheckConstraint(
            "source IN ('chat', 'api', 'import', 'cli')", name="ck_consent_states_source"
        ),
        sa.PrimaryKeyConstraint("customer_key", "purpose"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_table(
        "consent_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("customer_key", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=True),
        sa.Column("policy_version", sa.String(length=32), nullable=True),
        sa.Column("recorded_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(
            "decision IN ('granted', 'denied', 'erased')", name="ck_consent_history_decision"
        ),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index(
        "ix_consent_history_customer",
        "consent_history",
        ["customer_key", "recorded_at"],
        unique=False,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("occurred_at", UTC_DATETIME, nullable=False),
        sa.Column("actor", sa.String(length=16), nullable=False),
        sa.Column("api_key_id", BIG_ID, nullable=True),
        sa.Column("api_key_label", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("customer_key", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        **MYSQL_TABLE_OPTIONS,
    )
    op.create_index("ix_audit_log_occurred_at", "audit_log", ["occurred_at"], unique=False)
    op.create_index("ix_audit_log_customer_key", "audit_log", ["customer_key"], unique=False)
    op.create_table(
        "erasure_tombstones",
        sa.Column("customer_key", sa.String(length=64), nullable=False),
        sa.Column("erased_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("customer_key"),
        **MYSQL_TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table("erasure_tombstones")
    op.drop_index("ix_audit_log_customer_key", table_name="audit_log")
    op.drop_index("ix_audit_log_occurred_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_consent_history_customer", table_name="consent_history")
    op.drop_table("consent_history")
    op.drop_table("consent_states")
