"""The audit log: an append-only record of privacy operations, profile access and keys.

Rows name the customer by key (the keyed hash), never by a raw id, and ``detail`` holds
counts and names only. Rows leave only through retention
(:func:`delete_audit_entries_before`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import delete, insert, select

from rasa_personalize.store.models import AuditEntry
from rasa_personalize.store.types import Session

# Largest page :func:`list_audit_entries` hands back at once.
MAX_AUDIT_PAGE: Final = 100_000


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
    session: Session,
    *,
    since: datetime | None = None,
    limit: int = 1_000,
    action: str | None = None,
    customer_key: str | None = None,
    latest: bool = False,
) -> list[AuditRecord]:
    """Rows matching every filter given, oldest first, at most ``limit``.

    Args:
        since: Only rows at or after this time.
        limit: At most this many rows (1 to :data:`MAX_AUDIT_PAGE`).
        action: Only rows of this action (``"profile.read"``).
        customer_key: Only rows about this customer key.
        latest: Keep the newest ``limit`` rows instead of the oldest (still returned
            oldest first).

    Raises:
        ValueError: ``limit`` out of range.
    """
    if not 1 <= limit <= MAX_AUDIT_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_AUDIT_PAGE}")
    order = (
        (AuditEntry.occurred_at.desc(), AuditEntry.id.desc())
        if latest
        else (AuditEntry.occurred_at, AuditEntry.id)
    )
    statement = select(AuditEntry).order_by(*order).limit(limit)
    if since is not None:
        statement = statement.where(AuditEntry.occurred_at >= since)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    if customer_key is not None:
        statement = statement.where(AuditEntry.customer_key == customer_key)
    rows = (await session.scalars(statement)).all()
    records = [
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
    return records[::-1] if latest else records


async def delete_audit_entries_before(session: Session, cutoff: datetime) -> int:
    """Delete rows older than ``cutoff`` (retention); returns how many went."""
    result = await session.execute(delete(AuditEntry).where(AuditEntry.occurred_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
