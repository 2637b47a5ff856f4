"""Ingestion after the secret changed: a customer stored under a former secret's key
is found (moved first), on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from rasa_personalize.events.ingest import adopt_event_customers, ingest_events
from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import ConsentState, Customer, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_product

OLD_SECRET = "former-secret-key-0123456789"
NEW_SECRET = "current-secret-key-0123456789"


def event(event_id: str, customer: Any, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer": customer,
        "product": "SKU-1",
        "kind": "view",
        "timestamp": "2026-06-01T11:00:00Z",
        **changes,
    }


async def seed(store: SqlStore) -> int:
    """SKU-1, and customer "ann" stored under the old secret with one interaction."""
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes")
        customer = Customer(customer_key=customer_key(OLD_SECRET, "ann"))
        session.add(customer)
        await session.flush()
        session.add(
            Interaction(event_id="before", customer_id=customer.id, kind="view",
                        occurred_at=NOW - timedelta(days=3))
        )  # fmt: skip
        return customer.id


async def ingest(store: SqlStore, events: list[Any], previous: tuple[str, ...]) -> Any:
    async with store.sessions.begin() as session:
        return await ingest_events(
            session, events, secret_key=NEW_SECRET, now=NOW, previous_secret_keys=previous
        )


async def test_new_secret_finds_the_customer_stored_under_the_old_one(store: SqlStore) -> None:
    """The event joins the old customer's history under the new key; no new customer."""
    ann = await seed(store)
    result = await ingest(store, [event("after", "ann")], (OLD_SECRET,))
    assert result.accepted == ["after"]
    async with store.sessions() as session:
        customers = (await session.execute(select(Customer.id, Customer.customer_key))).all()
        history = (
            await session.scalars(
                select(Interaction.event_id)
                .where(Interaction.customer_id == ann)
                .order_by(Interaction.occurred_at)
            )
        ).all()
    assert [tuple(row) for row in customers] == [(ann, customer_key(NEW_SECRET, "ann"))]
    assert history == ["before", "after"]


async def test_without_former_secrets_the_customer_is_split(store: SqlStore) -> None:
    """What the setting prevents: the same person becomes a second, empty customer."""
    await seed(store)
    await ingest(store, [event("after", "ann")], ())
    async with store.sessions() as session:
        keys = set((await session.scalars(select(Customer.customer_key))).all())
    assert keys == {customer_key(OLD_SECRET, "ann"), customer_key(NEW_SECRET, "ann")}


async def test_consent_under_the_old_key_still_suppresses(store: SqlStore) -> None:
    """A tracking denial given under the old key moves first, so the event is suppressed."""
    await seed(store)
    async with store.sessions.begin() as session:
        session.add(
            ConsentState(customer_key=customer_key(OLD_SECRET, "ann"), purpose="tracking",
                         granted=False, source="chat", updated_at=NOW - timedelta(days=1))
        )  # fmt: skip
    result = await ingest(store, [event("after", "ann")], (OLD_SECRET,))
    assert (result.accepted, result.suppressed) == ([], ["after"])


async def test_stream_path_moves_customers_before_checking(store: SqlStore) -> None:
    """adopt_event_customers alone (the Redis path calls it before check_events): numeric
    and padded ids are read as validation reads them; junk is skipped."""
    async with store.sessions.begin() as session:
        session.add_all(
            [
                Customer(customer_key=customer_key(OLD_SECRET, "42")),
                Customer(customer_key=customer_key(OLD_SECRET, "bob")),
            ]
        )
    async with store.sessions.begin() as session:
        moved = await adopt_event_customers(
            session,
            [event("a", 42), event("b", "  bob "), event("c", True), "junk", event("d", "")],
            secret_key=NEW_SECRET,
            previous_secret_keys=(OLD_SECRET,),
        )
    assert moved == 2
    async with store.sessions() as session:
        keys = set((await session.scalars(select(Customer.customer_key))).all())
    assert keys == {customer_key(NEW_SECRET, "42"), customer_key(NEW_SECRET, "bob")}
