"""Erasure in the event stream: a customer's queued events and dead letters removed.

A stream message holds the events of several customers, and a stream entry cannot be
edited: a message naming the customer is replaced, in one MULTI, by a copy without their
events (appended at the end of the stream, or of the dead letters with the same fields)
and the original is deleted and acknowledged. Messages are scanned in pages, and only
those whose raw payload contains one of the keys are decoded.

A worker may hold such a message in memory at that moment and store it anyway: ingestion
drops events of a customer with an erasure tombstone dated at or after the event, and
re-storing the copy's other events is a no-op (storing is idempotent by event id).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final

from rasa_personalize.events.dead_letters import dead_letter_stream
from rasa_personalize.events.stream import (
    FIELD,
    GROUP,
    MalformedMessageError,
    decode_events,
    encode_events,
)

if TYPE_CHECKING:
    from redis import asyncio as redis_asyncio

# Stream entries read per XRANGE.
PAGE: Final = 1_000


def _payload(fields: Mapping[Any, Any]) -> bytes:
    raw = fields.get(FIELD.encode(), fields.get(FIELD, b""))
    return raw if isinstance(raw, bytes) else str(raw).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _without(payload: bytes, keys: Collection[str]) -> tuple[str | None, int]:
    """The payload without these customers' events (None: nothing left), and how many
    events went. A message that cannot be decoded but names a key goes whole."""
    try:
        events = decode_events({FIELD: payload})
    except MalformedMessageError:
        return None, 1
    kept = [event for event in events if event.customer_key not in keys]
    removed = len(events) - len(kept)
    return (encode_events(kept) if kept else None), removed


async def _scrub(
    client: redis_asyncio.Redis, stream: str, keys: Collection[str], *, acknowledge: bool
) -> int:
    needles = [key.encode() for key in keys]
    removed = 0
    start = "-"
    while True:
        entries: Any = await client.xrange(stream, min=start, max="+", count=PAGE)
        if not entries:
            return removed
        for entry_id, fields in entries:
            payload = _payload(fields)
            if not any(needle in payload for needle in needles):
                continue
            kept, gone = _without(payload, keys)
            if gone == 0:
                continue  # the key appeared in another field's text, not as a customer
            message_id = _text(entry_id)
            async with client.pipeline(transaction=True) as pipe:
                if kept is not None:
                    copy: dict[Any, Any] = {_text(name): value for name, value in fields.items()}
                    copy[FIELD] = kept
                    pipe.xadd(stream, copy)
                if acknowledge:
                    pipe.xack(stream, GROUP, message_id)
                pipe.xdel(stream, message_id)
                await pipe.execute()
            removed += gone
        if len(entries) < PAGE:
            return removed
        # Exclusive start after the last entry of the page (copies appended meanwhile
        # are read again, and hold none of the keys any more).
        start = f"({_text(entries[-1][0])}"


async def remove_customer_events(
    client: redis_asyncio.Redis, stream: str, customer_keys: Collection[str]
) -> int:
    """Remove these customers' events from ``stream`` and its dead letters.

    Returns:
        How many events were removed (a message that cannot be decoded and names one of
        the keys counts as one). Redis errors propagate: the caller reports them.
    """
    keys = frozenset(customer_keys)
    if not keys:
        return 0
    removed = await _scrub(client, stream, keys, acknowledge=True)
    removed += await _scrub(client, dead_letter_stream(stream), keys, acknowledge=False)
    return removed
