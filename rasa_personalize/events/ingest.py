"""Interaction events into SQL: first-seen customers, idempotent inserts, fresh metrics.

Two steps, so that the Redis path can check a batch when it arrives and store it later:
:func:`check_events` validates and looks up skus (the answer to the sender),
:func:`store_events` writes checked events (directly, or from the stream worker). The
session and its transaction belong to the caller (one ``sessions.begin()`` per batch), so
a batch is stored entirely or not at all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.clock import utc_now
from rasa_personalize.events.validation import Rejection, ValidEvent, validate_batch
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.segments.tags import apply_tag_rules
from rasa_personalize.store.dialect import member_of
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.repository import aliased_customer_ids, write_profile_metrics

# Values per IN (...) list.
LOOKUP_CHUNK: Final = 1_000


@dataclass(frozen=True)
class IngestResult:
    """What became of each event of a batch (by event id; rejections by position)."""

    accepted: list[str]
    duplicates: list[str]
    rejected: list[Rejection]
    # Store ids of the customers whose metrics were refreshed.
    refreshed_customers: int = 0
    # Customer keys with new interactions (their cached profiles are now stale).
    changed_keys: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CheckedBatch:
    """A batch after validation and the sku lookup: what may be stored, and what not."""

    storable: tuple[ValidEvent, ...]
    # Repeated within the batch (the first occurrence is storable).
    duplicates: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    # Skus looked up in the catalogue and found there (for the caller's cache).
    found_skus: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StoredEvents:
    """What :func:`store_events` wrote."""

    inserted: frozenset[str]
    # Stored before (an earlier batch, a redelivery, a concurrent writer).
    already_stored: frozenset[str]
    # Skus that were removed from the catalogue between checking and storing.
    dropped: frozenset[str]
    changed_keys: frozenset[str]
    refreshed_customers: int
    # Store ids of every customer of the stored and already-stored events: a redelivered
    # batch changes no rows, but its customers' metrics may still be waiting for refresh.
    customer_ids: frozenset[int] = frozenset()


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _upsert(session: AsyncSession) -> Any:
    return postgresql_insert if _dialect(session) == "postgresql" else sqlite_insert


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _product_ids(session: AsyncSession, skus: set[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(sorted(skus), LOOKUP_CHUNK):
        rows = await session.execute(
            select(Product.sku, Product.id).where(member_of(Product.sku, chunk, _dialect(session)))
        )
        found.update({sku: int(product_id) for sku, product_id in rows.all()})
    return found


async def _customer_ids(session: AsyncSession, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in _chunks(keys, LOOKUP_CHUNK):
        rows = await session.execute(
            select(Customer.customer_key, Customer.id).where(
                member_of(Customer.customer_key, chunk, _dialect(session))
            )
        )
        found.update({key: int(customer_id) for key, customer_id in rows.all()})
    # The old key of a customer merged into another (an import's dedupe) reaches the survivor.
    unknown = [key for key in keys if key not in found]
    if unknown:
        found.update(await aliased_customer_ids(session, unknown))
    return found


async def _ensure_customers(
    session: AsyncSession, first_seen: dict[str, datetime]
) -> dict[str, int]:
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
            _upsert(session)(Customer.__table__).on_conflict_do_nothing(
                index_elements=["customer_key"]
            ),
            [
                {"customer_key": key, "created_at": first_seen[key], "loyalty_tier": "none"}
                for key in missing
            ],
        )
        found.update(await _customer_ids(session, missing))
    return found


async def check_events(
    session: AsyncSession,
    events: Sequence[Any],
    *,
    secret_key: str,
    now: datetime | None = None,
    known_skus: Collection[str] = frozenset(),
) -> CheckedBatch:
    """Validate raw events (JSON objects) and reject those naming an unknown sku.

    Events repeating an event id of the same batch are duplicates; whether an id was
    stored by an earlier batch is found out when storing. Skus in ``known_skus`` (seen
    in the catalogue a moment ago) are not looked up again: a product removed since is
    caught when storing (:attr:`StoredEvents.dropped`).
    """
    batch = validate_batch(events, secret_key=secret_key, now=now)
    rejected = list(batch.rejected)
    named = {e.sku for _, e in batch.valid if e.sku}
    wanted = {sku for sku in named if sku not in known_skus}
    found = set(await _product_ids(session, wanted)) if wanted else set()
    product_ids = found | (named - wanted)
    storable: list[ValidEvent] = []
    duplicates: list[str] = []
    seen_ids: set[str] = set()
    for index, event in batch.valid:
        if event.sku is not None and event.sku not in product_ids:
            rejected.append(
                Rejection(index, event.event_id, "product", f"unknown sku {event.sku!r}")
            )
            continue
        if event.event_id in seen_ids:
            duplicates.append(event.event_id)
            continue
        seen_ids.add(event.event_id)
        storable.append(event)
    rejected.sort(key=lambda rejection: rejection.index)
    return CheckedBatch(tuple(storable), tuple(duplicates), tuple(rejected), frozenset(found))


async def stored_event_ids(session: AsyncSession, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids are stored already."""
    found: set[str] = set()
    for chunk in _chunks(sorted(set(event_ids)), LOOKUP_CHUNK):
        rows = await session.execute(
            select(Interaction.event_id).where(
                member_of(Interaction.event_id, chunk, _dialect(session))
            )
        )
        found.update(rows.scalars().all())
    return found


# As a Table, which is what Core insert() is typed for.
INTERACTIONS: Final = Interaction.metadata.tables[Interaction.__tablename__]
# Column order of the PostgreSQL bulk insert, with each column's array type.
_UNNEST_COLUMNS: Final = (
    ("event_id", "VARCHAR[]"),
    ("customer_id", "BIGINT[]"),
    ("product_id", "BIGINT[]"),
    ("kind", "VARCHAR[]"),
    ("value", "FLOAT8[]"),
    ("quantity", "INTEGER[]"),
    ("price", "FLOAT8[]"),
    ("channel", "VARCHAR[]"),
    ("device", "VARCHAR[]"),
    ("location", "VARCHAR[]"),
    ("category", "VARCHAR[]"),
    ("occurred_at", "TIMESTAMPTZ[]"),
)
_UNNEST_INSERT: Final = text(
    # Built from the constant column list above: no outside text reaches the statement.
    "INSERT INTO interactions ({columns}) SELECT * FROM unnest({arrays}) "  # noqa: S608
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id".format(
        columns=", ".join(name for name, _ in _UNNEST_COLUMNS),
        arrays=", ".join(f"CAST(:{name} AS {kind})" for name, kind in _UNNEST_COLUMNS),
    )
)


async def _insert_interactions(session: AsyncSession, rows: list[dict[str, Any]]) -> frozenset[str]:
    """Insert rows, skipping event ids already stored; returns the ids really inserted.

    RETURNING lists only the rows inserted, so an event id stored before, or by a
    concurrent batch, is left out (PostgreSQL, SQLite >= 3.35). On PostgreSQL the batch
    goes as one array per column through unnest(): one small prepared statement, where
    a multi-row VALUES list would be a new 12,000-placeholder text for every batch size.
    """
    if _dialect(session) == "postgresql":
        arrays = {name: [row[name] for row in rows] for name, _ in _UNNEST_COLUMNS}
        result = await session.execute(_UNNEST_INSERT, arrays)
    else:
        result = await session.execute(
            sqlite_insert(INTERACTIONS)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(INTERACTIONS.c.event_id),
            rows,
        )
    return frozenset(result.scalars().all())


async def store_events(
    session: AsyncSession,
    events: Sequence[ValidEvent],
    *,
    now: datetime | None = None,
    refresh: bool = True,
    tag_rules: TagRules | None = None,
) -> StoredEvents:
    """Store checked events once each, creating first-seen customers.

    Idempotent by event id: an id stored before is skipped, so a redelivered stream
    message has no second effect. With ``refresh`` the behavioural metrics of customers
    with new interactions are recomputed, and with ``tag_rules`` their rule tags too.
    """
    unique: dict[str, ValidEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    product_ids = await _product_ids(session, {e.sku for e in unique.values() if e.sku})
    dropped = frozenset(
        event.event_id
        for event in unique.values()
        if event.sku is not None and event.sku not in product_ids
    )
    storable = [event for event in unique.values() if event.event_id not in dropped]
    if not storable:
        return StoredEvents(frozenset(), frozenset(), dropped, frozenset(), 0)
    first_seen: dict[str, datetime] = {}
    for event in storable:
        earliest = first_seen.get(event.customer_key)
        if earliest is None or event.occurred_at < earliest:
            first_seen[event.customer_key] = event.occurred_at
    customer_ids = await _ensure_customers(session, first_seen)
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
    inserted = await _insert_interactions(session, rows)
    changed_keys = frozenset(e.customer_key for e in storable if e.event_id in inserted)
    changed = {customer_ids[key] for key in changed_keys}
    refreshed = 0
    if changed and refresh:
        refreshed = await refresh_profiles(session, changed, now=now)
    if changed and tag_rules is not None:
        await apply_tag_rules(
            session, tag_rules, changed, now=now, check_catalogue=False, count_qualifying=False
        )
    return StoredEvents(
        inserted=inserted,
        already_stored=frozenset(e.event_id for e in storable) - inserted,
        dropped=dropped,
        changed_keys=changed_keys,
        refreshed_customers=refreshed,
        customer_ids=frozenset(customer_ids.values()),
    )


async def ingest_events(
    session: AsyncSession,
    events: Sequence[Any],
    *,
    secret_key: str,
    now: datetime | None = None,
    refresh: bool = True,
    tag_rules: TagRules | None = None,
) -> IngestResult:
    """Validate and store a batch of raw events (JSON objects) in one go.

    Invalid events and events naming an unknown sku are rejected with a reason; the
    others are stored once each: an event id already stored, or repeated within the
    batch, is reported as a duplicate. Customers seen for the first time are created.

    Args:
        session: An open session inside the caller's transaction.
        events: The raw events, as decoded from JSON.
        secret_key: The HMAC key that turns external customer ids into customer keys.
        now: The time that "in the future" is measured from (default: now).
        refresh: Recompute the behavioural metrics of the customers with new events.
        tag_rules: Re-apply these tag rules to the customers with new events.

    Returns:
        Accepted and duplicate event ids, and the rejections, each in batch order.
    """
    checked = await check_events(session, events, secret_key=secret_key, now=now)
    stored = await store_events(
        session, checked.storable, now=now, refresh=refresh, tag_rules=tag_rules
    )
    accepted = [e.event_id for e in checked.storable if e.event_id in stored.inserted]
    duplicates = [*checked.duplicates]
    duplicates.extend(e.event_id for e in checked.storable if e.event_id in stored.already_stored)
    return IngestResult(
        accepted,
        duplicates,
        list(checked.rejected),
        stored.refreshed_customers,
        stored.changed_keys,
    )


async def refresh_profiles(
    session: AsyncSession, customer_ids: Iterable[int], now: datetime | None = None
) -> int:
    """Recompute the behavioural metrics of some customers from their interactions.

    The same metrics as ``rebuild_profile_metrics`` (a test holds them equal), for a
    subset: the aggregates run over these customers' rows only, through the
    (customer_id, occurred_at) index. Returns the number of profiles written.
    """
    now = now or utc_now()
    wanted = sorted(set(customer_ids))
    written = 0
    for chunk in _chunks(wanted, LOOKUP_CHUNK):
        written += await _refresh_chunk(session, list(chunk), now)
    return written


async def _refresh_chunk(session: AsyncSession, customer_ids: list[int], now: datetime) -> int:
    # Concurrent batches for the same customer serialise here (PostgreSQL; SQLite has one
    # writer anyway): the second waits for the first to commit, then its aggregates see
    # both batches' events, so the last profile written is complete. Locks are taken in
    # id order, and FOR NO KEY UPDATE does not conflict with the KEY SHARE locks that the
    # interactions' foreign keys already hold (FOR UPDATE would deadlock on them).
    await session.execute(
        select(Customer.id)
        .where(member_of(Customer.id, customer_ids, _dialect(session)))
        .order_by(Customer.id)
        .with_for_update(key_share=True)
    )
    return await write_profile_metrics(session, now, customer_ids)
