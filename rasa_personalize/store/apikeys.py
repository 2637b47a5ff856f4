"""Rows of the HTTP API's keys: stored by hash, listed, revoked, found.

The keys themselves never reach the store: callers hash them
(``rasa_personalize.events.apikeys``) and the store keeps and compares hashes only.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select, update

from rasa_personalize.store.models import ApiKey
from rasa_personalize.store.types import Session

# What each scope of ``API_KEY_SCOPES`` may do; admin may do everything.
ALLOWED: Final[dict[str, frozenset[str]]] = {
    "ingest": frozenset({"ingest"}),
    "read": frozenset({"read"}),
    "admin": frozenset({"ingest", "read", "admin"}),
}


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored key, without the key itself."""

    id: int
    scope: str
    label: str
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, needed: str) -> bool:
        """Whether this key's scope covers ``needed`` (ingest, read or admin)."""
        return self.revoked_at is None and needed in ALLOWED.get(self.scope, frozenset())


def _record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(row.id, row.scope, row.label, row.created_at, row.revoked_at)


async def insert_api_key(
    session: Session, key_hash: str, scope: str, label: str, created_at: datetime
) -> ApiKeyRecord:
    """Store a key by its hash; ``scope`` is one of ``API_KEY_SCOPES`` (checked by callers)."""
    row = ApiKey(key_hash=key_hash, scope=scope, label=label, created_at=created_at)
    session.add(row)
    # The id comes back with the insert (RETURNING, or the driver's last row id).
    await session.flush()
    return _record(row)


async def list_api_keys(session: Session) -> list[ApiKeyRecord]:
    """Every key ever created (revoked ones too), oldest first."""
    rows = await session.scalars(select(ApiKey).order_by(ApiKey.id))
    return [_record(row) for row in rows.all()]


async def get_api_key(session: Session, key_id: int) -> ApiKeyRecord | None:
    """The key with this id (revoked or not), or None."""
    row = await session.get(ApiKey, key_id)
    return _record(row) if row is not None else None


async def revoke_api_key(session: Session, key_id: int, revoked_at: datetime) -> bool:
    """Revoke a key; False when no active key has that id."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=revoked_at)
    )
    return bool(getattr(result, "rowcount", 0))


async def find_active_api_key(session: Session, key_hash: str) -> ApiKeyRecord | None:
    """The active (not revoked) key stored with this hash, or None."""
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.key_hash, ApiKey.scope, ApiKey.label, ApiKey.created_at).where(
                ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None)
            )
        )
    ).one_or_none()
    # The index lookup already matched; the constant-time comparison keeps the final
    # decision free of early-exit timing whatever the database's comparison does.
    if row is None or not hmac.compare_digest(row.key_hash, key_hash):
        return None
    return ApiKeyRecord(row.id, row.scope, row.label, row.created_at, None)
