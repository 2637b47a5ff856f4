"""API keys of the HTTP API: creation, listing, revocation and checking.

A key is ``secrets.token_urlsafe(32)`` (256 random bits) and only its SHA-256 is stored.
A fast unsalted hash is enough for keys this random: salting and slow KDFs defend
guessable passwords, and no one can enumerate 2**256 keys; it also lets a request find
its key by an indexed lookup instead of trying every stored hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.clock import utc_now
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store.models import API_KEY_SCOPES, ApiKey

Scope = Literal["ingest", "read", "admin"]
# What each scope may do; admin may do everything.
ALLOWED: Final[dict[str, frozenset[str]]] = {
    "ingest": frozenset({"ingest"}),
    "read": frozenset({"read"}),
    "admin": frozenset({"ingest", "read", "admin"}),
}
MAX_LABEL_LENGTH: Final = 128
# Longer bearer tokens are not our keys: refuse before hashing megabytes.
MAX_KEY_LENGTH: Final = 256


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


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(row.id, row.scope, row.label, row.created_at, row.revoked_at)


async def create_api_key(
    session: AsyncSession, scope: str, label: str = ""
) -> tuple[ApiKeyRecord, str]:
    """Store a new key and return it with its record; the key is never readable again.

    Raises:
        InvalidInputError: unknown scope or a label that is too long.
    """
    if scope not in API_KEY_SCOPES:
        raise InvalidInputError(f"scope must be one of {', '.join(API_KEY_SCOPES)}")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidInputError(f"label is longer than {MAX_LABEL_LENGTH} characters")
    key = secrets.token_urlsafe(32)
    row = ApiKey(key_hash=hash_key(key), scope=scope, label=label, created_at=utc_now())
    session.add(row)
    await session.flush()
    return _record(row), key


async def list_api_keys(session: AsyncSession) -> list[ApiKeyRecord]:
    """Every key ever created (revoked ones too), oldest first."""
    rows = await session.scalars(select(ApiKey).order_by(ApiKey.id))
    return [_record(row) for row in rows.all()]


async def revoke_api_key(session: AsyncSession, key_id: int) -> bool:
    """Revoke a key; False when no active key has that id."""
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utc_now())
    )
    return bool(getattr(result, "rowcount", 0))


async def find_api_key(session: AsyncSession, key: str) -> ApiKeyRecord | None:
    """The active key matching ``key``, or None."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    wanted = hash_key(key)
    row = (
        await session.execute(
            select(ApiKey.id, ApiKey.key_hash, ApiKey.scope, ApiKey.label, ApiKey.created_at).where(
                ApiKey.key_hash == wanted, ApiKey.revoked_at.is_(None)
            )
        )
    ).one_or_none()
    # The index lookup already matched; the constant-time comparison keeps the final
    # decision free of early-exit timing whatever the database's comparison does.
    if row is None or not hmac.compare_digest(row.key_hash, wanted):
        return None
    return ApiKeyRecord(row.id, row.scope, row.label, row.created_at, None)
