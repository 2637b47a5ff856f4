"""Tracking consent and erasure tombstones in ingestion: direct batches, the check before
queueing, the store step (and the stream worker that runs it)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis import asyncio as redis_asyncio
from sqlalchemy import func, insert, select

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.events.ingest import check_events, ingest_events, store_events
from rasa_personalize.events.stream import EventStream
from rasa_personalize.events.worker import StreamWorker, WorkerOptions
from rasa_personalize.identity import customer_key
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import Customer, ErasureTombstone, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_product

ERASED_AT = NOW - timedelta(hours=2)


def event(event_id: str, customer: str, hours_ago: float = 1, **changes: Any) -> dict[str, Any]:
    """A valid view of SKU-1 by ``customer`` some hours before NOW."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "customer": customer,
        "product": "SKU-1",
        "kind": "view",
        "timestamp": (NOW - timedelta(hours=hours_ago)).isoformat(),
    }
    return base | changes


async def seed(store: SqlStore) -> None:
    """A product; "denier" refused tracking, "granter" allowed it, "erased" was erased."""
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        for customer, granted in (("denier", False), ("granter", True)):
            await set_consent(
                session, customer_key(TEST_SECRET, customer), {"tracking": granted},
                source="api", policy_version=None, now=NOW - timedelta(days=1),
            )  # fmt: skip
        await session.execute(
            insert(ErasureTombstone).values(
                customer_key=customer_key(TEST_SECRET, "erased"), erased_at=ERASED_AT
            )
        )


async def stored(store: SqlStore) -> list[str]:
    async with store.sessions() as session:
        return sorted((await session.execute(select(Interaction.event_id))).scalars().all())


MIXED_BATCH = [
    event("ok-1", "silent"),
    event("no-1", "denier"),
    event("ok-2", "granter"),
    event("old", "erased", hours_ago=3),  # before the erasure: a replay
    event("new", "erased", hours_ago=1),  # after it: follows consent (the default)
    event("no-2", "denier", product="GHOST"),  # suppressed before its sku is looked at
    event("bad", "denier", kind="hover"),  # invalid: rejected, whoever sent it
]


async def test_direct_batch_suppresses_denied_and_erased(store: SqlStore) -> None:
    """Opt-out: only explicit denials and events up to an erasure are suppressed."""
    await seed(store)
    async with store.sessions.begin() as session:
        result = await ingest_events(session, MIXED_BATCH, secret_key=TEST_SECRET, now=NOW)
    assert result.accepted == ["ok-1", "ok-2", "new"]
    assert result.suppressed == ["no-1", "old", "no-2"]
    assert [(r.index, r.field) for r in result.rejected] == [(6, "kind")]
    assert await stored(store) == ["new", "ok-1", "ok-2"]
    async with store.sessions() as session:
        # No customer row was created for the denier.
        assert await session.scalar(
            select(func.count()).where(
                Customer.customer_key == customer_key(TEST_SECRET, "denier")
            )
        ) == 0  # fmt: skip


async def test_opt_in_stores_only_customers_who_said_yes(store: SqlStore) -> None:
    """Opt-in: customers without an answer are suppressed too."""
    await seed(store)
    async with store.sessions.begin() as session:
        result = await ingest_events(
            session, MIXED_BATCH, secret_key=TEST_SECRET, now=NOW, consent_default="denied"
        )
    assert result.accepted == ["ok-2"]
    assert result.suppressed == ["ok-1", "no-1", "old", "new", "no-2"]
    assert await stored(store) == ["ok-2"]


async def test_store_step_checks_again(store: SqlStore) -> None:
    """A batch checked before the customer said no is still not stored after it."""
    await seed(store)
    async with store.sessions() as session:
        checked = await check_events(
            session, [event("a", "late"), event("b", "denier"), event("c", "silent")],
            secret_key=TEST_SECRET, now=NOW,
        )  # fmt: skip
    assert [e.event_id for e in checked.storable] == ["a", "c"]
    assert checked.suppressed == ("b",)
    async with store.sessions.begin() as session:
        await set_consent(session, customer_key(TEST_SECRET, "late"), {"tracking": False},
                          source="chat", policy_version=None, now=NOW)  # fmt: skip
    async with store.sessions.begin() as session:
        result = await store_events(session, checked.storable, now=NOW)
    assert (result.inserted, result.suppressed) == (frozenset({"c"}), frozenset({"a"}))
    assert await stored(store) == ["c"]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[redis_asyncio.Redis, str]]:
    """A client and a stream of this test's own, deleted afterwards."""
    client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
    stream = f"test:events:{uuid.uuid4().hex}"
    yield client, stream
    suffixes = ("", ":dirty", ":dirty-version", ":dirty-latest", ":dirty-claims")
    await client.delete(*(stream + suffix for suffix in suffixes))
    await client.aclose()


@pytest.mark.redis
async def test_worker_drops_events_of_customers_who_withdrew(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """Queued, then the customer denied tracking: the worker counts them and stores none."""
    client, stream = redis
    await seed(store)
    async with store.sessions() as session:
        checked = await check_events(
            session, [event(f"e{n}", "late" if n % 2 else "silent") for n in range(6)],
            secret_key=TEST_SECRET, now=NOW,
        )  # fmt: skip
    await EventStream(client, stream, breaker=RedisBreaker("test", timeout_s=5.0)).publish(
        list(checked.storable)
    )
    async with store.sessions.begin() as session:
        await set_consent(session, customer_key(TEST_SECRET, "late"), {"tracking": False},
                          source="api", policy_version=None, now=NOW)  # fmt: skip
    options = WorkerOptions(block_ms=50, claim_idle_ms=60_000, exit_when_idle=True)
    stats = await StreamWorker(client, stream, store.sessions, options=options).run()
    assert (stats.stored, stats.suppressed) == (3, 3)
    assert await stored(store) == ["e0", "e2", "e4"]
    assert await client.xlen(stream) == 0  # suppressed events are acknowledged, not retried


@pytest.mark.redis
async def test_an_opt_in_worker_stores_only_customers_who_said_yes(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """The worker applies PERSONALIZE_CONSENT_DEFAULT to customers who never answered."""
    client, stream = redis
    await seed(store)
    async with store.sessions() as session:
        checked = await check_events(
            session, [event("s", "silent"), event("g", "granter")], secret_key=TEST_SECRET,
            now=NOW,
        )  # fmt: skip
    await EventStream(client, stream, breaker=RedisBreaker("test", timeout_s=5.0)).publish(
        list(checked.storable)
    )
    options = WorkerOptions(block_ms=50, claim_idle_ms=60_000, exit_when_idle=True)
    worker = StreamWorker(client, stream, store.sessions, options=options, consent_default="denied")
    stats = await worker.run()
    assert (stats.stored, stats.suppressed) == (1, 1)
    assert await stored(store) == ["g"]
