"""Interaction events into rows: skus resolved, first-seen customers created, idempotent.

:func:`write_interactions` is the whole write of a batch of checked events, in the
caller's transaction: products looked up, customers found (aliases followed) or created,
interactions inserted once per event id, and optionally the metrics of the customers
with new interactions refreshed while their rows are held. :func:`find_skus` and
:func:`stored_event_ids` answer the questions asked before a batch is queued.

Events come in as plain data (:class:`InteractionEvent`: any object with these
attributes, such as ``rasa_personalize.events.validation.ValidEvent``), so nothing here
depends on how they were validated.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy import select

from rasa_personalize.store.bulk import chunked, insert_new_rows, plain_rows
from rasa_personalize.store.dialect import (
    dialect_of,
    insert_ignoring,
    lock_before_referencing_insert,
    member_of,
)
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.profiles import refresh_profile_metrics
from rasa_personalize.store.repository import aliased_customer_ids
from rasa_personalize.store.totals import inbox_new_interactions
from rasa_personalize.store.types import Session

# Values per IN (...) list.
# As a Table, which is what Core insert() is typed for.
INTERACTIONS: Final = Interaction.metadata.tables[Interaction.__tablename__]


class InteractionEvent(Protocol):
    """What the store reads of a checked event (the customer already pseudonymised)."""

    @property
    def event_id(self) -> str: ...
    @property
    def customer_key(self) -> str: ...
    @property
    def sku(self) -> str | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def location(self) -> str | None: ...
    @property
    def category(self) -> str | None: ...
    @property
    def value(self) -> float | None: ...
    @property
    def quantity(self) -> int: ...
    @property
    def price(self) -> float | None: ...


@dataclass(frozen=True)
class WrittenInteractions:
    """What :func:`write_interactions` did with a batch (events by event id)."""

    inserted: frozenset[str]
    # Stored before (an earlier batch, a redelivery, a concurrent writer).
    already_stored: frozenset[str]
    # Skus of the batch that the catalogue lacks: their events were skipped.
    unknown_skus: frozenset[str]
    # Keys and store ids of the customers with new interactions.
    changed_keys: frozenset[str]
    changed_customer_ids: frozenset[int]
    # Store ids of every customer of the inserted and already-stored events: a redelivered
    # batch changes no rows, but its customers' metrics may still be waiting for refresh.
    customer_ids: frozenset[int]
    # Profiles whose metrics were written (0 unless asked to refresh).
    refreshed_profiles: int = 0


async def _product_ids(session: Session, skus: Collection[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    dialect = dialect_of(session)
    for chunk in chunked(sorted(skus)):
        rows = await plain_rows(
            session, select(Product.sku, Product.id).where(member_of(Product.sku, chunk, dialect))
        )
        found.update({sku: int(product_id) for sku, product_id in rows.all()})
    return found


async def find_skus(session: Session, skus: Collection[str]) -> frozenset[str]:
    """Which of these skus the catalogue holds."""
    return frozenset(await _product_ids(session, skus)) if skus else frozenset()


async def stored_event_ids(session: Session, event_ids: Collection[str]) -> frozenset[str]:
    """Which of these event ids are stored already."""
    found: set[str] = set()
    dialect = dialect_of(session)
    for chunk in chunked(sorted(set(event_ids))):
        rows = await plain_rows(
            session,
            select(Interaction.event_id).where(member_of(Interaction.event_id, chunk, dialect)),
        )
        found.update(rows.scalars().all())
    return frozenset(found)


async def _customer_ids(session: Session, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    dialect = dialect_of(session)
    for chunk in chunked(keys):
        rows = await plain_rows(
            session,
            select(Customer.customer_key, Customer.id).where(
                member_of(Customer.customer_key, chunk, dialect)
            ),
        )
        found.update({key: int(customer_id) for key, customer_id in rows.all()})
    # The old key of a customer merged into another (an import's dedupe) reaches the survivor.
    unknown = [key for key in keys if key not in found]
    if unknown:
        found.update(await aliased_customer_ids(session, unknown))
    return found


async def _ensure_customers(session: Session, first_seen: dict[str, datetime]) -> dict[str, int]:
    """customer_key -> id, creating the customers not yet stored (first seen)."""
    keys = sorted(first_seen)
    found = await _customer_ids(session, keys)
    missing = [key for key in keys if key not in found]
    if missing:
        # Most customers of a batch are known: look up first, insert only the new ones.
        # One cached statement run as an executemany (a multi-row VALUES clause would be
        # compiled anew for every batch size); sorted keys keep concurrent batches from
        # deadlocking on each other's new rows.
        await session.execute(
            insert_ignoring(dialect_of(session), Customer, ["customer_key"]),
            [
                {"customer_key": key, "created_at": first_seen[key], "loyalty_tier": "none"}
                for key in missing
            ],
        )
        found.update(await _customer_ids(session, missing))
    return found


async def write_interactions(
    session: Session,
    events: Sequence[InteractionEvent],
    *,
    refresh_metrics: bool = True,
    now: datetime | None = None,
) -> WrittenInteractions:
    """Store checked events once each, creating first-seen customers.

    Events naming a sku the catalogue lacks are skipped (see ``unknown_skus``); of the
    others, the first event of each event id is the one stored. Idempotent by event id:
    an id stored before is skipped, so a redelivered batch has no second effect.

    Statements run in a fixed order that keeps concurrent batches from deadlocking:
    customers created in key order, interactions inserted, then (``refresh_metrics``)
    the customers with new interactions locked in id order and their metrics
    recomputed, so the last profile written has seen every committed batch.

    Args:
        session: A session in the caller's transaction; nothing is committed here.
        events: The checked events, in batch order.
        refresh_metrics: Recompute the behavioural metrics of the customers with new
            interactions (callers that refresh later, per customer, pass False: the new
            interactions then go to the inbox of the running totals, which that refresh
            folds in).
        now: The metrics' time of writing (default: now).
    """
    named = {event.sku for event in events if event.sku is not None}
    product_ids = await _product_ids(session, named) if named else {}
    unknown_skus = frozenset(named - product_ids.keys())
    unique: dict[str, InteractionEvent] = {}
    for event in events:
        if event.sku is None or event.sku in product_ids:
            unique.setdefault(event.event_id, event)
    if not unique:
        empty: frozenset[Any] = frozenset()
        return WrittenInteractions(empty, empty, unknown_skus, empty, empty, empty)
    storable = list(unique.values())
    first_seen: dict[str, datetime] = {}
    for event in storable:
        earliest = first_seen.get(event.customer_key)
        if earliest is None or event.occurred_at < earliest:
            first_seen[event.customer_key] = event.occurred_at
    customer_ids = await _ensure_customers(session, first_seen)
    if refresh_metrics:
        # Where the database needs it, the refresh's lock comes before the inserts.
        early_lock = lock_before_referencing_insert(
            select(Customer.id)
            .where(member_of(Customer.id, sorted(customer_ids.values()), dialect_of(session)))
            .order_by(Customer.id),
            dialect_of(session),
        )
        if early_lock is not None:
            await session.execute(early_lock)
    rows = [
        {
            "event_id": event.event_id,
            "customer_id": customer_ids[event.customer_key],
            "product_id": product_ids[event.sku] if event.sku is not None else None,
            "kind": event.kind,
            "value": event.value,
            "quantity": event.quantity,
            "price": event.price,
            "channel": event.channel,
            "device": event.device,
            "location": event.location,
            "category": event.category,
            "occurred_at": event.occurred_at,
        }
        for event in storable
    ]
    inserted: frozenset[str] = await insert_new_rows(session, INTERACTIONS, "event_id", rows)
    changed_keys = frozenset(e.customer_key for e in storable if e.event_id in inserted)
    changed_ids = frozenset(customer_ids[key] for key in changed_keys)
    refreshed = 0
    if changed_ids and refresh_metrics:
        refreshed = (await refresh_profile_metrics(session, changed_ids, now)).written
    elif inserted:
        # Whoever refreshes these customers later folds them into their running totals.
        fresh = [
            (e.event_id, customer_ids[e.customer_key]) for e in storable if e.event_id in inserted
        ]
        # Two values a row: 5,000 rows stay under SQLite's limit of variables per statement.
        for part in chunked(fresh, 5_000):
            await session.execute(inbox_new_interactions(part, dialect_of(session)))
    return WrittenInteractions(
        inserted=inserted,
        already_stored=frozenset(unique) - inserted,
        unknown_skus=unknown_skus,
        changed_keys=changed_keys,
        changed_customer_ids=changed_ids,
        customer_ids=frozenset(customer_ids.values()),
        refreshed_profiles=refreshed,
    )
