"""Chat activity in the profile metrics: messages by intent, sessions and their mean length,
rebuilt from interactions on every backend, and shown by `personalize profile show`."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from itertools import count

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.events.openapi import build_openapi_document
from rasa_personalize.events.profiles import profile_document
from rasa_personalize.identity import customer_key
from rasa_personalize.store import repository
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.profiles import refresh_profile_metrics
from rasa_personalize.store.records import ProfileMetrics
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import NOW, add_customer, add_interactions, add_product

_ids = count()


async def chat(
    session: AsyncSession,
    customer: Customer,
    kind: str,
    *,
    intent: str | None = None,
    seconds: float | None = None,
    messages: int = 1,
) -> None:
    """One interaction of the broker's kinds, as `personalize broker` stores them."""
    session.add(
        Interaction(
            event_id=f"chat-{next(_ids)}",
            customer_id=customer.id,
            product_id=None,
            kind=kind,
            category=intent,
            value=seconds,
            quantity=messages,
            channel="rest",
            occurred_at=NOW - timedelta(hours=1),
        )
    )
    await session.flush()


async def test_intents_sessions_and_their_mean_length_are_counted(store: SqlStore) -> None:
    """Five messages with an intent and one without; two sessions begun, two ended (60 s
    and 150 s): the profile says so, and a purchase counts as before."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "running", price=80.0)
        ada = await add_customer(session, "ada")
        await add_interactions(session, ada, shoes, "purchase", 1)
        for intent in ("greet", "ask_price", "greet", "ask_price", "greet", None):
            await chat(session, ada, "chat_message", intent=intent)
        for _ in range(2):
            await chat(session, ada, "session_start")
        await chat(session, ada, "session_end", seconds=60.0, messages=3)
        await chat(session, ada, "session_end", seconds=150.0, messages=3)
        assert await rebuild_profile_metrics(session, now=NOW) == 1

    snapshot = await store.load_snapshot(customer_key(TEST_SECRET, "ada"))

    assert snapshot is not None
    metrics = snapshot.metrics
    assert metrics.chat_message_count == 6
    assert dict(metrics.intent_counts) == {"greet": 3, "ask_price": 2}
    assert metrics.session_count == 2
    assert metrics.average_session_seconds == pytest.approx(105.0)
    assert (metrics.interaction_count, metrics.purchase_count) == (11, 1)
    document = json.loads(json.dumps(profile_document(snapshot)))
    assert document["metrics"]["intent_counts"] == {"greet": 3, "ask_price": 2}
    assert document["metrics"]["session_count"] == 2
    assert document["metrics"]["average_session_seconds"] == 105.0
    # The profile API's answer fits its OpenAPI schema, chat metrics included.
    components = build_openapi_document()["components"]
    schema = {"$ref": "#/components/schemas/Profile", "components": components}
    assert [e.message for e in Draft202012Validator(schema).iter_errors(document)] == []


async def test_a_refresh_of_some_customers_counts_as_the_rebuild(store: SqlStore) -> None:
    """The broker's refresh (a subset) and `profile rebuild` (everyone) agree."""
    async with store.sessions.begin() as session:
        ada = await add_customer(session, "ada")
        bob = await add_customer(session, "bob")
        await chat(session, ada, "chat_message", intent="greet")
        await chat(session, bob, "chat_message", intent="ask_offers")
        await chat(session, bob, "session_start")
        await refresh_profile_metrics(session, [bob.id], NOW)
    refreshed = await store.load_snapshot(customer_key(TEST_SECRET, "bob"))
    async with store.sessions.begin() as session:
        await rebuild_profile_metrics(session, now=NOW)
    rebuilt = await store.load_snapshot(customer_key(TEST_SECRET, "bob"))

    assert refreshed is not None
    assert rebuilt is not None
    assert dict(refreshed.metrics.intent_counts) == {"ask_offers": 1}
    assert refreshed.metrics == rebuilt.metrics
    assert refreshed.metrics.average_session_seconds is None  # begun, never ended


async def test_only_the_most_frequent_intents_are_kept(
    sqlite_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile is read on the hot path: past the cap, the rarest intents are left out
    (ties by name), and the message count still counts them."""
    monkeypatch.setattr(repository, "MAX_INTENT_COUNTS", 2)
    async with sqlite_store.sessions.begin() as session:
        ada = await add_customer(session, "ada")
        for intent in ("zebra", "apple", "mango", "mango"):
            await chat(session, ada, "chat_message", intent=intent)
        await rebuild_profile_metrics(session, now=NOW)

    snapshot = await sqlite_store.load_snapshot(customer_key(TEST_SECRET, "ada"))

    assert snapshot is not None
    assert dict(snapshot.metrics.intent_counts) == {"mango": 2, "apple": 1}
    assert snapshot.metrics.chat_message_count == 4


def test_documents_written_before_chat_metrics_read_as_no_chat() -> None:
    """A stored document without the chat keys reads as none; a zero mean stays zero."""
    old = ProfileMetrics.from_document({"interaction_count": 3})
    zero = ProfileMetrics.from_document({"average_session_seconds": 0.0, "session_count": 1})
    assert (old.chat_message_count, dict(old.intent_counts), old.session_count) == (0, {}, 0)
    assert old.average_session_seconds is None
    assert zero.average_session_seconds == 0.0
    assert ProfileMetrics.from_document(old.to_document()) == old


def test_profile_show_prints_intents_and_sessions(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table names the top intents and the mean session length; --json has them all."""

    async def seed() -> None:
        store = await migrated_store(sqlite_url)
        try:
            async with store.sessions.begin() as session:
                ada = await add_customer(session, "ada")
                for intent in ("ask_price", "ask_price", "greet"):
                    await chat(session, ada, "chat_message", intent=intent)
                await chat(session, ada, "session_start")
                await chat(session, ada, "session_end", seconds=252.0, messages=3)
                await rebuild_profile_metrics(session, now=NOW)
        finally:
            await store.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    runner = CliRunner()
    table = runner.invoke(app, ["profile", "show", "ada"], terminal_width=200)
    as_json = runner.invoke(app, ["profile", "show", "ada", "--json"])

    assert table.exit_code == 0, table.output
    assert "3 (ask_price 2, greet 1)" in table.output
    assert "1 (on average 4.2 min)" in table.output
    metrics = json.loads(as_json.stdout.strip().splitlines()[-1])["metrics"]
    assert metrics["intent_counts"] == {"ask_price": 2, "greet": 1}
    assert (metrics["session_count"], metrics["average_session_seconds"]) == (1, 252.0)
