"""Consent rows on SQLite, PostgreSQL and MariaDB: states, history, batch lookups."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert

from rasa_personalize.identity import customer_key
from rasa_personalize.store.consent import (
    ConsentStateRecord,
    load_consent_history,
    load_consent_states,
    load_tracking_facts,
    set_consent,
)
from rasa_personalize.store.models import ConsentChange, CustomerAlias, ErasureTombstone
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer

ANNA = customer_key(TEST_SECRET, "anna@example.com")
BOB = customer_key(TEST_SECRET, "bob@example.com")
CARLA = customer_key(TEST_SECRET, "carla@example.com")


async def answer(
    store: SqlStore,
    key: str,
    decisions: dict[str, bool],
    *,
    minutes: int = 0,
    policy: str | None = None,
    source: str = "cli",
) -> tuple[ConsentStateRecord, ...]:
    async with store.sessions.begin() as session:
        return await set_consent(
            session,
            key,
            decisions,
            source=source,
            policy_version=policy,
            now=NOW + timedelta(minutes=minutes),
        )


async def test_states_are_stored_per_purpose_and_read_in_purpose_order(store: SqlStore) -> None:
    """Two answers come back with source, policy and time, in the order of the purposes."""
    changed = await answer(store, ANNA, {"tracking": False, "personalization": True}, policy="v1")
    assert [(s.purpose, s.granted) for s in changed] == [
        ("personalization", True),
        ("tracking", False),
    ]
    async with store.sessions() as session:
        states = await load_consent_states(session, ANNA)
        assert await load_consent_states(session, BOB) == ()
    assert states == (
        ConsentStateRecord("personalization", True, "cli", "v1", NOW),
        ConsentStateRecord("tracking", False, "cli", "v1", NOW),
    )


async def test_the_same_answer_again_adds_no_history(store: SqlStore) -> None:
    """A repeated answer changes nothing; a new value or a new policy version is recorded."""
    await answer(store, ANNA, {"marketing": True}, policy="v1")
    assert await answer(store, ANNA, {"marketing": True}, minutes=1) == ()
    assert await answer(store, ANNA, {"marketing": True}, minutes=2, policy="v1") == ()
    changed = await answer(store, ANNA, {"marketing": True}, minutes=3, policy="v2")
    assert [(s.purpose, s.policy_version) for s in changed] == [("marketing", "v2")]
    await answer(store, ANNA, {"marketing": False}, minutes=4, source="api")
    async with store.sessions() as session:
        history = await load_consent_history(session, ANNA)
        (state,) = await load_consent_states(session, ANNA)
    assert [(c.purpose, c.decision, c.source, c.policy_version) for c in history] == [
        ("marketing", "granted", "cli", "v1"),
        ("marketing", "granted", "cli", "v2"),
        ("marketing", "denied", "api", None),
    ]
    assert [c.recorded_at for c in history] == [NOW, NOW + timedelta(minutes=3),
                                                NOW + timedelta(minutes=4)]  # fmt: skip
    assert (state.granted, state.source, state.updated_at) == (
        False,
        "api",
        NOW + timedelta(minutes=4),
    )


async def test_history_is_newest_last_and_keeps_erasure_markers(store: SqlStore) -> None:
    """Rows come oldest first; a limit keeps the newest; an erased marker has no purpose."""
    await answer(store, BOB, {"tracking": True})
    await answer(store, BOB, {"tracking": False}, minutes=1)
    async with store.sessions.begin() as session:
        await session.execute(
            insert(ConsentChange).values(
                customer_key=BOB, decision="erased", recorded_at=NOW + timedelta(minutes=2)
            )
        )
    async with store.sessions() as session:
        history = await load_consent_history(session, BOB)
        newest = await load_consent_history(session, BOB, limit=2)
        assert await load_consent_history(session, ANNA) == ()
    assert [(c.purpose, c.decision) for c in history] == [
        ("tracking", "granted"),
        ("tracking", "denied"),
        (None, "erased"),
    ]
    assert [c.decision for c in newest] == ["denied", "erased"]


async def test_tracking_facts_join_answers_and_tombstones(store: SqlStore) -> None:
    """One lookup gives the tracking answers and the erasure times (aware UTC everywhere)."""
    await answer(store, ANNA, {"tracking": True, "marketing": False})
    await answer(store, BOB, {"tracking": False})
    erased = NOW - timedelta(days=1, microseconds=250)
    async with store.sessions.begin() as session:
        await session.execute(insert(ErasureTombstone).values(customer_key=CARLA, erased_at=erased))
    async with store.sessions() as session:
        facts = await load_tracking_facts(session, [ANNA, BOB, CARLA, "f" * 64])
        empty = await load_tracking_facts(session, [])
    assert dict(facts.tracking) == {ANNA: True, BOB: False}
    assert dict(facts.erased_at) == {CARLA: erased}
    assert facts.erased_at[CARLA].utcoffset() == timedelta(0)
    assert (dict(empty.tracking), dict(empty.erased_at)) == ({}, {})


@pytest.mark.parametrize(
    ("decisions", "source", "policy", "message"),
    [
        # a purpose the schema does not know
        ({"newsletter": True}, "cli", None, "unknown consent purposes"),
        # a source the schema does not know
        ({"tracking": True}, "email", None, "unknown consent source"),
        # wider than the column
        ({"tracking": True}, "cli", "v" * 33, "policy version longer than 32"),
    ],
)
async def test_bad_answers_are_refused_before_any_write(
    sqlite_store: SqlStore, decisions: dict[str, bool], source: str, policy: str | None,
    message: str,
) -> None:  # fmt: skip
    """The store's own guard names what is wrong."""
    with pytest.raises(ValueError, match=message):
        await answer(sqlite_store, ANNA, decisions, source=source, policy=policy)


async def test_a_merged_customer_answers_under_every_key_and_the_latest_wins(
    store: SqlStore,
) -> None:
    """One person, two ids: a "no" given under the old id reaches the new one, and a later
    "yes" under the new id replaces it, whichever id the snapshot is read with."""
    async with store.sessions.begin() as session:
        anna = await add_customer(session, "anna@example.com")
        session.add(CustomerAlias(alias_key=BOB, customer_id=anna.id, match="exact"))
    await answer(store, BOB, {"personalization": False, "marketing": False}, minutes=1)
    for presented in (ANNA, BOB):
        snapshot = await store.load_snapshot(presented)
        assert snapshot is not None
        assert snapshot.consent == {"personalization": False, "marketing": False}

    await answer(store, ANNA, {"personalization": True}, minutes=2)
    for presented in (ANNA, BOB):
        snapshot = await store.load_snapshot(presented)
        assert snapshot is not None
        assert snapshot.consent == {"personalization": True, "marketing": False}
    # Another customer's answers never join in.
    await answer(store, CARLA, {"marketing": True}, minutes=3)
    snapshot = await store.load_snapshot(ANNA)
    assert snapshot is not None
    assert snapshot.consent["marketing"] is False
