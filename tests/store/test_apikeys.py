"""API key rows on SQLite and PostgreSQL: stored by hash, found while active, revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rasa_personalize.store.apikeys import (
    ALLOWED,
    ApiKeyRecord,
    find_active_api_key,
    insert_api_key,
    list_api_keys,
    revoke_api_key,
)
from rasa_personalize.store.models import API_KEY_SCOPES
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW

HASH_A = "a" * 64
HASH_B = "b" * 64


async def test_key_is_found_by_hash_until_revoked(store: SqlStore) -> None:
    """Insert, find, revoke once (a second revoke finds nothing), then list both."""
    async with store.sessions.begin() as session:
        first = await insert_api_key(session, HASH_A, "ingest", "shop", NOW)
        second = await insert_api_key(session, HASH_B, "admin", "", NOW)
    assert first == ApiKeyRecord(first.id, "ingest", "shop", NOW, None)
    assert second.id > first.id
    async with store.sessions() as session:
        assert await find_active_api_key(session, HASH_A) == first
        assert await find_active_api_key(session, "c" * 64) is None
    later = NOW + timedelta(days=1)
    async with store.sessions.begin() as session:
        assert await revoke_api_key(session, first.id, later) is True
        assert await revoke_api_key(session, first.id, later) is False
        assert await revoke_api_key(session, 999_999, later) is False
    async with store.sessions() as session:
        assert await find_active_api_key(session, HASH_A) is None
        listed = await list_api_keys(session)
    assert listed == [
        ApiKeyRecord(first.id, "ingest", "shop", NOW, later),
        second,
    ]


def test_every_scope_allows_something_and_admin_everything() -> None:
    """The scopes the table accepts are the scopes that mean something."""
    assert set(ALLOWED) == set(API_KEY_SCOPES)
    assert ALLOWED["admin"] == frozenset(API_KEY_SCOPES)


@pytest.mark.parametrize(
    ("scope", "revoked", "needed", "allowed"),
    [
        ("ingest", False, "ingest", True),  # its own scope
        ("ingest", False, "read", False),  # another scope
        ("admin", False, "read", True),  # admin covers every scope
        ("admin", True, "admin", False),  # a revoked key allows nothing
    ],
)
def test_record_allows_by_scope(scope: str, revoked: bool, needed: str, allowed: bool) -> None:
    """``allows`` follows ALLOWED and refuses everything once revoked."""
    record = ApiKeyRecord(1, scope, "", NOW, NOW if revoked else None)
    assert record.allows(needed) is allowed
