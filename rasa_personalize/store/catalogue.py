"""Reads and writes for recommendations: the catalogue, a customer's items, training data,
precomputed lists and chat-side interactions. Sessions and connections come from callers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.clock import utc_now
from rasa_personalize.store.bulk import insert_new_rows_on
from rasa_personalize.store.collector import collector_paused
from rasa_personalize.store.consent import read_tracking_facts
from rasa_personalize.store.dialect import dialect_of, insert_ignoring
from rasa_personalize.store.history import CustomerHistory, HistoryQuery, read_customer_history
from rasa_personalize.store.models import (
    Customer,
    CustomerAlias,
    ExperimentExposure,
    Interaction,
    OfferExposure,
    PrecomputedRecommendations,
    Product,
    SegmentAssignment,
)
from rasa_personalize.store.records import ProductRecord
from rasa_personalize.store.totals import inbox_new_interactions


@dataclass(frozen=True)
class CustomerItems:
    """What one customer did with which products, for filters and the session fallback."""

    purchased: frozenset[str]
    # (sku, kind, value), newest first, within the recent window.
    recent: tuple[tuple[str, str, float | None], ...]
    # (sku, score) from the last training run, best first; empty if none.
    precomputed: tuple[tuple[str, float], ...] = ()
    precomputed_version: str | None = None
    # The title of the customer's latest purchase, for "because you bought ..." reasons.
    last_purchase_title: str | None = None
    customer_id: int | None = None
    # Aggregated history for recalculating the customer's vector; None when not asked for.
    history: CustomerHistory | None = None
    # (sku, when) of the purchases read, newest first: substitutes of recent purchases are
    # demoted, consumables may be offered again (rasa_personalize.recommend.reranking).
    purchases: tuple[tuple[str, datetime], ...] = ()


@dataclass(frozen=True)
class TrainingRows:
    """Every interaction with a product, as parallel lists (customer keys, skus, ...)."""

    customer_keys: list[str]
    skus: list[str]
    kinds: list[str]
    values: list[float | None]
    # When the newest of these interactions happened: the model's training data cutoff.
    newest_at: datetime | None = None


def read_products(connection: Connection) -> list[ProductRecord]:
    """Every product, by sku."""
    rows = connection.execute(
        select(
            Product.sku,
            Product.title,
            Product.category,
            Product.brand,
            Product.price,
            Product.in_stock,
            Product.description,
        ).order_by(Product.sku)
    )
    return [ProductRecord(*row) for row in rows]


# How many of a customer's latest purchases a recommendation excludes (and reads).
PURCHASES_READ = 1_000
# How many of a customer's interactions in the recent window it reads, newest first.
RECENT_READ = 50


@lru_cache(maxsize=1)
def customer_item_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The statements :func:`read_customer_items` runs, built once: purchases (sku, title,
    occurred_at), recent interactions (sku, kind, value, occurred_at) and the precomputed
    list (items, model_version). Parameters: ``customer_id``, ``since`` and ``limit``."""
    interactions, products = Interaction.__table__, Product.__table__
    precomputed = PrecomputedRecommendations.__table__
    purchased = (
        select(products.c.sku, products.c.title, interactions.c.occurred_at)
        .join(products, products.c.id == interactions.c.product_id)
        .where(interactions.c.customer_id == bindparam("customer_id"))
        .where(interactions.c.kind == "purchase")
        .order_by(interactions.c.occurred_at.desc())
        # Bounded, so that every read of the hot path is: the latest purchases are the
        # ones a shopper would not want offered again.
        .limit(PURCHASES_READ)
    )
    recent = (
        select(
            products.c.sku, interactions.c.kind, interactions.c.value, interactions.c.occurred_at
        )
        .join(products, products.c.id == interactions.c.product_id)
        .where(interactions.c.customer_id == bindparam("customer_id"))
        .where(interactions.c.occurred_at >= bindparam("since"))
        .order_by(interactions.c.occurred_at.desc())
        .limit(bindparam("limit"))
    )
    stored = select(precomputed.c["items"], precomputed.c.model_version).where(
        precomputed.c.customer_id == bindparam("customer_id")
    )
    return purchased, recent, stored


def customer_items_from_rows(
    customer_id: int,
    purchases: Sequence[Sequence[Any]],
    recent: Sequence[Sequence[Any]],
    stored: Sequence[Any] | None,
    history: CustomerHistory | None = None,
) -> CustomerItems:
    """A customer's items from the rows of :func:`customer_item_statements` (``stored``:
    the precomputed list's row, None without one)."""
    return CustomerItems(
        purchased=frozenset(row[0] for row in purchases),
        recent=tuple((row[0], row[1], row[2]) for row in recent),
        precomputed=tuple((str(sku), float(score)) for sku, score in stored[0]) if stored else (),
        precomputed_version=stored[1] if stored else None,
        last_purchase_title=purchases[0][1] if purchases else None,
        purchases=tuple((row[0], row[2]) for row in purchases),
        customer_id=customer_id,
        history=history,
    )


def read_customer_items(
    connection: Connection,
    customer_id: int,
    since: datetime,
    recent_limit: int = RECENT_READ,
    *,
    with_precomputed: bool = True,
    history: HistoryQuery | None = None,
) -> CustomerItems:
    """A customer's purchases, recent interactions and precomputed list (three reads).

    ``with_precomputed=False`` skips the precomputed list (Redis holds it). ``history``
    adds the aggregated history when it asks for one (see ``rasa_personalize.store.history``):
    usually no statement when nothing is new, one bounded statement when something is.
    """
    purchased_statement, recent_statement, stored_statement = customer_item_statements()
    purchases = connection.execute(purchased_statement, {"customer_id": customer_id}).all()
    recent = connection.execute(
        recent_statement, {"customer_id": customer_id, "since": since, "limit": recent_limit}
    ).all()
    stored = (
        connection.execute(stored_statement, {"customer_id": customer_id}).one_or_none()
        if with_precomputed
        else None
    )
    return customer_items_from_rows(
        customer_id,
        purchases,
        recent,
        stored,
        None
        if history is None
        else read_customer_history(
            connection,
            customer_id,
            history,
            [(row.kind, row.occurred_at) for row in recent],
            recent_since=since,
            recent_complete=len(recent) < recent_limit,
        ),
    )


def _latest_segments() -> Select[int, str]:
    """Each customer's segment for popularity: the greatest of its stored ones."""
    return select(
        SegmentAssignment.customer_id, func.max(SegmentAssignment.segment).label("segment")
    ).group_by(SegmentAssignment.customer_id)


async def read_latest_segments(session: AsyncSession) -> tuple[list[int], list[str]]:
    """(customer ids, their segments) as :func:`read_popularity_rows` counts them, for
    training to count popularity from the interactions it read already."""
    rows = (await session.execute(_latest_segments())).all()
    return [int(customer_id) for customer_id, _ in rows], [str(segment) for _, segment in rows]


def read_popularity_rows(connection: Connection) -> list[tuple[str, str | None, str, int]]:
    """(sku, stored segment or None, kind, count) over every interaction with a product."""
    latest_segment = _latest_segments().subquery()
    rows = connection.execute(
        select(Product.sku, latest_segment.c.segment, Interaction.kind, func.count())
        .join(Product, Product.id == Interaction.product_id)
        .outerjoin(latest_segment, latest_segment.c.customer_id == Interaction.customer_id)
        .group_by(Product.sku, latest_segment.c.segment, Interaction.kind)
    )
    return [(sku, segment, kind, int(count)) for sku, segment, kind, count in rows]


async def read_training_rows(session: AsyncSession) -> TrainingRows:
    """Every interaction that names a product, streamed in batches, and the newest time."""
    rows = TrainingRows([], [], [], [])
    newest_at: datetime | None = None
    result = await session.stream(
        select(
            Customer.customer_key,
            Product.sku,
            Interaction.kind,
            Interaction.value,
            Interaction.occurred_at,
        )
        .join(Customer, Customer.id == Interaction.customer_id)
        .join(Product, Product.id == Interaction.product_id)
        .execution_options(yield_per=20_000)
    )
    with collector_paused():
        async for partition in result.partitions():
            for key, sku, kind, value, occurred_at in partition:
                rows.customer_keys.append(key)
                rows.skus.append(sku)
                rows.kinds.append(kind)
                rows.values.append(value)
                if newest_at is None or occurred_at > newest_at:
                    newest_at = occurred_at
    return replace(rows, newest_at=newest_at)


async def read_first_seen(session: AsyncSession) -> dict[str, datetime]:
    """sku -> when the product's first interaction happened, for products with one."""
    rows = await session.execute(
        select(Product.sku, func.min(Interaction.occurred_at))
        .join(Product, Product.id == Interaction.product_id)
        .group_by(Product.sku)
    )
    first: dict[str, datetime] = {}
    for sku, when in rows:
        # UtcDateTime is not applied to aggregate results, so SQLite hands back strings.
        parsed = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
        first[str(sku)] = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return first


async def customer_ids_by_key(session: AsyncSession, keys: Iterable[str]) -> dict[str, int]:
    """customer_key -> id for the given keys."""
    wanted = list(keys)
    found: dict[str, int] = {}
    for start in range(0, len(wanted), 5_000):
        chunk = wanted[start : start + 5_000]
        rows = await session.execute(
            select(Customer.customer_key, Customer.id).where(Customer.customer_key.in_(chunk))
        )
        found.update({key: int(customer_id) for key, customer_id in rows.all()})
    return found


async def active_customer_keys(session: AsyncSession, since: datetime) -> set[str]:
    """Keys of the customers with an interaction at or after ``since`` (over the
    ``occurred_at`` index: a recent window reads a small part of the table)."""
    recent = select(Interaction.customer_id).where(Interaction.occurred_at >= since).distinct()
    rows = await session.execute(
        select(Customer.customer_key).where(Customer.id.in_(recent.scalar_subquery()))
    )
    return {str(key) for key in rows.scalars()}


async def replace_precomputed(
    session: AsyncSession,
    lists: Sequence[tuple[int, list[list[Any]]]],
    model_version: str,
) -> int:
    """Store each customer's precomputed list, replacing older ones. Returns rows written."""
    await session.execute(delete(PrecomputedRecommendations))
    now = utc_now()
    rows = [
        {"customer_id": cid, "items": items, "model_version": model_version, "computed_at": now}
        for cid, items in lists
    ]
    for start in range(0, len(rows), 5_000):
        await session.execute(insert(PrecomputedRecommendations), rows[start : start + 5_000])
    return len(rows)


@dataclass(frozen=True)
class ChatInteraction:
    """One thing that happened in a chat, to store as an interaction.

    ``sku`` names the product (``shown``, ``feedback``); product-less kinds
    (``category_asked``) carry a ``category`` instead.
    """

    event_id: str
    kind: str
    sku: str | None = None
    value: float | None = None
    category: str | None = None


# Column widths of interactions.category and .location: longer text is cut, not refused.
_MAX_CATEGORY = 64
_MAX_LOCATION = 128


def _storable(event: ChatInteraction, product_ids: dict[str, int]) -> bool:
    if event.sku is not None:
        return event.sku in product_ids
    return bool(event.category)


@dataclass(frozen=True)
class ChatWrite:
    """One action's chat-side events for one customer, with where and when they happened."""

    customer_key: str
    events: Sequence[ChatInteraction]
    occurred_at: datetime
    channel: str | None = None
    device: str | None = None
    location: str | None = None
    # (experiment, arm) exposures of this customer, stored unless already there.
    exposures: Sequence[tuple[str, str]] = ()
    # (offer label, segment) the session actions showed, stored once per offer and day.
    offers_shown: Sequence[tuple[str, str]] = ()


async def insert_chat_interactions(
    session: AsyncSession,
    customer_key: str,
    events: Sequence[ChatInteraction],
    *,
    channel: str | None,
    occurred_at: datetime,
    device: str | None = None,
    location: str | None = None,
) -> set[str]:
    """Store chat-side interactions for a customer; returns the event ids that were new.

    A customer not yet in the store is created (first seen). Events naming an unknown sku
    are skipped, as are product-less events without a category; an event id already
    stored is skipped too, so a retried action call stores nothing twice.
    """
    write = ChatWrite(customer_key, events, occurred_at, channel, device, location)
    connection = await session.connection()
    return (await connection.run_sync(_insert_chat_writes, [write]))[0]


def store_chat_batch(
    connection: Connection, writes: Sequence[ChatWrite], default_granted: bool
) -> list[set[str]]:
    """Store many actions' chat-side events in the caller's transaction, in set-wise
    statements; each write's new event ids, in order.

    A write of a customer without tracking consent (their answer, else
    ``default_granted``), or dated at or before their erasure, stores nothing. Synchronous,
    so that a whole batch is one thread hop on SQLite (one greenlet hop elsewhere).
    """
    facts = read_tracking_facts(connection, {write.customer_key for write in writes})
    allowed = [w for w in writes if facts.allows(w.customer_key, w.occurred_at, default_granted)]
    _insert_exposures(connection, allowed)
    _insert_offer_exposures(connection, allowed)
    stored = iter(_insert_chat_writes(connection, allowed))
    return [
        next(stored) if facts.allows(w.customer_key, w.occurred_at, default_granted) else set()
        for w in writes
    ]


def _insert_exposures(connection: Connection, writes: Sequence[ChatWrite]) -> None:
    """First exposures only: a customer's row for an experiment is never replaced."""
    rows = {
        (experiment, write.customer_key): {
            "experiment": experiment,
            "customer_key": write.customer_key,
            "arm": arm,
            "exposed_at": write.occurred_at,
        }
        for write in reversed(writes)  # the earliest write of a batch wins
        for experiment, arm in write.exposures
    }
    if rows:
        connection.execute(
            insert_ignoring(
                dialect_of(connection), ExperimentExposure, ["experiment", "customer_key"]
            ),
            list(rows.values()),
        )


def _insert_offer_exposures(connection: Connection, writes: Sequence[ChatWrite]) -> None:
    """The first showing of an offer to a customer on a (UTC) day; later ones add nothing."""
    rows: dict[tuple[str, str, date], dict[str, Any]] = {}
    for write in writes:
        shown_on = write.occurred_at.astimezone(timezone.utc).date()
        for offer, segment in write.offers_shown:
            key = (write.customer_key, offer, shown_on)
            if key in rows and rows[key]["shown_at"] <= write.occurred_at:
                continue  # the earliest showing of the day wins
            rows[key] = {
                "customer_key": write.customer_key,
                "offer": offer,
                "shown_on": shown_on,
                "segment": segment,
                "shown_at": write.occurred_at,
            }
    if rows:
        connection.execute(
            insert_ignoring(
                dialect_of(connection), OfferExposure, ["customer_key", "offer", "shown_on"]
            ),
            list(rows.values()),
        )


def _insert_chat_writes(connection: Connection, writes: Sequence[ChatWrite]) -> list[set[str]]:
    """The same rules per write as :func:`insert_chat_interactions`; one lookup of
    customers, aliases and products and one insert for the whole batch."""
    if not writes:
        return []
    dialect = dialect_of(connection)
    # A write of exposures alone creates no customer: only events make a history.
    keys = sorted({write.customer_key for write in writes if write.events})
    customer_ids = _customer_ids(connection, keys)
    missing = [key for key in keys if key not in customer_ids]
    if missing:
        # The old key of a customer merged into another (an import's dedupe) must reach
        # the survivor, not create a new customer that splits the history again.
        aliases = connection.execute(
            select(CustomerAlias.alias_key, CustomerAlias.customer_id).where(
                CustomerAlias.alias_key.in_(missing)
            )
        )
        customer_ids.update({key: int(customer_id) for key, customer_id in aliases.all()})
    first_seen = {w.customer_key: w.occurred_at for w in reversed(writes)}
    new_keys = [key for key in keys if key not in customer_ids]
    if new_keys:
        connection.execute(
            insert_ignoring(dialect, Customer, ["customer_key"]),
            [
                {"customer_key": key, "created_at": first_seen[key], "loyalty_tier": "none"}
                for key in new_keys
            ],
        )
        customer_ids.update(_customer_ids(connection, new_keys))
    skus = {e.sku for write in writes for e in write.events if e.sku is not None}
    product_ids: dict[str, int] = {}
    if skus:
        found = connection.execute(select(Product.sku, Product.id).where(Product.sku.in_(skus)))
        product_ids = {sku: int(product_id) for sku, product_id in found.all()}
    rows = [
        {
            "event_id": event.event_id,
            "customer_id": customer_ids[write.customer_key],
            "product_id": product_ids[event.sku] if event.sku is not None else None,
            "kind": event.kind,
            "value": event.value,
            "quantity": 1,
            "channel": write.channel,
            "device": write.device,
            "location": write.location[:_MAX_LOCATION] if write.location else None,
            "category": event.category[:_MAX_CATEGORY] if event.category else None,
            "occurred_at": write.occurred_at,
        }
        for write in writes
        for event in write.events
        if _storable(event, product_ids)
    ]
    # Looked up as a Table, which is what Core insert() is typed for.
    interactions = Interaction.metadata.tables[Interaction.__tablename__]
    inserted = set(insert_new_rows_on(connection, interactions, "event_id", rows))
    if inserted:
        # Folded into the customers' running totals by the stream worker's next refresh.
        # A retried call in the same batch repeats ids: each goes in once.
        fresh = {
            event.event_id: customer_ids[write.customer_key]
            for write in writes
            for event in write.events
            if event.event_id in inserted
        }
        connection.execute(inbox_new_interactions(list(fresh.items()), dialect))
    new_per_write = []
    for write in writes:
        # A retried call in the same batch repeats ids: the first write owns them.
        new = {event.event_id for event in write.events if event.event_id in inserted}
        inserted -= new
        new_per_write.append(new)
    return new_per_write


def _customer_ids(connection: Connection, keys: Sequence[str]) -> dict[str, int]:
    rows = connection.execute(
        select(Customer.customer_key, Customer.id).where(Customer.customer_key.in_(keys))
    )
    return {key: int(customer_id) for key, customer_id in rows.all()}


async def record_interactions(
    session: AsyncSession,
    customer_key: str,
    events: Sequence[tuple[str, str, str, float | None] | ChatInteraction],
    *,
    channel: str | None,
    occurred_at: datetime,
    device: str | None = None,
    location: str | None = None,
) -> int:
    """Store chat-side interactions, as (event_id, sku, kind, value) or
    :class:`ChatInteraction` (product-less kinds with a category); see
    :func:`insert_chat_interactions`. Returns the number of new interactions.
    """
    chat_events = [
        event
        if isinstance(event, ChatInteraction)
        else ChatInteraction(event[0], event[2], sku=event[1], value=event[3])
        for event in events
    ]
    new = await insert_chat_interactions(
        session,
        customer_key,
        chat_events,
        channel=channel,
        occurred_at=occurred_at,
        device=device,
        location=location,
    )
    return len(new)
