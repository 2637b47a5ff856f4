"""The store on SQLite and PostgreSQL: snapshots, metrics, stats, constraints."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.repository import delete_all_rows, rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product


async def test_unknown_key_gives_no_snapshot(store: SqlStore) -> None:
    """A key nobody has is answered with None, not an error."""
    assert await store.load_snapshot(customer_key(TEST_SECRET, "nobody")) is None


async def test_snapshot_carries_tier_tags_segment_and_rebuilt_metrics(store: SqlStore) -> None:
    """The snapshot joins customer, profile, tags and the latest segment."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running", price=100.0)
        book = await add_product(session, "SKU-BOOK-1", "books", price=10.0)
        ada = await add_customer(
            session,
            "ada",
            tier="gold",
            tags=("premium", "interested_in_running"),
            segment="loyal",
            age=36,
            country="DE",
        )
        await add_interactions(session, ada, shoes, "purchase", 3, days_ago=2, paid=70.0)
        await add_interactions(session, ada, shoes, "view", 4, days_ago=1)
        await add_interactions(session, ada, book, "purchase", 1, days_ago=10)
        assert await rebuild_profile_metrics(session, now=NOW) == 1

    snapshot = await store.load_snapshot(customer_key(TEST_SECRET, "ada"))

    assert snapshot is not None
    assert snapshot.loyalty_tier == "gold"
    assert snapshot.demographics.age == 36
    assert snapshot.demographics.country == "DE"
    assert [t.tag for t in snapshot.tags] == ["premium", "interested_in_running"]
    assert snapshot.segment is not None
    assert (snapshot.segment.segment, snapshot.segment.method) == ("loyal", "kmeans")
    metrics = snapshot.metrics
    assert metrics.interaction_count == 8
    assert metrics.view_count == 4
    assert metrics.purchase_count == 4
    assert metrics.total_spent == pytest.approx(3 * 70.0 + 10.0)
    # Three of four purchases were paid 30% under list price.
    assert metrics.discounted_purchase_share == pytest.approx(0.75)
    assert metrics.favorite_category == "running"
    assert metrics.last_purchase_at == NOW - timedelta(days=2)
    assert metrics.last_seen_at == NOW - timedelta(days=1)
    assert metrics.first_seen_at == NOW - timedelta(days=10)
    assert sum(metrics.category_affinity.values()) == pytest.approx(1.0, abs=1e-3)
    assert snapshot.profile_version == 1


async def test_rebuild_bumps_version_only_when_metrics_change(store: SqlStore) -> None:
    """Rebuilding unchanged data keeps the version; a new interaction bumps it."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running")
        bo = await add_customer(session, "bo")
        await add_interactions(session, bo, shoes, "view", 2)
        await rebuild_profile_metrics(session, now=NOW)
        await rebuild_profile_metrics(session, now=NOW)
    first = await store.load_snapshot(customer_key(TEST_SECRET, "bo"))
    async with store.sessions.begin() as session:
        await add_interactions(session, bo, shoes, "cart", 1, days_ago=0.5)
        await rebuild_profile_metrics(session, now=NOW)
    second = await store.load_snapshot(customer_key(TEST_SECRET, "bo"))

    assert first is not None
    assert second is not None
    assert first.profile_version == 1
    assert second.profile_version == 2
    assert second.metrics.interaction_count == 3


async def test_stats_count_every_table(store: SqlStore) -> None:
    """stats() counts rows per table."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running")
        cy = await add_customer(session, "cy", tags=("a", "b"), segment="browser")
        await add_customer(session, "di")
        await add_interactions(session, cy, shoes, "view", 5)

    stats = await store.stats()

    assert (stats.customers, stats.products, stats.interactions) == (2, 1, 5)
    assert (stats.tags, stats.segment_assignments) == (2, 1)


async def test_event_id_is_unique(store: SqlStore) -> None:
    """The same event stored twice is refused: ingestion relies on it for idempotency."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running")
        ed = await add_customer(session, "ed")
        await add_interactions(session, ed, shoes, "view", 1)
    with pytest.raises(IntegrityError):
        async with store.sessions.begin() as session:
            session.add(
                Interaction(
                    event_id=f"{ed.id}-SKU-RUN-1-view-1.0-0",
                    customer_id=ed.id,
                    product_id=shoes.id,
                    kind="view",
                    quantity=1,
                    occurred_at=NOW,
                )
            )


async def test_unknown_interaction_kind_is_refused(store: SqlStore) -> None:
    """The kind check constraint holds on every backend."""
    async with store.sessions.begin() as session:
        fay = await add_customer(session, "fay")
    with pytest.raises(IntegrityError):
        async with store.sessions.begin() as session:
            session.add(
                Interaction(
                    event_id="x-1", customer_id=fay.id, kind="teleport", quantity=1, occurred_at=NOW
                )
            )


async def test_deleting_a_customer_cascades_to_their_rows(store: SqlStore) -> None:
    """Erasure of one customer reaches tags, segments and interactions."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running")
        gus = await add_customer(session, "gus", tags=("t",), segment="loyal")
        await add_interactions(session, gus, shoes, "view", 3)
        await rebuild_profile_metrics(session, now=NOW)
    async with store.sessions.begin() as session:
        await session.delete(await session.get(Customer, gus.id))

    stats = await store.stats()

    assert (stats.customers, stats.interactions, stats.tags, stats.segment_assignments) == (
        0,
        0,
        0,
        0,
    )
    assert stats.products == 1


async def test_delete_all_rows_empties_the_store(store: SqlStore) -> None:
    """delete_all_rows leaves every table empty."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running")
        hal = await add_customer(session, "hal", tags=("t",), segment="loyal")
        await add_interactions(session, hal, shoes, "purchase", 2)
        await rebuild_profile_metrics(session, now=NOW)
    async with store.sessions.begin() as session:
        await delete_all_rows(session)

    stats = await store.stats()

    assert (stats.customers, stats.products, stats.interactions, stats.tags) == (0, 0, 0, 0)


async def test_rating_interactions_are_accepted(store: SqlStore) -> None:
    """Explicit ratings (MovieLens imports) are a kind of their own."""
    async with store.sessions.begin() as session:
        film = await add_product(session, "ML-1", "drama", price=0.0)
        ivy = await add_customer(session, "ivy")
        session.add(
            Interaction(
                event_id="ml-1-1",
                customer_id=ivy.id,
                product_id=film.id,
                kind="rating",
                value=4.0,
                quantity=1,
                occurred_at=NOW,
            )
        )
    assert (await store.stats()).interactions == 1


async def test_products_the_assistant_showed_are_not_customer_activity(store: SqlStore) -> None:
    """Being shown recommendations does not make a visitor active, nor move last_seen."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running")
        cy = await add_customer(session, "cy")
        await add_interactions(session, cy, shoes, "view", 1, days_ago=3)
        await add_interactions(session, cy, shoes, "shown", 5, days_ago=0.5)
        await rebuild_profile_metrics(session, now=NOW)
    snapshot = await store.load_snapshot(customer_key(TEST_SECRET, "cy"))

    assert snapshot is not None
    assert snapshot.metrics.interaction_count == 1
    assert snapshot.metrics.last_seen_at == NOW - timedelta(days=3)
