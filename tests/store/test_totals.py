"""Running totals: folded a batch at a time, they give what a full recompute gives."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import delete, func, select, update

from rasa_personalize.identity import customer_key
from rasa_personalize.segments.features import compute_features
from rasa_personalize.store.interactions import write_interactions
from rasa_personalize.store.models import (
    Customer,
    CustomerProfile,
    CustomerRunningTotals,
    Interaction,
    InteractionInbox,
)
from rasa_personalize.store.profiles import fold_profile_metrics, refresh_profile_metrics
from rasa_personalize.store.records import ProfileMetrics
from rasa_personalize.store.repository import (
    metrics_from_totals,
    rebuild_profile_metrics,
    write_profile_metrics,
)
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.store.totals import (
    CategorySums,
    CountedKind,
    Totals,
    drop_totals,
    fold_totals,
    reaches,
)
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_product

KINDS = ("view", "search", "cart", "purchase", "chat_click", "feedback", "rating")
CHAT_KINDS = ("chat_message", "session_start", "session_end", "category_asked", "shown")
PRODUCTS = {"SKU-1": ("running", 100.0), "SKU-2": ("running", 20.0), "SKU-3": ("kitchen", 35.5)}
PEOPLE = ("ada", "bob", "cy")


@dataclass(frozen=True)
class Event:
    """Plain data with the attributes the store reads, as a checked event has them."""

    event_id: str
    customer_key: str
    sku: str | None
    kind: str
    occurred_at: datetime
    channel: str | None = "web"
    device: str | None = None
    location: str | None = None
    category: str | None = None
    value: float | None = None
    quantity: int = 1
    price: float | None = None


def random_events(rng: random.Random, prefix: str, count: int) -> list[Event]:
    """Events of every kind over three customers and three products, with prices below
    and at list price, session lengths (one negative) and intents."""
    events = []
    for n in range(count):
        person = rng.choice(PEOPLE)
        when = NOW - timedelta(days=rng.randrange(40), minutes=rng.randrange(1440))
        kind = rng.choice(KINDS + CHAT_KINDS)
        sku = rng.choice(list(PRODUCTS)) if kind in (*KINDS, "shown") else None
        price = None
        if kind == "purchase":
            price = round(PRODUCTS[sku][1] * rng.choice((1.0, 0.9, 0.5)), 2) if sku else None
        value = rng.choice((120.0, 45.5, -3.0)) if kind == "session_end" else None
        category = rng.choice(("greet", "ask_price", None)) if kind == "chat_message" else None
        events.append(
            Event(
                f"{prefix}-{n}",
                customer_key(TEST_SECRET, person),
                sku,
                kind,
                when,
                category=category,
                value=value,
                price=price,
                quantity=rng.choice((1, 1, 2)),
            )
        )
    return events


async def seed_products(store: SqlStore) -> None:
    async with store.sessions.begin() as session:
        for sku, (category, price) in PRODUCTS.items():
            await add_product(session, sku, category, price=price)


async def write(store: SqlStore, events: list[Event], *, refresh: bool = False) -> None:
    async with store.sessions.begin() as session:
        await write_interactions(session, events, refresh_metrics=refresh, now=NOW)


async def customer_ids(store: SqlStore) -> list[int]:
    async with store.sessions() as session:
        return sorted((await session.execute(select(Customer.id))).scalars())


async def stored_metrics(store: SqlStore) -> dict[int, dict[str, Any]]:
    async with store.sessions() as session:
        rows = await session.execute(select(CustomerProfile.customer_id, CustomerProfile.metrics))
        return {int(customer_id): metrics for customer_id, metrics in rows.all()}


async def count(store: SqlStore, model: Any) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def assert_same_metrics(folded: dict[str, Any], full: dict[str, Any]) -> None:
    assert folded.keys() == full.keys()
    for key, value in full.items():
        if isinstance(value, float):
            assert math.isclose(folded[key], value, rel_tol=1e-9, abs_tol=1e-9), key
        elif isinstance(value, dict):
            assert folded[key] == pytest.approx(value), key
        else:
            assert folded[key] == value, key


async def test_folding_batch_by_batch_gives_the_metrics_of_a_full_recompute(
    store: SqlStore,
) -> None:
    await seed_products(store)
    rng = random.Random(7)
    for batch in range(4):
        await write(store, random_events(rng, f"b{batch}", 60))
        async with store.sessions.begin() as session:
            await fold_profile_metrics(session, await customer_ids(store), now=NOW)
    folded = await stored_metrics(store)
    assert await count(store, InteractionInbox) == 0

    async with store.sessions.begin() as session:
        await write_profile_metrics(session, NOW, None)
    full = await stored_metrics(store)
    assert len(full) == len(PEOPLE)
    for customer_id, metrics in full.items():
        assert_same_metrics(folded[customer_id], metrics)
    # Each customer bought, messaged and had sessions: every part of the totals is used.
    assert all(m["purchase_count"] and m["intent_counts"] for m in full.values())
    assert all(m["average_session_seconds"] is not None for m in full.values())


async def test_the_tag_features_from_totals_are_those_from_the_interactions(
    store: SqlStore,
) -> None:
    await seed_products(store)
    await write(store, random_events(random.Random(11), "f", 150))
    ids = await customer_ids(store)
    async with store.sessions.begin() as session:
        folded = await fold_profile_metrics(session, ids, now=NOW)
    async with store.sessions() as session:
        from_totals = await compute_features(
            session, now=NOW, customer_ids=ids, totals=folded.totals
        )
        from_history = await compute_features(session, now=NOW, customer_ids=ids)
    assert from_totals.names == from_history.names
    assert from_totals.customer_ids.tolist() == from_history.customer_ids.tolist() == ids
    np.testing.assert_allclose(from_totals.matrix, from_history.matrix, rtol=1e-9, atol=1e-6)


async def test_a_customer_without_totals_gets_them_from_history_and_inbox_once(
    store: SqlStore,
) -> None:
    await seed_products(store)
    events = random_events(random.Random(3), "h", 40)
    # Stored with a refresh of their own: no inbox rows, no totals.
    await write(store, events[:20], refresh=True)
    # Then through the stream's path: in the inbox.
    await write(store, events[20:])
    assert await count(store, InteractionInbox) == 20
    ids = await customer_ids(store)
    async with store.sessions.begin() as session:
        totals = await fold_totals(session, ids)
    own = [e for e in events if e.kind != "shown"]
    assert sum(t.interactions for t in totals.values()) == len(own)
    assert await count(store, InteractionInbox) == 0
    assert await count(store, CustomerRunningTotals) == len(PEOPLE)

    # Folding again with nothing new changes nothing.
    async with store.sessions.begin() as session:
        again = await fold_totals(session, ids)
    assert again == totals


async def test_a_full_recompute_drops_the_totals_and_the_next_fold_starts_over(
    store: SqlStore,
) -> None:
    await seed_products(store)
    rng = random.Random(5)
    await write(store, random_events(rng, "a", 30))
    ids = await customer_ids(store)
    async with store.sessions.begin() as session:
        before = await fold_totals(session, ids)
    # An interaction that bypasses the inbox (a bulk load), then a refresh of one customer.
    async with store.sessions.begin() as session:
        session.add(
            Interaction(
                event_id="bulk-1", customer_id=ids[0], product_id=None, kind="search",
                quantity=1, occurred_at=NOW,
            )
        )  # fmt: skip
        await refresh_profile_metrics(session, [ids[0]], now=NOW)
    assert await count(store, CustomerRunningTotals) == len(ids) - 1
    async with store.sessions.begin() as session:
        after = await fold_totals(session, ids)
    assert after[ids[0]].interactions == before[ids[0]].interactions + 1
    assert after[ids[1]] == before[ids[1]]

    async with store.sessions.begin() as session:
        await rebuild_profile_metrics(session, now=NOW)
    assert await count(store, CustomerRunningTotals) == 0


async def write_and_fold(store: SqlStore, seed: int, prefix: str) -> dict[int, Totals]:
    """The catalogue, 30 random events through the stream's path, folded: the totals of
    every customer, by id."""
    await seed_products(store)
    await write(store, random_events(random.Random(seed), prefix, 30))
    async with store.sessions.begin() as session:
        return await fold_totals(session, await customer_ids(store))


async def test_dropping_some_totals_takes_their_inbox_rows_too(store: SqlStore) -> None:
    ids = sorted(await write_and_fold(store, 9, "d"))
    await write(store, random_events(random.Random(10), "e", 30))
    async with store.sessions.begin() as session:
        await drop_totals(session, ids[:1])
    async with store.sessions() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(InteractionInbox)
            .join(Interaction, Interaction.event_id == InteractionInbox.event_id)
            .where(Interaction.customer_id == ids[0])
        )
    assert left == 0
    assert await count(store, InteractionInbox) > 0
    assert await count(store, CustomerRunningTotals) == len(ids) - 1


async def test_inbox_rows_whose_interaction_is_gone_are_taken_and_not_counted(
    store: SqlStore,
) -> None:
    await seed_products(store)
    events = random_events(random.Random(13), "g", 30)
    await write(store, events)
    gone = [e.event_id for e in events[:5]]
    # Retention or erasure deleting interactions: the inbox has no cascade.
    async with store.sessions.begin() as session:
        await session.execute(delete(Interaction).where(Interaction.event_id.in_(gone)))
    ids = await customer_ids(store)
    async with store.sessions.begin() as session:
        totals = await fold_totals(session, ids)
    kept = [e for e in events[5:] if e.kind != "shown"]
    assert sum(t.interactions for t in totals.values()) == len(kept)
    assert await count(store, InteractionInbox) == 0


async def test_totals_of_another_layout_are_computed_again_in_place(store: SqlStore) -> None:
    first = await write_and_fold(store, 17, "l")
    ids = sorted(first)
    async with store.sessions.begin() as session:
        await session.execute(update(CustomerRunningTotals).values(totals={"layout": 0}))
    async with store.sessions.begin() as session:
        again = await fold_totals(session, ids)
    assert again == first
    async with store.sessions() as session:
        documents = (await session.execute(select(CustomerRunningTotals.totals))).scalars().all()
    rewritten = [Totals.from_document(document) for document in documents]
    assert sorted(t.interactions for t in rewritten if t is not None) == sorted(
        t.interactions for t in first.values()
    )


def test_metrics_from_totals_rank_categories_by_weight_then_name() -> None:
    totals = Totals(
        interactions=4,
        purchases=2,
        spent_cents=12_345,
        session_seconds=90.0,
        session_lengths=2,
        categories={
            "kitchen": CategorySums(5.0, 1, 2_000, 1),
            "books": CategorySums(5.0, 1, 10_345, 0),
            "garden": CategorySums(0.0),
        },
        intents={"greet": 2, "ask": 2, "bye": 1},
    )
    metrics = metrics_from_totals(totals)
    assert metrics == ProfileMetrics(
        interaction_count=4,
        purchase_count=2,
        total_spent=123.45,
        discounted_purchase_share=0.5,
        favorite_category="books",
        category_affinity={"books": 0.5, "kitchen": 0.5, "garden": 0.0},
        intent_counts={"ask": 2, "greet": 2, "bye": 1},
        average_session_seconds=45.0,
    )
    assert list(metrics.category_affinity) == ["books", "kitchen", "garden"]


def test_totals_survive_their_document() -> None:
    totals = Totals(
        interactions=3, views=1, first_us=5, last_us=9, last_purchase_us=None,
        categories={"x": CategorySums(1.5, 1, 250, 1)}, intents={"a": 1}, days=(3, 7),
    )  # fmt: skip
    assert Totals.from_document(totals.to_document()) == totals
    assert Totals.from_document({**totals.to_document(), "layout": 0}) is None
    assert totals.plus(Totals(first_us=2, days=(7, 8))).days == (3, 7, 8)
    assert totals.plus(Totals(first_us=2)).first_us == 2


def test_totals_keep_the_newest_times_of_each_counted_filter() -> None:
    counted = (CountedKind("view", None, 2), CountedKind("view", "running", 3))
    older = Totals(counted=counted, newest=((50, 10), (50,)))
    newer = Totals(counted=counted, newest=((70, 20), (60, 40, 30)))
    both = older.plus(newer)
    assert both.newest == ((70, 50), (60, 50, 40))
    assert Totals.from_document(both.to_document(), counted) == both
    # Totals kept for other filters are computed again, not misread.
    assert Totals.from_document(both.to_document(), counted[:1]) is None
    assert Totals.from_document(both.to_document()) is None
    assert Totals.from_document(Totals().to_document(), counted) is None
    with pytest.raises(ValueError, match="other filters"):
        both.plus(Totals())
    # At least n in a window exactly when the n-th newest is in it (its start counts).
    assert reaches(both, 1, 3, since_us=40)
    assert not reaches(both, 1, 3, since_us=41)
    assert reaches(both, 0, 2, since_us=None)
    assert not reaches(Totals.empty(counted), 0, 1, since_us=None)
