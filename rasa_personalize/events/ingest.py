"""Interaction events into the store: validation, then one write per batch.

Two steps, so that the Redis path can check a batch when it arrives and store it later:
:func:`check_events` validates and looks up skus (the answer to the sender),
:func:`store_events` writes checked events (directly, or from the stream worker) with
one call into :mod:`rasa_personalize.store.interactions`, which finds or creates the
customers, inserts once per event id and refreshes metrics; rule tags follow in the same
transaction. :func:`ingest_events` does both for a batch stored at once. The session and
its transaction belong to the caller (one ``sessions.begin()`` per batch), so a batch is
stored entirely or not at all.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rasa_personalize.events.validation import Rejection, ValidatedBatch, ValidEvent, validate_batch
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.segments.tags import apply_tag_rules
from rasa_personalize.store.interactions import WrittenInteractions, find_skus, write_interactions
from rasa_personalize.store.types import Session


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
    # Event ids naming skus removed from the catalogue between checking and storing.
    dropped: frozenset[str]
    changed_keys: frozenset[str]
    refreshed_customers: int
    # Store ids of every customer of the stored and already-stored events: a redelivered
    # batch changes no rows, but its customers' metrics may still be waiting for refresh.
    customer_ids: frozenset[int] = frozenset()


async def check_events(
    session: Session,
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
    named = {e.sku for _, e in batch.valid if e.sku}
    wanted = {sku for sku in named if sku not in known_skus}
    found = await find_skus(session, wanted)
    unknown = wanted - found
    return _split(batch, unknown, found_skus=found)


def _split(
    batch: ValidatedBatch, unknown_skus: Collection[str], found_skus: frozenset[str] = frozenset()
) -> CheckedBatch:
    """Reject the events naming an unknown sku; of the others, the first of each id is
    storable and the repeats are duplicates."""
    rejected = list(batch.rejected)
    storable: list[ValidEvent] = []
    duplicates: list[str] = []
    seen_ids: set[str] = set()
    for index, event in batch.valid:
        if event.sku is not None and event.sku in unknown_skus:
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
    return CheckedBatch(tuple(storable), tuple(duplicates), tuple(rejected), found_skus)


async def store_events(
    session: Session,
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
    written = await _write(session, events, now=now, refresh=refresh, tag_rules=tag_rules)
    return StoredEvents(
        inserted=written.inserted,
        already_stored=written.already_stored,
        dropped=frozenset(
            event.event_id
            for event in events
            if event.sku is not None and event.sku in written.unknown_skus
        ),
        changed_keys=written.changed_keys,
        refreshed_customers=written.refreshed_profiles,
        customer_ids=written.customer_ids,
    )


async def _write(
    session: Session,
    events: Sequence[ValidEvent],
    *,
    now: datetime | None,
    refresh: bool,
    tag_rules: TagRules | None,
) -> WrittenInteractions:
    """The batch's rows in one store call, then the rule tags of its changed customers."""
    written = await write_interactions(session, events, refresh_metrics=refresh, now=now)
    if written.changed_customer_ids and tag_rules is not None:
        # After the metrics: rules read them, and the customers' rows are held already.
        await apply_tag_rules(
            session,
            tag_rules,
            written.changed_customer_ids,
            now=now,
            check_catalogue=False,
            count_qualifying=False,
        )
    return written


async def ingest_events(
    session: Session,
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
    batch = validate_batch(events, secret_key=secret_key, now=now)
    # One store call for the whole write: it looks the skus up itself and skips the
    # events naming unknown ones, which are then rejected here exactly as check_events
    # would have (the same transaction sees the same catalogue).
    written = await _write(
        session, [event for _, event in batch.valid], now=now, refresh=refresh, tag_rules=tag_rules
    )
    checked = _split(batch, written.unknown_skus)
    accepted = [e.event_id for e in checked.storable if e.event_id in written.inserted]
    duplicates = [*checked.duplicates]
    duplicates.extend(e.event_id for e in checked.storable if e.event_id in written.already_stored)
    return IngestResult(
        accepted,
        duplicates,
        list(checked.rejected),
        written.refreshed_profiles,
        written.changed_keys,
    )
