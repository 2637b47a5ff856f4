"""Moving customers from a former secret's keys to the current one, on SQLite, PostgreSQL
and MySQL/MariaDB: what moves, what wins, and two movers at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from rasa_personalize.identity import customer_key
from rasa_personalize.store.dialect import failure_keeps_transaction
from rasa_personalize.store.interactions import write_interactions
from rasa_personalize.store.models import (
    ConsentChange,
    ConsentState,
    Customer,
    CustomerAlias,
    ErasureTombstone,
    ExperimentExposure,
    Interaction,
    OfferExposure,
)
from rasa_personalize.store.rekey import keys_in_use, rekey_customer, rekey_customers
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW

OLD_SECRET = "former-secret-key-0123456789"
OLDER_SECRET = "oldest-secret-key-0123456789"
NEW_SECRET = "current-secret-key-0123456789"


def old(external_id: str) -> str:
    return customer_key(OLD_SECRET, external_id)


def older(external_id: str) -> str:
    return customer_key(OLDER_SECRET, external_id)


def new(external_id: str) -> str:
    return customer_key(NEW_SECRET, external_id)


async def add_customer(store: SqlStore, key: str, *, events: int = 0) -> int:
    """A customer under ``key`` with ``events`` interactions; returns its id."""
    async with store.sessions.begin() as session:
        customer = Customer(customer_key=key, created_at=NOW - timedelta(days=30))
        session.add(customer)
        await session.flush()
        for number in range(events):
            session.add(
                Interaction(
                    event_id=f"{key[:8]}-{number}",
                    customer_id=customer.id,
                    kind="view",
                    occurred_at=NOW - timedelta(hours=number + 1),
                )
            )
        return customer.id


async def add_consent(
    store: SqlStore, key: str, purpose: str, granted: bool, hours_ago: int
) -> None:
    at = NOW - timedelta(hours=hours_ago)
    async with store.sessions.begin() as session:
        session.add(
            ConsentState(
                customer_key=key, purpose=purpose, granted=granted, source="chat", updated_at=at
            )
        )
        session.add(
            ConsentChange(
                customer_key=key,
                purpose=purpose,
                decision="granted" if granted else "denied",
                source="chat",
                recorded_at=at,
            )
        )


async def rekey(store: SqlStore, old_keys: list[str], new_key: str) -> bool:
    async with store.sessions.begin() as session:
        return await rekey_customer(session, old_keys, new_key)


async def rows(store: SqlStore, *columns: Any, where: Any = None) -> list[tuple[Any, ...]]:
    statement = select(*columns)
    if where is not None:
        statement = statement.where(where)
    async with store.sessions() as session:
        return sorted(tuple(row) for row in (await session.execute(statement)).all())


async def test_customer_moves_with_interactions_consent_and_tombstone(store: SqlStore) -> None:
    """The row keeps its id (so its interactions follow); consent states, history and the
    tombstone are re-keyed; nothing is left under the old key."""
    customer_id = await add_customer(store, old("ann"), events=3)
    await add_consent(store, old("ann"), "tracking", False, hours_ago=5)
    async with store.sessions.begin() as session:
        session.add(ErasureTombstone(customer_key=old("ann"), erased_at=NOW - timedelta(days=2)))

    assert await rekey(store, [old("ann")], new("ann")) is True

    assert await rows(store, Customer.id, Customer.customer_key) == [(customer_id, new("ann"))]
    assert await rows(store, func.count(), where=Interaction.customer_id == customer_id) == [(3,)]
    assert await rows(store, ConsentState.customer_key, ConsentState.purpose,
                      ConsentState.granted) == [(new("ann"), "tracking", False)]  # fmt: skip
    assert await rows(store, ConsentChange.customer_key, ConsentChange.decision) == [
        (new("ann"), "denied")
    ]
    assert await rows(store, ErasureTombstone.customer_key, ErasureTombstone.erased_at) == [
        (new("ann"), NOW - timedelta(days=2))
    ]
    async with store.sessions() as session:
        assert await keys_in_use(session, [old("ann")]) == {}


async def test_experiment_and_offer_exposures_follow_the_customer(store: SqlStore) -> None:
    """Reports join exposures to the customer's key, so they move with the customer; where
    the new key was exposed to the same experiment already, its own row stays."""
    await add_customer(store, old("ann"))
    async with store.sessions.begin() as session:
        for experiment, arm, key, hours in (
            ("discount", "twenty", old("ann"), 50),
            ("wording", "short", old("ann"), 40),
            ("wording", "control", new("ann"), 1),  # exposed again after the secret changed
        ):
            session.add(ExperimentExposure(experiment=experiment, customer_key=key, arm=arm,
                                           exposed_at=NOW - timedelta(hours=hours)))  # fmt: skip
        session.add(
            OfferExposure(
                customer_key=old("ann"),
                offer="free_shipping",
                shown_on=NOW.date(),
                segment="loyal",
                shown_at=NOW,
            )
        )

    assert await rekey(store, [old("ann")], new("ann")) is True

    exposures = (
        ExperimentExposure.customer_key,
        ExperimentExposure.experiment,
        ExperimentExposure.arm,
    )
    assert await rows(store, *exposures) == [
        (new("ann"), "discount", "twenty"),
        (new("ann"), "wording", "control"),
    ]
    assert await rows(store, OfferExposure.customer_key, OfferExposure.offer) == [
        (new("ann"), "free_shipping")
    ]


async def test_nothing_to_move_writes_nothing(store: SqlStore) -> None:
    """Unknown old keys, no old keys, or the new key given as an old one: False, no change."""
    await add_customer(store, new("bob"))
    assert await rekey(store, [old("nobody")], new("nobody")) is False
    assert await rekey(store, [], new("bob")) is False
    assert await rekey(store, [new("bob")], new("bob")) is False
    assert await rows(store, Customer.customer_key) == [(new("bob"),)]


async def test_a_customer_under_the_new_key_wins(store: SqlStore) -> None:
    """If the new key has a customer already, the old row stays; consent moves per purpose
    unless the new key answered that purpose itself (its answer is the newer one)."""
    old_id = await add_customer(store, old("cy"), events=1)
    new_id = await add_customer(store, new("cy"))
    await add_consent(store, old("cy"), "tracking", False, hours_ago=30)
    await add_consent(store, old("cy"), "marketing", True, hours_ago=30)
    await add_consent(store, new("cy"), "tracking", True, hours_ago=1)

    assert await rekey(store, [old("cy")], new("cy")) is False

    assert await rows(store, Customer.id, Customer.customer_key) == sorted(
        [(old_id, old("cy")), (new_id, new("cy"))]
    )
    assert await rows(store, ConsentState.customer_key, ConsentState.purpose,
                      ConsentState.granted) == [
        (new("cy"), "marketing", True), (new("cy"), "tracking", True)
    ]  # fmt: skip
    history = await rows(store, ConsentChange.customer_key)
    assert history == [(new("cy"),)] * 3


async def test_the_first_old_key_in_use_wins_and_aliases_move(store: SqlStore) -> None:
    """Of two former keys in use, the first listed moves; a merged customer's alias under
    a former key is re-keyed and reaches its survivor under the new key."""
    recent = await add_customer(store, old("dee"))
    await add_customer(store, older("dee"))
    survivor = await add_customer(store, new("survivor"))
    async with store.sessions.begin() as session:
        session.add(
            CustomerAlias(alias_key=old("merged"), customer_id=survivor, match="exact",
                          merged_at=NOW)
        )  # fmt: skip

    assert await rekey(store, [old("dee"), older("dee")], new("dee")) is True
    assert await rekey(store, [old("merged")], new("merged")) is True

    assert (recent, new("dee")) in await rows(store, Customer.id, Customer.customer_key)
    assert await rows(store, CustomerAlias.alias_key, CustomerAlias.customer_id) == [
        (new("merged"), survivor)
    ]


async def test_one_lookup_answers_where_each_key_is_used(store: SqlStore) -> None:
    """keys_in_use names every table a key is found in, and leaves unknown keys out."""
    await add_customer(store, old("eve"))
    await add_consent(store, old("eve"), "tracking", True, hours_ago=1)
    async with store.sessions.begin() as session:
        session.add(ErasureTombstone(customer_key=old("gone"), erased_at=NOW))
    async with store.sessions() as session:
        found = await keys_in_use(session, [old("eve"), old("gone"), old("nobody")])
    assert found == {
        old("eve"): frozenset({"customer", "consent"}),
        old("gone"): frozenset({"tombstone"}),
    }


async def test_batch_moves_only_customers_found_under_former_keys(store: SqlStore) -> None:
    """rekey_customers counts the customers moved; a customer already under its new key
    is left alone."""
    await add_customer(store, old("f1"))
    await add_customer(store, old("f2"))
    await add_customer(store, new("f3"))
    async with store.sessions.begin() as session:
        moved = await rekey_customers(
            session, {new(name): [old(name)] for name in ("f1", "f2", "f3", "f4")}
        )
    assert moved == 2
    assert await rows(store, Customer.customer_key) == sorted(
        [(new("f1"),), (new("f2"),), (new("f3"),)]
    )


@pytest.mark.parametrize(
    "database_url",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ],
    indirect=True,
)
async def test_concurrent_movers_neither_fail_nor_duplicate(store: SqlStore) -> None:
    """Two servers moving the same customers at once (and a third creating some under the
    new key meanwhile): no error, one customer per person, every move counted once."""
    people = [f"p{number}" for number in range(12)]
    for person in people:
        await add_customer(store, old(person), events=1)
    await add_consent(store, old("p0"), "tracking", True, hours_ago=1)

    async def mover(order: list[str]) -> int:
        moved = 0
        for person in order:
            moved += await rekey(store, [old(person)], new(person))
        return moved

    async def creator() -> None:
        # Ingestion under the new key that did not look for former keys.
        for person in people[::3]:
            async with store.sessions.begin() as session:
                await write_interactions(session, [_Event(person)], now=NOW)

    counts = await asyncio.gather(mover(people), mover(people[::-1]), creator())

    keys = [key for (key,) in await rows(store, Customer.customer_key)]
    assert len(keys) == len(set(keys))
    moved = {person for person in people if new(person) in keys and old(person) not in keys}
    # Moved at most once each; a person the creator got to first keeps both rows.
    assert counts[0] + counts[1] == len(moved)
    assert all(new(person) in keys for person in people[::3])
    assert all(new(person) in keys or old(person) in keys for person in people)
    assert await rows(store, ConsentState.customer_key) == [(new("p0"),)]


class _Event:
    """An interaction event of ``person`` under the new key (what ingestion stores)."""

    def __init__(self, person: str) -> None:
        self.event_id = f"created-{person}"
        self.customer_key = new(person)
        self.sku: str | None = None
        self.kind = "search"
        self.occurred_at = NOW - timedelta(minutes=1)
        self.channel: str | None = None
        self.device: str | None = None
        self.location: str | None = None
        self.category: str | None = "shoes"
        self.value: float | None = None
        self.quantity = 1
        self.price: float | None = None


async def test_a_refused_update_keeps_the_transaction(store: SqlStore) -> None:
    """What a mover relies on when a customer appears under the new key just before its
    update: the unique violation is caught and the rest of the transaction commits (on
    PostgreSQL through a savepoint, elsewhere the database undoes the one statement)."""
    first = await add_customer(store, old("gil"))
    await add_customer(store, new("gil"))
    async with store.sessions.begin() as session:
        with pytest.raises(IntegrityError):
            async with failure_keeps_transaction(session):
                await session.execute(
                    update(Customer).where(Customer.id == first).values(customer_key=new("gil"))
                )
        session.add(ErasureTombstone(customer_key=old("other"), erased_at=NOW))
    assert await rows(store, ErasureTombstone.customer_key) == [(old("other"),)]
    assert (first, old("gil")) in await rows(store, Customer.id, Customer.customer_key)
