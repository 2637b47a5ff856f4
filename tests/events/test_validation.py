"""Validation of single events and batches: each field, and no personal data in reasons."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from rasa_personalize.events.validation import (
    EventRejectedError,
    ValidEvent,
    validate_batch,
    validate_event,
)
from rasa_personalize.identity import customer_key
from tests.conftest import TEST_SECRET

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
PRIVATE = "jane.doe@example.com"


def event(**changes: Any) -> dict[str, Any]:
    """A valid view event, with ``changes`` applied (None removes a field)."""
    base: dict[str, Any] = {
        "event_id": "e-1",
        "customer": PRIVATE,
        "product": "SKU-1",
        "kind": "view",
        "timestamp": "2026-06-01T11:00:00Z",
        "channel": "web",
        "device": "mobile",
        "location": "Berlin",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def check(raw: Any) -> ValidEvent:
    return validate_event(raw, secret_key=TEST_SECRET, now=NOW)


def test_a_valid_event_is_pseudonymised() -> None:
    """The result carries the customer key, never the external id."""
    valid = check(event())
    assert valid.customer_key == customer_key(TEST_SECRET, PRIVATE)
    assert PRIVATE not in repr(valid)
    assert valid.occurred_at == datetime(2026, 6, 1, 11, 0, tzinfo=timezone.utc)
    assert (valid.sku, valid.kind, valid.quantity, valid.value) == ("SKU-1", "view", 1, None)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # epoch seconds are read as UTC
        ({"timestamp": 1_780_000_000}, datetime.fromtimestamp(1_780_000_000, timezone.utc)),
        # fractional epoch seconds too
        ({"timestamp": 1_780_000_000.5}, datetime.fromtimestamp(1_780_000_000.5, timezone.utc)),
        # an offset is converted to UTC
        ({"timestamp": "2026-06-01T13:00:00+02:00"}, datetime(2026, 6, 1, 11, tzinfo=timezone.utc)),
    ],
)
def test_timestamps(changes: dict[str, Any], expected: datetime) -> None:
    """ISO 8601 with a zone and epoch seconds both become aware UTC times."""
    assert check(event(**changes)).occurred_at == expected


@pytest.mark.parametrize(
    ("changes", "field", "reason_part"),
    [
        # not an object at all
        ("not-an-object", "event", "JSON object"),
        # no event id
        ({"event_id": None}, "event_id", "required"),
        # empty event id
        ({"event_id": "  "}, "event_id", "empty"),
        # event id longer than the column
        ({"event_id": "x" * 129}, "event_id", "128"),
        # no customer
        ({"customer": None}, "customer", "required"),
        # customer of the wrong type
        ({"customer": ["a"]}, "customer", "string"),
        # customer id too long to be an id
        ({"customer": "c" * 257}, "customer", "256"),
        # unknown kind, which is named back (not personal)
        ({"kind": "hover"}, "kind", "'hover'"),
        # a product kind without a product
        ({"product": None}, "product", "required"),
        # sku longer than the column
        ({"product": "S" * 65}, "product", "64"),
        # no timestamp
        ({"timestamp": None}, "timestamp", "required"),
        # a naive time is ambiguous
        ({"timestamp": "2026-06-01T11:00:00"}, "timestamp", "time zone"),
        # not a time
        ({"timestamp": "yesterday"}, "timestamp", "ISO 8601"),
        # epoch milliseconds sent as seconds: far in the future
        ({"timestamp": 1_780_000_000_000}, "timestamp", "out of range"),
        # a year ahead
        ({"timestamp": "2027-06-01T00:00:00Z"}, "timestamp", "future"),
        # before 2000: a zero or a unit mistake
        ({"timestamp": 0}, "timestamp", "before 2000"),
        # a boolean is not a time
        ({"timestamp": True}, "timestamp", "epoch seconds"),
        # channel too long
        ({"channel": "c" * 33}, "channel", "32"),
        # device of the wrong type
        ({"device": 3.5}, "device", "string"),
        # location too long
        ({"location": "l" * 129}, "location", "128"),
        # value not a number
        ({"value": "5"}, "value", "number"),
        # value infinite (JSON cannot say it, Python callers can)
        ({"value": float("inf")}, "value", "finite"),
        # feedback must be 1 or -1
        ({"kind": "feedback", "value": 0.5}, "value", "feedback"),
        # feedback without a value
        ({"kind": "feedback"}, "value", "missing"),
        # rating out of range
        ({"kind": "rating", "value": 6}, "value", "between 1 and 5"),
        # a session that lasted less than nothing
        ({"kind": "session_end", "product": None, "value": -1.0}, "value", "not negative"),
        # negative quantity
        ({"quantity": -1}, "quantity", "between 0"),
        # fractional quantity
        ({"quantity": 1.5}, "quantity", "whole number"),
        # negative price
        ({"price": -0.01}, "price", "negative"),
        # a price the column cannot hold (and that would sum to infinity)
        ({"price": 1e10}, "price", "more than"),
        # an unknown field is named but not quoted
        ({"email": PRIVATE}, "email", "not a known event field"),
    ],
)
def test_each_field_is_checked(changes: Any, field: str, reason_part: str) -> None:
    """Each bad field is rejected by name, with a reason that says what is wrong."""
    raw = event(**changes) if isinstance(changes, dict) else changes
    with pytest.raises(EventRejectedError) as caught:
        check(raw)
    assert caught.value.field == field
    assert reason_part in caught.value.reason
    assert PRIVATE not in str(caught.value)


@pytest.mark.parametrize(
    "changes",
    [
        # search needs no product
        {"kind": "search", "product": None},
        # feedback of -1
        {"kind": "feedback", "value": -1},
        # rating at both ends
        {"kind": "rating", "value": 1},
        {"kind": "rating", "value": 5.0},
        # a session's length, and a session without one
        {"kind": "session_end", "product": None, "value": 0},
        {"kind": "session_end", "product": None},
        # numeric customer ids are accepted as text
        {"customer": 12345},
        # quantity 0 and a zero price (a free sample)
        {"kind": "purchase", "quantity": 0, "price": 0},
        # context fields may be absent
        {"channel": None, "device": None, "location": None},
        # a few minutes ahead is clock skew, not an error
        {"timestamp": "2026-06-01T12:05:00Z"},
    ],
)
def test_edge_values_are_accepted(changes: dict[str, Any]) -> None:
    """Values at the limits of each rule pass."""
    assert check(event(**changes)).event_id == "e-1"


def test_customer_value_is_never_quoted() -> None:
    """A bad customer value is not repeated in the reason, whatever it is."""
    with pytest.raises(EventRejectedError) as caught:
        check(event(customer=PRIVATE * 20))
    assert caught.value.field == "customer"
    assert PRIVATE not in caught.value.reason


def test_batch_rejects_bad_events_and_keeps_good_ones() -> None:
    """Each event is judged alone; rejections carry the index and event id."""
    raws = [
        event(event_id="ok-1"),
        event(event_id="bad-1", kind="hover"),
        7,
        event(event_id="ok-2"),
    ]
    batch = validate_batch(raws, secret_key=TEST_SECRET, now=NOW)
    assert [(i, e.event_id) for i, e in batch.valid] == [(0, "ok-1"), (3, "ok-2")]
    assert [(r.index, r.event_id, r.field) for r in batch.rejected] == [
        (1, "bad-1", "kind"),
        (2, None, "event"),
    ]
