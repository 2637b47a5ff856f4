"""Stream messages: one checked event each, pseudonymous, read back exactly."""

from __future__ import annotations

from datetime import timedelta

import fakeredis
import pytest

from actions.cache.breaker import RedisBreaker
from actions.events.stream import (
    FIELD,
    EventStream,
    MalformedMessageError,
    decode_event,
    encode_event,
)
from actions.events.validation import validate_event
from tests.conftest import TEST_SECRET
from tests.factories import NOW

RAW = {
    "event_id": "e-1",
    "customer": "jane.doe@example.com",
    "product": "SKU-1",
    "kind": "purchase",
    "timestamp": (NOW - timedelta(hours=1)).isoformat(),
    "channel": "web",
    "device": "mobile",
    "location": "Porto",
    "value": 2.5,
    "quantity": 2,
    "price": 19.99,
}


def test_an_event_round_trips_through_a_message() -> None:
    event = validate_event(RAW, secret_key=TEST_SECRET, now=NOW)
    assert decode_event({FIELD.encode(): encode_event(event).encode()}) == event


def test_a_message_never_holds_the_raw_customer_id() -> None:
    event = validate_event(RAW, secret_key=TEST_SECRET, now=NOW)
    assert "jane.doe" not in encode_event(event)


@pytest.mark.parametrize(
    "payload",
    ["not json", '{"v": 99}', '{"v": 1, "event_id": "x"}', "[]", ""],
)
def test_foreign_messages_are_malformed(payload: str) -> None:
    with pytest.raises(MalformedMessageError):
        decode_event({FIELD: payload})


async def test_a_batch_is_appended_whole() -> None:
    client = fakeredis.FakeAsyncRedis()
    stream = EventStream(client, "events", breaker=RedisBreaker("test", timeout_s=1.0))
    events = [
        validate_event(RAW | {"event_id": f"e-{n}"}, secret_key=TEST_SECRET, now=NOW)
        for n in range(3)
    ]
    await stream.publish(events)
    entries = await client.xrange("events")
    assert [decode_event(fields).event_id for _, fields in entries] == ["e-0", "e-1", "e-2"]
    await client.aclose()
