"""Ingestion into SQL on SQLite and PostgreSQL: what a batch reports, first-seen customers,
idempotency, metrics. The store's part on its own: tests/store/test_interactions.py."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from rasa_personalize.events.ingest import ingest_events
from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import Customer, CustomerProfile, Interaction
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_product

PRIVATE = "jane.doe@example.com"


def event(event_id: str, **changes: Any) -> dict[str, Any]:
    """A valid event of PRIVATE viewing SKU-1 an hour before NOW."""
    base: dict[str, Any] = {
        "event_id": event_id,
        "customer": PRIVATE,
        "product": "SKU-1",
        "kind": "view",
        "timestamp": "2026-06-01T11:00:00Z",
        "channel": "web",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


async def seed(store: SqlStore) -> None:
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        await add_product(session, "SKU-2", "socks", price=10.0)


async def ingest(store: SqlStore, events: list[Any]) -> Any:
    async with store.sessions.begin() as session:
        return await ingest_events(session, events, secret_key=TEST_SECRET, now=NOW)


async def count(store: SqlStore, model: type[object]) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_batch_stores_good_events_and_rejects_bad_ones(store: SqlStore) -> None:
    """Good events are stored; bad ones come back with field and reason, in batch order."""
    await seed(store)
    result = await ingest(
        store,
        [
            event("a"),
            event("b", kind="hover"),
            event("c", product="NOPE"),
            event("d", kind="purchase", product="SKU-2", price=9.0, quantity=2),
            event("e", kind="search", product=None, value=None),
        ],
    )
    assert result.accepted == ["a", "d", "e"]
    assert result.duplicates == []
    assert [(r.index, r.event_id, r.field) for r in result.rejected] == [
        (1, "b", "kind"),
        (2, "c", "product"),
    ]
    assert result.rejected[1].reason == "unknown sku"
    assert await count(store, Interaction) == 3
    async with store.sessions() as session:
        stored = (
            await session.scalars(select(Interaction).where(Interaction.event_id == "d"))
        ).one()
        assert (stored.kind, stored.quantity, stored.price, stored.channel) == (
            "purchase",
            2,
            9.0,
            "web",
        )
        search = (
            await session.scalars(select(Interaction).where(Interaction.event_id == "e"))
        ).one()
        assert search.product_id is None


async def test_same_batch_twice_stores_nothing_new(store: SqlStore) -> None:
    """A re-sent batch is all duplicates, and no row is added."""
    await seed(store)
    batch = [event("a"), event("b", product="SKU-2")]
    first = await ingest(store, batch)
    second = await ingest(store, batch)
    assert first.accepted == ["a", "b"]
    assert (second.accepted, second.duplicates) == ([], ["a", "b"])
    assert await count(store, Interaction) == 2


async def test_repeated_event_id_within_a_batch_is_a_duplicate(store: SqlStore) -> None:
    """The first occurrence is stored, the repeat reported as a duplicate."""
    await seed(store)
    result = await ingest(store, [event("a"), event("a", product="SKU-2")])
    assert (result.accepted, result.duplicates) == (["a"], ["a"])
    assert await count(store, Interaction) == 1


async def test_first_seen_customer_is_created_once(store: SqlStore) -> None:
    """An unknown customer is created under their key, once, dated by the first event."""
    await seed(store)
    await ingest(
        store,
        [event("a", timestamp="2026-06-01T10:00:00Z"), event("b", timestamp="2026-05-01T10:00Z")],
    )
    await ingest(store, [event("c")])
    async with store.sessions() as session:
        customers = (await session.scalars(select(Customer))).all()
    assert [c.customer_key for c in customers] == [customer_key(TEST_SECRET, PRIVATE)]
    assert customers[0].created_at.isoformat() == "2026-05-01T10:00:00+00:00"
    assert customers[0].loyalty_tier == "none"


async def test_unknown_sku_only_rejects_that_event(store: SqlStore) -> None:
    """An unknown sku creates neither an interaction nor a customer."""
    await seed(store)
    result = await ingest(store, [event("a", product="GHOST", customer="someone-else")])
    assert result.accepted == []
    assert [(r.field, r.reason) for r in result.rejected] == [("product", "unknown sku")]
    assert await count(store, Customer) == 0


async def test_metrics_of_affected_customers_are_refreshed(store: SqlStore) -> None:
    """After ingestion the profile metrics are what a full rebuild computes."""
    await seed(store)
    await ingest(
        store,
        [
            event("a"),
            event("b", kind="purchase", product="SKU-1", price=80.0),
            event("c", kind="cart", product="SKU-2", customer="other"),
        ],
    )
    async with store.sessions() as session:
        incremental = {
            p.customer_id: (p.metrics, p.version)
            for p in (await session.scalars(select(CustomerProfile))).all()
        }
    key = customer_key(TEST_SECRET, PRIVATE)
    snapshot = await store.load_snapshot(key)
    assert snapshot is not None
    metrics = snapshot.metrics
    assert (metrics.interaction_count, metrics.purchase_count, metrics.total_spent) == (2, 1, 80.0)
    assert metrics.discounted_purchase_share == 1.0
    assert metrics.favorite_category == "shoes"

    async with store.sessions.begin() as session:
        await rebuild_profile_metrics(session, now=NOW)
    async with store.sessions() as session:
        rebuilt = {
            p.customer_id: (p.metrics, p.version)
            for p in (await session.scalars(select(CustomerProfile))).all()
        }
    # Equal metrics and unchanged versions: the rebuild found nothing to correct.
    assert rebuilt == incremental
    assert len(rebuilt) == 2


async def test_concurrent_batches_of_the_same_customers(store: SqlStore) -> None:
    """Overlapping batches in parallel neither deadlock nor leave stale metrics."""
    await seed(store)
    customers = [f"customer-{n}" for n in range(20)]

    async def batch(tag: str) -> Any:
        events = [
            event(f"{tag}-{n}-{customer}", customer=customer, product=("SKU-1", "SKU-2")[n % 2])
            for n, customer in enumerate(customers * 3)
        ]
        return await ingest(store, events)

    results = await asyncio.gather(*(batch(tag) for tag in "abcd"))
    assert [len(result.accepted) for result in results] == [60] * 4
    async with store.sessions() as session:
        after_ingest = {
            p.customer_id: p.metrics for p in (await session.scalars(select(CustomerProfile)))
        }
    assert {metrics["interaction_count"] for metrics in after_ingest.values()} == {12}
    async with store.sessions.begin() as session:
        await rebuild_profile_metrics(session, now=NOW)
    async with store.sessions() as session:
        rebuilt = {
            p.customer_id: p.metrics for p in (await session.scalars(select(CustomerProfile)))
        }
    assert rebuilt == after_ingest
