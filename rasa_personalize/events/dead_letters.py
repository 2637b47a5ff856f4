"""Dead letters of the event stream: messages the store refused too many times.

A message the store keeps refusing (a value the database rejects, say) would otherwise be
re-read by its worker forever and hold back everything after it. After
``PERSONALIZE_STREAM_MAX_DELIVERIES`` failures the worker moves it to ``<stream>:dead``:
the original payload is kept as is, beside when it died, how often it was delivered and
the class of the error (never the error's text, which may quote customer data). Moving
it is one MULTI (XADD to the dead letters, XACK and XDEL on the stream), so a message is
always in exactly one of the two.

``personalize worker dead-letters list|retry|drop`` reads and empties the dead letters;
a retried message goes back to the end of the event stream under a new id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from rasa_personalize.events.stream import FIELD, GROUP

if TYPE_CHECKING:
    from redis import asyncio as redis_asyncio

DEAD_SUFFIX: Final = ":dead"
FAILURES_SUFFIX: Final = ":failures"
# Dead letters moved back or dropped per MULTI with --all.
CHUNK: Final = 500


def dead_letter_stream(stream: str) -> str:
    """The dead-letter stream of the event stream ``stream``."""
    return f"{stream}{DEAD_SUFFIX}"


def failure_counts_key(stream: str) -> str:
    """The hash counting store failures per pending message of ``stream``."""
    return f"{stream}{FAILURES_SUFFIX}"


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter, described without the events' contents."""

    id: str
    source_id: str
    dead_at: datetime
    deliveries: int
    failures: int
    reason: str
    events: int

    def as_dict(self) -> dict[str, object]:
        """The fields as JSON-ready values."""
        return {
            "id": self.id,
            "source_id": self.source_id,
            "dead_at": self.dead_at.isoformat(),
            "deliveries": self.deliveries,
            "failures": self.failures,
            "reason": self.reason,
            "events": self.events,
        }


async def bury(
    client: redis_asyncio.Redis,
    stream: str,
    message_id: str,
    fields: Mapping[Any, Any],
    *,
    deliveries: int,
    failures: int,
    reason: str,
) -> None:
    """Move one pending message of ``stream`` to its dead letters, in one MULTI."""
    payload = fields.get(FIELD.encode(), fields.get(FIELD, b""))
    async with client.pipeline(transaction=True) as pipe:
        pipe.xadd(
            dead_letter_stream(stream),
            {
                FIELD: payload,
                "source_id": message_id,
                "dead_at": datetime.now(timezone.utc).isoformat(),
                "deliveries": str(deliveries),
                "failures": str(failures),
                "reason": reason,
            },
        )
        pipe.xack(stream, GROUP, message_id)
        pipe.xdel(stream, message_id)
        pipe.hdel(failure_counts_key(stream), message_id)
        await pipe.execute()


async def count_dead_letters(client: redis_asyncio.Redis, stream: str) -> int:
    """How many dead letters ``stream`` has."""
    return int(await client.xlen(dead_letter_stream(stream)))


async def list_dead_letters(
    client: redis_asyncio.Redis, stream: str, *, limit: int | None = None
) -> list[DeadLetter]:
    """The oldest dead letters first, at most ``limit`` of them."""
    entries: Any = await client.xrange(dead_letter_stream(stream), count=limit)
    return [_describe(_text(entry_id), fields) for entry_id, fields in entries]


async def retry_dead_letters(
    client: redis_asyncio.Redis, stream: str, ids: Sequence[str] | None
) -> list[str]:
    """Move dead letters back to the end of ``stream`` (``ids`` None: all of them).

    Returns:
        The ids moved; ids that are not dead letters are left out.
    """
    return await _take(client, stream, ids, requeue=True)


async def drop_dead_letters(
    client: redis_asyncio.Redis, stream: str, ids: Sequence[str] | None
) -> list[str]:
    """Delete dead letters for good (``ids`` None: all of them); returns the ids deleted."""
    return await _take(client, stream, ids, requeue=False)


async def _take(
    client: redis_asyncio.Redis, stream: str, ids: Sequence[str] | None, *, requeue: bool
) -> list[str]:
    dead = dead_letter_stream(stream)
    taken: list[str] = []
    while True:
        entries = await _entries(client, dead, ids)
        if not entries:
            return taken
        async with client.pipeline(transaction=True) as pipe:
            for entry_id, fields in entries:
                if requeue:
                    pipe.xadd(stream, {FIELD: fields.get(FIELD.encode(), b"")})
                pipe.xdel(dead, entry_id)
            await pipe.execute()
        taken.extend(entry_id for entry_id, _ in entries)
        if ids is not None:
            return taken


async def _entries(
    client: redis_asyncio.Redis, dead: str, ids: Sequence[str] | None
) -> list[tuple[str, dict[Any, Any]]]:
    if ids is None:
        response: Any = await client.xrange(dead, count=CHUNK)
        return [(_text(entry_id), fields) for entry_id, fields in response]
    found: list[tuple[str, dict[Any, Any]]] = []
    for entry_id in dict.fromkeys(ids):
        response = await client.xrange(dead, min=entry_id, max=entry_id, count=1)
        found.extend((_text(found_id), fields) for found_id, fields in response)
    return found


def _describe(entry_id: str, fields: Mapping[Any, Any]) -> DeadLetter:
    def field(name: str) -> str:
        return _text(fields.get(name.encode(), fields.get(name, b"")))

    try:
        events = len(json.loads(field(FIELD))["events"])
    except (ValueError, KeyError, TypeError):
        events = 0  # a message that never held events: still listed, to be dropped
    try:
        dead_at = datetime.fromisoformat(field("dead_at"))
    except ValueError:
        dead_at = datetime.fromtimestamp(
            int(entry_id.split("-", maxsplit=1)[0]) / 1000, timezone.utc
        )
    return DeadLetter(
        id=entry_id,
        source_id=field("source_id"),
        dead_at=dead_at,
        deliveries=_int(field("deliveries")),
        failures=_int(field("failures")),
        reason=field("reason") or "unknown",
        events=events,
    )


def _int(value: str) -> int:
    return int(value) if value.isdigit() else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
