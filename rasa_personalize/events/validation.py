"""Validation of interaction events from outside, one event at a time.

Hand-written rather than pydantic: every rejection must name the field and say what is
wrong without quoting personal data (pydantic's errors carry the input), and a batch of
1,000 events is validated on the event loop, where a plain function is cheapest.

The customer's external id is hashed here, so a :class:`ValidEvent` never holds it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH, customer_key
from rasa_personalize.store.models import INTERACTION_KINDS
from rasa_personalize.text import has_control_characters

MAX_EVENT_ID_LENGTH: Final = 128
MAX_SKU_LENGTH: Final = 64
MAX_CONTEXT_LENGTH: Final = 32  # channel and device columns
MAX_LOCATION_LENGTH: Final = 128
# Clocks of senders drift; an event further ahead than this is a unit or zone mistake
# (epoch milliseconds sent as seconds land thousands of years ahead).
MAX_CLOCK_SKEW: Final = timedelta(minutes=10)
EARLIEST_TIME: Final = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_QUANTITY: Final = 1_000_000
# The price column is NUMERIC(12, 2): a larger price overflows it on PostgreSQL and MySQL,
# and on SQLite (which keeps any float) a few of them add up to infinity in the features.
MAX_PRICE: Final = 9_999_999_999.99
# Kinds that are about no particular product.
PRODUCTLESS_KINDS: Final = frozenset(
    {"search", "category_asked", "chat_message", "session_start", "session_end"}
)
MAX_CATEGORY_LENGTH: Final = 64
# Fields whose values are never quoted back: they identify or locate a person.
PERSONAL_FIELDS: Final = frozenset({"customer", "location"})
KNOWN_FIELDS: Final = frozenset(
    {
        "event_id",
        "customer",
        "product",
        "kind",
        "timestamp",
        "channel",
        "device",
        "location",
        "category",
        "value",
        "quantity",
        "price",
    }
)


@dataclass(frozen=True)
class ValidEvent:
    """An event that passed validation, with the customer already pseudonymised."""

    event_id: str
    customer_key: str
    sku: str | None
    kind: str
    occurred_at: datetime
    channel: str | None
    device: str | None
    location: str | None
    value: float | None
    quantity: int
    price: float | None
    category: str | None = None


@dataclass(frozen=True)
class Rejection:
    """Why the event at ``index`` of a batch was refused."""

    index: int
    event_id: str | None
    field: str
    reason: str


@dataclass(frozen=True)
class ValidatedBatch:
    """A batch split into valid events (with their positions) and rejections."""

    valid: tuple[tuple[int, ValidEvent], ...]
    rejected: tuple[Rejection, ...]


class EventRejectedError(ValueError):
    """One field of one event is invalid. Internal to this module: batches never raise."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# Text is quoted back only when it is a plain word (a kind such as 'hover'): anything else
# may be personal data typed into the wrong field (consent's errors follow the same rule).
_QUOTABLE: Final = re.compile(r"[A-Za-z_]{1,32}")


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if _QUOTABLE.fullmatch(value) else "the text"
    if value is None or isinstance(value, bool | int | float):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    # A list or object holds text of its own.
    return f"a {type(value).__name__}"


def _text(event: Mapping[str, Any], field: str, max_length: int, *, required: bool) -> str | None:
    value = event.get(field)
    if value is None:
        if required:
            raise EventRejectedError(field, "is required")
        return None
    # Numeric ids are common in shop systems; accept them as their decimal text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise EventRejectedError(field, f"must be a string, not {type(value).__name__}")
    value = value.strip()
    # Ids and labels are never free text: a NUL would be refused by PostgreSQL (and take
    # the batch with it), a line break would forge lines in logs and exports.
    if has_control_characters(value):
        raise EventRejectedError(field, "contains a control character")
    if not value:
        if required:
            raise EventRejectedError(field, "must not be empty")
        return None
    if len(value) > max_length:
        raise EventRejectedError(field, f"is longer than {max_length} characters")
    return value


def _number(event: Mapping[str, Any], field: str) -> float | None:
    value = event.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventRejectedError(field, f"must be a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise EventRejectedError(field, "must be a finite number")
    return number


def _timestamp(value: Any, now: datetime) -> datetime:
    if value is None:
        raise EventRejectedError("timestamp", "is required")
    if isinstance(value, bool):
        raise EventRejectedError("timestamp", "must be ISO 8601 text or epoch seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise EventRejectedError("timestamp", "must be a finite number of epoch seconds")
        try:
            moment = datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise EventRejectedError(
                "timestamp", f"{_shown(value)} is out of range for epoch seconds"
            ) from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            # Python 3.10's fromisoformat does not read a trailing Z.
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise EventRejectedError(
                "timestamp", f"{_shown(value)} is not ISO 8601 text such as 2026-06-01T12:00:00Z"
            ) from None
        if moment.tzinfo is None:
            raise EventRejectedError(
                "timestamp", f"{_shown(value)} has no time zone (add Z or +00:00)"
            )
        moment = moment.astimezone(timezone.utc)
    else:
        raise EventRejectedError(
            "timestamp", f"must be ISO 8601 text or epoch seconds, not {type(value).__name__}"
        )
    if moment > now + MAX_CLOCK_SKEW:
        raise EventRejectedError("timestamp", f"{_shown(value)} is in the future")
    if moment < EARLIEST_TIME:
        raise EventRejectedError("timestamp", f"{_shown(value)} is before 2000-01-01")
    return moment


def _value(kind: str, value: float | None) -> float | None:
    if kind == "feedback" and value not in (-1.0, 1.0):
        shown = "missing" if value is None else _shown(value)
        raise EventRejectedError("value", f"{shown}: feedback takes 1 or -1")
    if kind == "rating" and (value is None or not 1.0 <= value <= 5.0):
        shown = "missing" if value is None else _shown(value)
        raise EventRejectedError("value", f"{shown}: a rating is between 1 and 5")
    if kind == "session_end" and value is not None and value < 0:
        # The session's length in seconds: the profile averages it.
        raise EventRejectedError("value", f"{_shown(value)}: a session's length is not negative")
    return value


def validate_event(raw: Any, *, secret_key: str, now: datetime) -> ValidEvent:
    """Check one event and pseudonymise its customer.

    Raises:
        EventRejectedError: the first invalid field, with a reason that quotes no
            personal data.
    """
    if not isinstance(raw, Mapping):
        raise EventRejectedError("event", f"must be a JSON object, not {type(raw).__name__}")
    unknown = sorted(str(name) for name in raw if name not in KNOWN_FIELDS)
    if unknown:
        # Its value is never quoted (it may well be an e-mail address), nor a name that is
        # not a plain word (it may be one too).
        if _QUOTABLE.fullmatch(unknown[0]):
            raise EventRejectedError(unknown[0], "is not a known event field")
        raise EventRejectedError("event", "has a field that is not a known event field")
    event_id = _text(raw, "event_id", MAX_EVENT_ID_LENGTH, required=True)
    customer = _text(raw, "customer", MAX_EXTERNAL_ID_LENGTH, required=True)
    kind = raw.get("kind")
    if kind not in INTERACTION_KINDS:
        raise EventRejectedError(
            "kind", f"{_shown(kind)} is not one of {', '.join(INTERACTION_KINDS)}"
        )
    sku = _text(raw, "product", MAX_SKU_LENGTH, required=kind not in PRODUCTLESS_KINDS)
    occurred_at = _timestamp(raw.get("timestamp"), now)
    channel = _text(raw, "channel", MAX_CONTEXT_LENGTH, required=False)
    device = _text(raw, "device", MAX_CONTEXT_LENGTH, required=False)
    location = _text(raw, "location", MAX_LOCATION_LENGTH, required=False)
    category = _text(raw, "category", MAX_CATEGORY_LENGTH, required=kind == "category_asked")
    value = _value(kind, _number(raw, "value"))
    quantity = raw.get("quantity", 1)
    if quantity is None:
        quantity = 1
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise EventRejectedError("quantity", f"{_shown(quantity)} is not a whole number")
    if not 0 <= quantity <= MAX_QUANTITY:
        raise EventRejectedError("quantity", f"{quantity} is not between 0 and {MAX_QUANTITY}")
    price = _number(raw, "price")
    if price is not None and price < 0:
        raise EventRejectedError("price", f"{_shown(price)} is negative")
    if price is not None and price > MAX_PRICE:
        raise EventRejectedError("price", f"is more than {MAX_PRICE:.2f}")
    # required=True above guarantees both.
    assert event_id is not None
    assert customer is not None
    return ValidEvent(
        event_id=event_id,
        customer_key=customer_key(secret_key, customer),
        sku=sku,
        kind=kind,
        occurred_at=occurred_at,
        channel=channel,
        device=device,
        location=location,
        value=value,
        quantity=quantity,
        price=price,
        category=category.lower() if category is not None else None,
    )


def _event_id_of(raw: Any) -> str | None:
    if not isinstance(raw, Mapping):
        return None
    event_id = raw.get("event_id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    if (
        isinstance(event_id, str)
        and 0 < len(event_id.strip()) <= MAX_EVENT_ID_LENGTH
        and not has_control_characters(event_id.strip())
    ):
        return event_id.strip()
    return None


def validate_batch(
    events: Sequence[Any], *, secret_key: str, now: datetime | None = None
) -> ValidatedBatch:
    """Validate each event on its own: bad ones are rejected, the others kept in order."""
    now = now or datetime.now(timezone.utc)
    valid: list[tuple[int, ValidEvent]] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(events):
        try:
            valid.append((index, validate_event(raw, secret_key=secret_key, now=now)))
        except EventRejectedError as error:
            rejected.append(Rejection(index, _event_id_of(raw), error.field, error.reason))
    return ValidatedBatch(tuple(valid), tuple(rejected))
