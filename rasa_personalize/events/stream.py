"""Checked events through a Redis Stream: the API appends, ``personalize worker`` stores.

Each message holds up to :data:`EVENTS_PER_MESSAGE` checked events
(:class:`~rasa_personalize.events.validation.ValidEvent`) as one JSON document in the field
``events``: one XADD per API request rather than one per event, which is most of the
cost on both sides. The customer is already pseudonymised, so the stream never holds a
raw customer id. A batch is appended in one MULTI/EXEC, so it enters the stream whole or
not at all; if Redis fails, the caller stores the batch in SQL directly (same end result,
because storing is idempotent by event id).

Durability: a message is safe once XADD returns only if Redis persists its data
(``appendonly yes``). A Redis that keeps nothing on disk loses the messages not yet
stored when it restarts; ``personalize worker`` warns about that at start.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.events.validation import ValidEvent
from rasa_personalize.extras import require_redis

if TYPE_CHECKING:
    from redis import asyncio as redis_asyncio

logger = logging.getLogger(__name__)

GROUP: Final = "personalize-workers"
FIELD: Final = "events"
# Bumped if the message layout changes, so old workers refuse new messages loudly.
MESSAGE_VERSION: Final = 2
EVENTS_PER_MESSAGE: Final = 100


class MalformedMessageError(PersonalizeError):
    """A stream message is not an event this version can read."""


def _event_document(event: ValidEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "customer_key": event.customer_key,
        "sku": event.sku,
        "kind": event.kind,
        "occurred_at": event.occurred_at.isoformat(),
        "channel": event.channel,
        "device": event.device,
        "location": event.location,
        "category": event.category,
        "value": event.value,
        "quantity": event.quantity,
        "price": event.price,
    }


def encode_events(events: Sequence[ValidEvent]) -> str:
    """The payload of one message holding these checked events."""
    document = {"v": MESSAGE_VERSION, "events": [_event_document(e) for e in events]}
    return orjson.dumps(document).decode()


def _event(document: Mapping[str, Any]) -> ValidEvent:
    occurred_at = datetime.fromisoformat(document["occurred_at"])
    if occurred_at.tzinfo is None:
        raise MalformedMessageError("occurred_at has no time zone")
    value = document["value"]
    price = document["price"]
    return ValidEvent(
        event_id=str(document["event_id"]),
        customer_key=str(document["customer_key"]),
        sku=None if document["sku"] is None else str(document["sku"]),
        kind=str(document["kind"]),
        occurred_at=occurred_at,
        channel=document["channel"],
        device=document["device"],
        location=document["location"],
        value=None if value is None else float(value),
        quantity=int(document["quantity"]),
        price=None if price is None else float(price),
        category=document.get("category"),
    )


def decode_events(fields: Mapping[Any, Any]) -> list[ValidEvent]:
    """The events of a message's fields (bytes or str keys).

    Raises:
        MalformedMessageError: the message was not written by :func:`encode_events`.
    """
    raw = fields.get(FIELD.encode(), fields.get(FIELD))
    try:
        document = orjson.loads(raw)
        if document.get("v") != MESSAGE_VERSION:
            raise MalformedMessageError(f"message version {document.get('v')!r} is unknown")
        return [_event(event) for event in document["events"]]
    except MalformedMessageError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise MalformedMessageError(f"not an event message ({type(error).__name__})") from None


async def ensure_group(client: redis_asyncio.Redis, stream: str) -> None:
    """Create the stream and the workers' consumer group if either is missing."""
    from redis.exceptions import ResponseError  # noqa: PLC0415  # loaded with the client

    try:
        # id "0": a group created after events were appended still reads them all.
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


class EventStream:
    """Appends checked events to the stream, through a circuit breaker.

    Args:
        client: A redis.asyncio client (its own pool).
        stream: The stream's key (``settings.event_stream``).
        breaker: Bounds each append; open means "store in SQL instead".
    """

    def __init__(self, client: redis_asyncio.Redis, stream: str, *, breaker: RedisBreaker) -> None:
        self.client = client
        self.stream = stream
        self.breaker = breaker

    @classmethod
    def from_url(
        cls, url: str, stream: str, *, timeout_s: float, retry_after_s: float
    ) -> EventStream:
        """A stream on its own connection pool with short socket timeouts.

        Raises:
            MissingExtraError: the ``redis`` extra is not installed.
        """
        require_redis()
        # Imported only when Redis is configured: it is an extra.
        from redis import asyncio as redis_asyncio  # noqa: PLC0415

        client = redis_asyncio.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        breaker = RedisBreaker("event stream", timeout_s=timeout_s, retry_after_s=retry_after_s)
        return cls(client, stream, breaker=breaker)

    async def publish(self, events: Sequence[ValidEvent]) -> None:
        """Append the events in one transaction.

        Raises:
            RedisUnavailableError: nothing was appended for sure; store them in SQL.
        """
        if not events:
            return

        async def append() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                for start in range(0, len(events), EVENTS_PER_MESSAGE):
                    chunk = events[start : start + EVENTS_PER_MESSAGE]
                    pipe.xadd(self.stream, {FIELD: encode_events(chunk)})
                await pipe.execute()

        await self.breaker.call(append())

    async def depth(self) -> tuple[int, int]:
        """(messages in the stream, messages delivered but not acknowledged)."""
        from redis.exceptions import ResponseError  # noqa: PLC0415  # loaded with the client

        try:
            length = int(await self.client.xlen(self.stream))
            pending = await self.client.xpending(self.stream, GROUP)
        except ResponseError:  # no stream or no group yet
            return 0, 0
        return length, int(pending["pending"])

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
