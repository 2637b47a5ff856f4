"""Writing interaction events on SQLite and PostgreSQL: skus, customers, idempotency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from rasa_personalize.identity import customer_key
from rasa_personalize.store.customers import add_aliases
from rasa_personalize.store.interactions import (
    WrittenInteractions,
    find_skus,
    stored_event_ids,
    write_interactions,
)
from rasa_personalize.store.models import Customer, CustomerProfile, Interaction, Product
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_product


@dataclass(frozen=True)
class Event:
    """Plain data with the attributes the store reads, as a checked event has them."""

    event_id: str
    customer_key: str
    sku: str | None = "SKU-1"
    kind: str = "view"
    occurred_at: datetime = NOW - timedelta(hours=1)
    channel: str | None = "web"
    device: str | None = None
    location: str | None = None
    category: str | None = None
    value: float | None = None
    quantity: int = 1
    price: float | None = None


ADA = customer_key(TEST_SECRET, "ada")
BOB = customer_key(TEST_SECRET, "bob")


async def seed(store: SqlStore) -> dict[str, int]:
    """Two products; returns sku -> product id."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes", price=100.0)
        socks = await add_product(session, "SKU-2", "socks", price=10.0)
        return {"SKU-1": shoes.id, "SKU-2": socks.id}


async def write(
    store: SqlStore, events: list[Event], *, refresh: bool = True
) -> WrittenInteractions:
    async with store.sessions.begin() as session:
        return await write_interactions(session, events, refresh_metrics=refresh, now=NOW)


async def customers(store: SqlStore) -> dict[str, tuple[int, datetime]]:
    """customer_key -> (id, created_at)."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(Customer.customer_key, Customer.id, Customer.created_at)
        )
        return {key: (customer_id, created) for key, customer_id, created in rows.all()}


async def interactions(store: SqlStore) -> dict[str, tuple[int, int | None, float | None]]:
    """event_id -> (customer id, product id, price)."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(
                Interaction.event_id,
                Interaction.customer_id,
                Interaction.product_id,
                Interaction.price,
            )
        )
        return {event_id: (cid, pid, price) for event_id, cid, pid, price in rows.all()}


async def test_new_events_create_their_customers_dated_by_the_first_event(
    store: SqlStore,
) -> None:
    """Each event is stored once; an unknown customer is created, dated by their earliest."""
    skus = await seed(store)
    earliest = NOW - timedelta(days=30)
    written = await write(
        store,
        [
            Event("a", ADA),
            Event("b", ADA, sku="SKU-2", kind="purchase", price=9.99, occurred_at=earliest),
            Event("c", BOB, sku=None, kind="search", category="socks"),
        ],
    )
    stored = await customers(store)
    assert set(stored) == {ADA, BOB}
    assert stored[ADA][1] == earliest
    ada, bob = stored[ADA][0], stored[BOB][0]
    assert written == WrittenInteractions(
        inserted=frozenset({"a", "b", "c"}),
        already_stored=frozenset(),
        unknown_skus=frozenset(),
        changed_keys=frozenset({ADA, BOB}),
        changed_customer_ids=frozenset({ada, bob}),
        customer_ids=frozenset({ada, bob}),
        refreshed_profiles=2,
    )
    assert await interactions(store) == {
        "a": (ada, skus["SKU-1"], None),
        "b": (ada, skus["SKU-2"], 9.99),
        "c": (bob, None, None),
    }


async def test_writing_the_same_events_again_changes_nothing(store: SqlStore) -> None:
    """A redelivered batch inserts nothing and refreshes nobody, but names its customers."""
    await seed(store)
    batch = [Event("a", ADA), Event("b", BOB, sku="SKU-2")]
    await write(store, batch)
    again = await write(store, batch)
    ids = {key: customer_id for key, (customer_id, _) in (await customers(store)).items()}
    assert again == WrittenInteractions(
        inserted=frozenset(),
        already_stored=frozenset({"a", "b"}),
        unknown_skus=frozenset(),
        changed_keys=frozenset(),
        changed_customer_ids=frozenset(),
        # Their metrics may still wait for a refresh (a worker killed before it).
        customer_ids=frozenset(ids.values()),
        refreshed_profiles=0,
    )
    assert len(await interactions(store)) == 2


async def test_events_naming_unknown_skus_are_skipped(store: SqlStore) -> None:
    """No interaction and no customer for an event whose sku the catalogue lacks."""
    await seed(store)
    written = await write(store, [Event("a", ADA), Event("b", BOB, sku="GHOST")])
    assert written.inserted == frozenset({"a"})
    assert written.unknown_skus == frozenset({"GHOST"})
    assert set(await customers(store)) == {ADA}


async def test_first_event_of_an_id_with_a_known_sku_is_the_one_stored(store: SqlStore) -> None:
    """Repeats of an event id are skipped, after the events naming unknown skus."""
    skus = await seed(store)
    written = await write(
        store,
        [Event("a", ADA, sku="GHOST"), Event("a", ADA, sku="SKU-2"), Event("a", ADA)],
    )
    assert (written.inserted, written.already_stored) == (frozenset({"a"}), frozenset())
    product_id = (await interactions(store))["a"][1]
    assert product_id == skus["SKU-2"]


async def test_known_customer_keeps_their_row(store: SqlStore) -> None:
    """Events of a stored customer attach to that customer; no second row appears."""
    await seed(store)
    async with store.sessions.begin() as session:
        known = await add_customer(session, "ada", tier="gold")
        known_id, known_created = known.id, known.created_at
    written = await write(store, [Event("a", ADA)])
    assert written.customer_ids == frozenset({known_id})
    assert await customers(store) == {ADA: (known_id, known_created)}
    assert (await interactions(store))["a"][0] == known_id


async def test_key_of_a_merged_customer_reaches_the_survivor(store: SqlStore) -> None:
    """An alias key's events land on the customer it was merged into; none is created."""
    await seed(store)
    async with store.sessions.begin() as session:
        survivor = await add_customer(session, "ada")
        survivor_id = survivor.id
        await add_aliases(session, [(BOB, survivor_id, "exact")], NOW)
    written = await write(store, [Event("a", BOB)])
    assert written.changed_keys == frozenset({BOB})
    assert written.changed_customer_ids == frozenset({survivor_id})
    assert set(await customers(store)) == {ADA}
    assert (await interactions(store))["a"][0] == survivor_id


async def test_without_refresh_no_profile_is_written(store: SqlStore) -> None:
    """``refresh_metrics=False`` leaves the metrics to a later per-customer refresh."""
    await seed(store)
    written = await write(store, [Event("a", ADA)], refresh=False)
    assert (written.inserted, written.refreshed_profiles) == (frozenset({"a"}), 0)
    async with store.sessions() as session:
        profiles = await session.scalar(select(func.count()).select_from(CustomerProfile))
    assert profiles == 0


async def test_lookups_before_queueing(store: SqlStore) -> None:
    """find_skus and stored_event_ids answer with the subset the store holds."""
    await seed(store)
    await write(store, [Event("a", ADA), Event("b", ADA)])
    async with store.sessions() as session:
        assert await find_skus(session, {"SKU-2", "GHOST"}) == frozenset({"SKU-2"})
        assert await find_skus(session, set()) == frozenset()
        assert await stored_event_ids(session, ["b", "x", "b"]) == frozenset({"b"})
        products = await session.scalar(select(func.count()).select_from(Product))
    assert products == 2
