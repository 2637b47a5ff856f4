"""Stream messages: one checked event each, pseudonymous, read back exactly."""

from __future__ import annotations

from datetime import timedelta

import fakeredis
import pytest

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.events.stream import (
    EVENTS_PER_MESSAGE,
    FIELD,
    EventStream,
    MalformedMessageError,
    decode_events,
    encode_events,
)
from rasa_personalize.events.validation import validate_event
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


def test_events_round_trip_through_a_message() -> None:
    events = [
        validate_event(RAW, secret_key=TEST_SECRET, now=NOW),
        validate_event(
            RAW | {"event_id": "e-2", "kind": "category_asked", "product": None,
                   "category": "Running", "value": None, "price": None},
            secret_key=TEST_SECRET,
            now=NOW,
        ),
    ]  # fmt: skip
    assert decode_events({FIELD.encode(): encode_events(events).encode()}) == events


def test_a_message_never_holds_the_raw_customer_id() -> None:
    event = validate_event(RAW, secret_key=TEST_SECRET, now=NOW)
    assert "jane.doe" not in encode_events([event])


@pytest.mark.parametrize(
    "payload",
    ["not json", '{"v": 99}', '{"v": 2, "events": [{"event_id": "x"}]}', "[]", ""],
)
def test_foreign_messages_are_malformed(payload: str) -> None:
    with pytest.raises(MalformedMessageError):
        decode_events({FIELD: payload})


async def test_a_batch_is_appended_whole_in_messages_of_at_most_100_events() -> None:
    client = fakeredis.FakeAsyncRedis()
    stream = EventStream(client, "events", breaker=RedisBreaker("test", timeout_s=1.0))
    events = [
        validate_event(RAW | {"event_id": f"e-{n}"}, secret_key=TEST_SECRET, now=NOW)
        for n in range(250)
    ]
    await stream.publish(events)
    entries = await client.xrange("events")
    per_message = [decode_events(fields) for _, fields in entries]
    assert [len(m) for m in per_message] == [EVENTS_PER_MESSAGE, EVENTS_PER_MESSAGE, 50]
    assert [e.event_id for m in per_message for e in m] == [f"e-{n}" for n in range(250)]
    await client.aclose()
