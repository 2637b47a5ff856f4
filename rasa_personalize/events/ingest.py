"""Interaction events into the store: validation, then one write per batch.

Two steps, so that the Redis path can check a batch when it arrives and store it later:
:func:`check_events` validates and looks up skus (the answer to the sender),
:func:`store_events` writes checked events (directly, or from the stream worker) with
one call into :mod:`rasa_personalize.store.interactions`, which finds or creates the
customers, inserts once per event id and refreshes metrics; rule tags follow in the same
transaction. :func:`ingest_events` does both for a batch stored at once. The session and
its transaction belong to the caller (one ``sessions.begin()`` per batch), so a batch is
stored entirely or not at all.

Valid events of customers who may not be tracked (no ``tracking`` consent, or erased at
or after the event's time: :mod:`rasa_personalize.privacy.tracking`) are *suppressed*:
dropped and reported by event id, with one lookup per batch. Each step checks: the
answer to the sender, and again when storing, since consent may be withdrawn (or the
customer erased) while a batch waits in the stream.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rasa_personalize.events.validation import Rejection, ValidatedBatch, ValidEvent, validate_batch
from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH
from rasa_personalize.privacy.consent import ConsentDefault
from rasa_personalize.privacy.secret_rotation import adopt_previous_keys
from rasa_personalize.privacy.tracking import split_trackable, tracking_gate
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
    # Valid events not stored: no tracking consent, or from before the customer's erasure.
    suppressed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CheckedBatch:
    """A batch after validation and the sku lookup: what may be stored, and what not."""

    storable: tuple[ValidEvent, ...]
    # Repeated within the batch (the first occurrence is storable).
    duplicates: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    # Skus looked up in the catalogue and found there (for the caller's cache).
    found_skus: frozenset[str] = frozenset()
    # Event ids of valid events whose customer may not be tracked (never stored).
    suppressed: tuple[str, ...] = ()


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
    # Event ids not stored because their customer may not be tracked (any more).
    suppressed: frozenset[str] = frozenset()


async def check_events(
    session: Session,
    events: Sequence[Any],
    *,
    secret_key: str,
    now: datetime | None = None,
    known_skus: Collection[str] = frozenset(),
    consent_default: ConsentDefault = "granted",
) -> CheckedBatch:
    """Validate raw events (JSON objects) and reject those naming an unknown sku.

    Valid events of customers who may not be tracked are suppressed first (their skus
    are not looked at). Events repeating an event id of the same batch are duplicates;
    whether an id was stored by an earlier batch is found out when storing. Skus in
    ``known_skus`` (seen in the catalogue a moment ago) are not looked up again: a
    product removed since is caught when storing (:attr:`StoredEvents.dropped`).
    ``consent_default`` is ``PERSONALIZE_CONSENT_DEFAULT``.
    """
    batch, suppressed = await _suppress(
        session, validate_batch(events, secret_key=secret_key, now=now), consent_default
    )
    named = {e.sku for _, e in batch.valid if e.sku}
    wanted = {sku for sku in named if sku not in known_skus}
    found = await find_skus(session, wanted)
    unknown = wanted - found
    return _split(batch, unknown, found_skus=found, suppressed=suppressed)


async def _suppress(
    session: Session, batch: ValidatedBatch, consent_default: ConsentDefault
) -> tuple[ValidatedBatch, tuple[str, ...]]:
    """The batch without the valid events that may not be stored, and their event ids."""
    if not batch.valid:
        return batch, ()
    gate = await tracking_gate(session, {e.customer_key for _, e in batch.valid}, consent_default)
    valid: list[tuple[int, ValidEvent]] = []
    suppressed: list[str] = []
    for index, event in batch.valid:
        if gate.allows(event.customer_key, event.occurred_at):
            valid.append((index, event))
        else:
            suppressed.append(event.event_id)
    if not suppressed:
        return batch, ()
    return ValidatedBatch(tuple(valid), batch.rejected), tuple(suppressed)


def _split(
    batch: ValidatedBatch,
    unknown_skus: Collection[str],
    found_skus: frozenset[str] = frozenset(),
    suppressed: tuple[str, ...] = (),
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
                # Not quoted: the index and event id say which, and a value in the wrong
                # field may be personal data.
                Rejection(index, event.event_id, "product", "unknown sku")
            )
            continue
        if event.event_id in seen_ids:
            duplicates.append(event.event_id)
            continue
        seen_ids.add(event.event_id)
        storable.append(event)
    rejected.sort(key=lambda rejection: rejection.index)
    return CheckedBatch(tuple(storable), tuple(duplicates), tuple(rejected), found_skus, suppressed)


async def store_events(
    session: Session,
    events: Sequence[ValidEvent],
    *,
    now: datetime | None = None,
    refresh: bool = True,
    tag_rules: TagRules | None = None,
    consent_default: ConsentDefault = "granted",
) -> StoredEvents:
    """Store checked events once each, creating first-seen customers.

    Idempotent by event id: an id stored before is skipped, so a redelivered stream
    message has no second effect. With ``refresh`` the behavioural metrics of customers
    with new interactions are recomputed, and with ``tag_rules`` their rule tags too.
    Events whose customer may not be tracked now (consent withdrawn or an erasure since
    they were checked) are suppressed, in the same transaction as the write.
    """
    kept, suppressed = await split_trackable(session, events, consent_default)
    events = kept
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
        suppressed=frozenset(event.event_id for event in suppressed),
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
    consent_default: ConsentDefault = "granted",
    previous_secret_keys: Sequence[str] = (),
) -> IngestResult:
    """Validate and store a batch of raw events (JSON objects) in one go.

    Invalid events are rejected with a reason; valid events of customers who may not be
    tracked are suppressed; of the others, those naming an unknown sku are rejected and
    the rest stored once each: an event id already stored, or repeated within the
    batch, is reported as a duplicate. Customers seen for the first time are created.

    Args:
        session: An open session inside the caller's transaction.
        events: The raw events, as decoded from JSON.
        secret_key: The HMAC key that turns external customer ids into customer keys.
        now: The time that "in the future" is measured from (default: now).
        refresh: Recompute the behavioural metrics of the customers with new events.
        tag_rules: Re-apply these tag rules to the customers with new events.
        consent_default: ``PERSONALIZE_CONSENT_DEFAULT``, for customers who never
            answered for tracking.
        previous_secret_keys: ``PERSONALIZE_PREVIOUS_SECRET_KEYS``: customers of the
            batch still stored under a former secret's key move to their current key
            first (:func:`adopt_event_customers`).

    Returns:
        Accepted, duplicate and suppressed event ids, and the rejections, each in batch
        order.
    """
    # Before anything reads by key: consent and tombstones move with the customer.
    await adopt_event_customers(
        session, events, secret_key=secret_key, previous_secret_keys=previous_secret_keys
    )
    batch, suppressed = await _suppress(
        session, validate_batch(events, secret_key=secret_key, now=now), consent_default
    )
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
        list(suppressed),
    )


def _external_ids(events: Sequence[Any]) -> set[str]:
    """The customer ids of raw events that could be valid (validation decides the rest)."""
    found: set[str] = set()
    for event in events:
        customer = event.get("customer") if isinstance(event, Mapping) else None
        if isinstance(customer, int) and not isinstance(customer, bool):
            customer = str(customer)
        if isinstance(customer, str) and 0 < len(customer.strip()) <= MAX_EXTERNAL_ID_LENGTH:
            found.add(customer.strip())
    return found


async def adopt_event_customers(
    session: Session,
    events: Sequence[Any],
    *,
    secret_key: str,
    previous_secret_keys: Sequence[str],
) -> int:
    """Move the customers of raw events that are still stored under a former secret's
    key (``PERSONALIZE_PREVIOUS_SECRET_KEYS``) to their key under ``secret_key``.

    :func:`ingest_events` does it in the batch's transaction. A caller that checks a
    batch now and stores it later (the Redis Stream) calls it in a transaction of its
    own before :func:`check_events`, so that consent is read, and events are stored,
    under the customer's current key. One lookup per batch for the keys not found; none
    without former secrets.

    Returns:
        How many customers moved.
    """
    if not previous_secret_keys:
        return 0
    return await adopt_previous_keys(
        session,
        sorted(_external_ids(events)),
        secret_key=secret_key,
        previous_secret_keys=previous_secret_keys,
    )
