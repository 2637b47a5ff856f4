"""Erasure in the event stream: a customer's queued events and dead letters go, others'
stay (real Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest
from redis import asyncio as redis_asyncio

from rasa_personalize.events.dead_letters import bury, dead_letter_stream, list_dead_letters
from rasa_personalize.events.scrub import remove_customer_events
from rasa_personalize.events.stream import FIELD, GROUP, decode_events, encode_events, ensure_group
from rasa_personalize.events.validation import ValidEvent

pytestmark = pytest.mark.redis

WHEN = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
ADA, BOB = "a" * 64, "b" * 64


def event(event_id: str, key: str) -> ValidEvent:
    return ValidEvent(event_id, key, "SKU-1", "view", WHEN, "web", None, None, None, 1, None)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[redis_asyncio.Redis, str]]:
    """A client and a stream of this test's own, deleted afterwards."""
    client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
    stream = f"test:scrub:{uuid.uuid4().hex}"
    yield client, stream
    await client.delete(stream, dead_letter_stream(stream))
    await client.aclose()


async def queued(client: redis_asyncio.Redis, stream: str) -> list[list[tuple[str, str]]]:
    """(event id, customer key) of every message, in stream order."""
    entries = await client.xrange(stream)
    return [[(e.event_id, e.customer_key) for e in decode_events(f)] for _, f in entries]


async def test_only_the_customers_events_leave_the_stream(
    redis: tuple[redis_asyncio.Redis, str],
) -> None:
    """A mixed message keeps the others' events, a message of the customer alone goes,
    and a message that does not name them is not touched."""
    client, stream = redis
    untouched = await client.xadd(stream, {FIELD: encode_events([event("b1", BOB)])})
    await client.xadd(stream, {FIELD: encode_events([event("a1", ADA), event("b2", BOB)])})
    await client.xadd(stream, {FIELD: encode_events([event("a2", ADA), event("a3", ADA)])})
    removed = await remove_customer_events(client, stream, [ADA, "c" * 64])
    assert removed == 3
    assert await queued(client, stream) == [[("b1", BOB)], [("b2", BOB)]]
    assert (await client.xrange(stream))[0][0] == untouched
    assert await remove_customer_events(client, stream, [ADA]) == 0


async def test_a_delivered_message_is_acknowledged_when_replaced(
    redis: tuple[redis_asyncio.Redis, str],
) -> None:
    """A message a worker was handed leaves its pending list: the copy is read as new."""
    client, stream = redis
    await ensure_group(client, stream)
    await client.xadd(stream, {FIELD: encode_events([event("a1", ADA), event("b1", BOB)])})
    await client.xreadgroup(GROUP, "w1", {stream: ">"}, count=10)
    assert (await client.xpending(stream, GROUP))["pending"] == 1
    assert await remove_customer_events(client, stream, [ADA]) == 1
    assert (await client.xpending(stream, GROUP))["pending"] == 0
    fresh = await client.xreadgroup(GROUP, "w1", {stream: ">"}, count=10)
    [(_, [(_, fields)])] = fresh
    assert [e.event_id for e in decode_events(fields)] == ["b1"]


async def test_dead_letters_keep_their_fields_without_the_customer(
    redis: tuple[redis_asyncio.Redis, str],
) -> None:
    """A dead letter is replaced by one with the same bookkeeping and the others' events."""
    client, stream = redis
    await ensure_group(client, stream)
    message_id = await client.xadd(
        stream, {FIELD: encode_events([event("a1", ADA), event("b1", BOB)])}
    )
    [(_, [(_, fields)])] = await client.xreadgroup(GROUP, "w1", {stream: ">"}, count=1)
    await bury(
        client, stream, message_id.decode(), fields, deliveries=5, failures=5, reason="DataError"
    )
    await client.xadd(dead_letter_stream(stream), {FIELD: encode_events([event("a2", ADA)])})
    assert await remove_customer_events(client, stream, [ADA]) == 2
    [letter] = await list_dead_letters(client, stream)
    assert (letter.source_id, letter.reason, letter.failures, letter.events) == (
        message_id.decode(),
        "DataError",
        5,
        1,
    )
    [(_, kept)] = await client.xrange(dead_letter_stream(stream))
    assert ADA.encode() not in kept[FIELD.encode()]
    assert json.loads(kept[FIELD.encode()])["events"][0]["event_id"] == "b1"


async def test_an_undecodable_message_naming_the_customer_goes_whole(
    redis: tuple[redis_asyncio.Redis, str],
) -> None:
    """A message that is not ours to decode but holds the key is deleted and counted once."""
    client, stream = redis
    await client.xadd(stream, {FIELD: f'{{"v": 99, "customer_key": "{ADA}"}}'})
    await client.xadd(stream, {FIELD: "not json at all"})
    assert await remove_customer_events(client, stream, [ADA]) == 1
    assert await client.xlen(stream) == 1
