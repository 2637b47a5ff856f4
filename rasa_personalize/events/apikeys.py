"""API keys of the HTTP API: creation, listing, revocation and checking.

A key is ``secrets.token_urlsafe(32)`` (256 random bits) and only its SHA-256 is stored.
A fast unsalted hash is enough for keys this random: salting and slow KDFs defend
guessable passwords, and no one can enumerate 2**256 keys; it also lets a request find
its key by an indexed lookup instead of trying every stored hash.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Final, Literal

from rasa_personalize.clock import utc_now
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store import apikeys as stored_keys
from rasa_personalize.store.apikeys import ALLOWED, ApiKeyRecord
from rasa_personalize.store.models import API_KEY_SCOPES
from rasa_personalize.store.types import Session

__all__ = [
    "ALLOWED",
    "MAX_KEY_LENGTH",
    "MAX_LABEL_LENGTH",
    "ApiKeyRecord",
    "Scope",
    "create_api_key",
    "find_api_key",
    "hash_key",
    "list_api_keys",
    "revoke_api_key",
]

Scope = Literal["ingest", "read", "admin"]
MAX_LABEL_LENGTH: Final = 128
# Longer bearer tokens are not our keys: refuse before hashing megabytes.
MAX_KEY_LENGTH: Final = 256


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create_api_key(session: Session, scope: str, label: str = "") -> tuple[ApiKeyRecord, str]:
    """Store a new key and return it with its record; the key is never readable again.

    Raises:
        InvalidInputError: unknown scope or a label that is too long.
    """
    if scope not in API_KEY_SCOPES:
        raise InvalidInputError(f"scope must be one of {', '.join(API_KEY_SCOPES)}")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidInputError(f"label is longer than {MAX_LABEL_LENGTH} characters")
    key = secrets.token_urlsafe(32)
    record = await stored_keys.insert_api_key(session, hash_key(key), scope, label, utc_now())
    return record, key


async def list_api_keys(session: Session) -> list[ApiKeyRecord]:
    """Every key ever created (revoked ones too), oldest first."""
    return await stored_keys.list_api_keys(session)


async def revoke_api_key(session: Session, key_id: int) -> bool:
    """Revoke a key; False when no active key has that id."""
    return await stored_keys.revoke_api_key(session, key_id, utc_now())


async def find_api_key(session: Session, key: str) -> ApiKeyRecord | None:
    """The active key matching ``key``, or None."""
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    return await stored_keys.find_active_api_key(session, hash_key(key))
