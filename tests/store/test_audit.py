"""The audit log's rows: appended in the caller's transaction, listed by filter, trimmed
by retention."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rasa_personalize.store.audit import (
    append_audit_entry,
    delete_audit_entries_before,
    list_audit_entries,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW

KEY_A = "a" * 64
KEY_B = "b" * 64


async def seed(store: SqlStore) -> None:
    """Five entries, an hour apart, from NOW - 4h to NOW."""
    entries = [
        ("cli", "apikey.create", None, "ok", {"key_id": 1, "scope": "read", "label": "shop"}),
        ("api", "profile.read", KEY_A, "ok", {}),
        ("api", "profile.read", KEY_B, "not_found", {}),
        ("api", "profile.write", KEY_A, "ok", {"created": True, "fields": ["loyalty_tier"]}),
        ("cli", "privacy.export", KEY_A, "ok", {"interactions": 3}),
    ]
    async with store.sessions.begin() as session:
        for hours_ago, (actor, action, key, outcome, detail) in zip(
            range(4, -1, -1), entries, strict=True
        ):
            await append_audit_entry(
                session,
                occurred_at=NOW - timedelta(hours=hours_ago),
                actor=actor,
                action=action,
                outcome=outcome,
                customer_key=key,
                api_key_id=7 if actor == "api" else None,
                api_key_label="crm" if actor == "api" else None,
                detail=detail,
            )


async def test_entries_round_trip(store: SqlStore) -> None:
    """Every column comes back as written, oldest first, with aware UTC times."""
    await seed(store)
    async with store.sessions() as session:
        records = await list_audit_entries(session)
    assert [r.action for r in records] == [
        "apikey.create",
        "profile.read",
        "profile.read",
        "profile.write",
        "privacy.export",
    ]
    first, write = records[0], records[3]
    assert (first.actor, first.customer_key, first.api_key_id, first.api_key_label) == (
        "cli",
        None,
        None,
        None,
    )
    assert first.detail == {"key_id": 1, "scope": "read", "label": "shop"}
    assert first.occurred_at == NOW - timedelta(hours=4)
    assert (write.actor, write.customer_key, write.api_key_id, write.api_key_label) == (
        "api",
        KEY_A,
        7,
        "crm",
    )
    assert write.detail == {"created": True, "fields": ["loyalty_tier"]}


async def test_filters_combine(store: SqlStore) -> None:
    """since, action and customer key narrow the list together."""
    await seed(store)
    async with store.sessions() as session:
        reads = await list_audit_entries(session, action="profile.read")
        about_a = await list_audit_entries(session, customer_key=KEY_A)
        recent_a = await list_audit_entries(
            session, customer_key=KEY_A, since=NOW - timedelta(hours=1)
        )
        recent_reads_of_a = await list_audit_entries(
            session, action="profile.read", customer_key=KEY_A, since=NOW - timedelta(hours=2)
        )
    assert [(r.customer_key, r.outcome) for r in reads] == [(KEY_A, "ok"), (KEY_B, "not_found")]
    assert [r.action for r in about_a] == ["profile.read", "profile.write", "privacy.export"]
    assert [r.action for r in recent_a] == ["profile.write", "privacy.export"]
    assert recent_reads_of_a == []


async def test_limit_keeps_the_oldest_or_the_latest(store: SqlStore) -> None:
    """A limit keeps the oldest rows, or with latest=True the newest, both oldest first."""
    await seed(store)
    async with store.sessions() as session:
        oldest = await list_audit_entries(session, limit=2)
        newest = await list_audit_entries(session, limit=2, latest=True)
    assert [r.action for r in oldest] == ["apikey.create", "profile.read"]
    assert [r.action for r in newest] == ["profile.write", "privacy.export"]


async def test_limit_out_of_range_is_refused(store: SqlStore) -> None:
    """A zero limit is a caller's mistake, not an empty page."""
    async with store.sessions() as session:
        with pytest.raises(ValueError, match="limit must be"):
            await list_audit_entries(session, limit=0)


async def test_retention_deletes_only_older_rows(store: SqlStore) -> None:
    """Rows strictly before the cutoff go; the rest stay, and the count says how many."""
    await seed(store)
    async with store.sessions.begin() as session:
        deleted = await delete_audit_entries_before(session, NOW - timedelta(hours=2))
    async with store.sessions() as session:
        left = await list_audit_entries(session)
    assert deleted == 2
    assert [r.occurred_at for r in left] == [NOW - timedelta(hours=h) for h in (2, 1, 0)]


async def test_an_entry_rolls_back_with_its_transaction(store: SqlStore) -> None:
    """Appended in the caller's transaction: a rollback leaves no entry."""

    class Abort(Exception):
        pass

    async def append_then_fail() -> None:
        async with store.sessions.begin() as session:
            await append_audit_entry(
                session, occurred_at=NOW, actor="cli", action="apikey.create", outcome="ok"
            )
            raise Abort

    with pytest.raises(Abort):
        await append_then_fail()
    async with store.sessions() as session:
        assert await list_audit_entries(session) == []
