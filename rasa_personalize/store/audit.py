"""The audit log: an append-only record of privacy operations, profile access and keys.

Rows name the customer by key (the keyed hash), never by a raw id, and ``detail`` holds
counts and names only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from rasa_personalize.store.models import AuditEntry
from rasa_personalize.store.types import Session


@dataclass(frozen=True)
class AuditRecord:
    """One audit row."""

    id: int
    occurred_at: datetime
    actor: str
    action: str
    customer_key: str | None
    outcome: str
    api_key_id: int | None = None
    api_key_label: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


async def append_audit_entry(
    session: Session,
    *,
    occurred_at: datetime,
    actor: str,
    action: str,
    outcome: str,
    customer_key: str | None = None,
    api_key_id: int | None = None,
    api_key_label: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one row, in the caller's transaction (it commits with what it records)."""
    await session.execute(
        insert(AuditEntry).values(
            occurred_at=occurred_at,
            actor=actor,
            action=action,
            outcome=outcome,
            customer_key=customer_key,
            api_key_id=api_key_id,
            api_key_label=api_key_label,
            detail=dict(detail or {}),
        )
    )


async def list_audit_entries(
    session: Session, *, since: datetime | None = None, limit: int = 1_000
) -> list[AuditRecord]:
    """Rows at or after ``since`` (all without it), oldest first, at most ``limit``."""
    statement = select(AuditEntry).order_by(AuditEntry.occurred_at, AuditEntry.id).limit(limit)
    if since is not None:
        statement = statement.where(AuditEntry.occurred_at >= since)
    rows = (await session.scalars(statement)).all()
    return [
        AuditRecord(
            id=row.id,
            occurred_at=row.occurred_at,
            actor=row.actor,
            action=row.action,
            customer_key=row.customer_key,
            outcome=row.outcome,
            api_key_id=row.api_key_id,
            api_key_label=row.api_key_label,
            detail=dict(row.detail or {}),
        )
        for row in rows
    ]
