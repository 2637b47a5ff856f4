"""The conversation's context: local time, channel, device, read from message metadata."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rasa_personalize.text import MAX_TEXT_LENGTH, bounded_text

# Metadata values are free text from a channel; keep what is plausible, drop the rest.
# The limits are those of the store's columns (chat events carry channel, device and
# location), so a value that fits here never fails a write.
_MAX_LABEL = 32
_MAX_LOCATION = 64
_MAX_OFFSET_MINUTES = 14 * 60


@dataclass(frozen=True)
class ConversationContext:
    """What the channel told us about where and when the customer is talking."""

    channel: str | None = None
    device: str | None = None
    timezone_name: str | None = None
    utc_offset_minutes: int | None = None
    location: str | None = None

    def local_time(self, now: datetime) -> datetime:
        """``now`` in the customer's time zone when known, else in the server's."""
        if self.timezone_name:
            return now.astimezone(ZoneInfo(self.timezone_name))
        if self.utc_offset_minutes is not None:
            return now.astimezone(timezone(timedelta(minutes=self.utc_offset_minutes)))
        return now.astimezone(_server_zone_at(int(now.timestamp()) // 60, time.tzname))


@functools.lru_cache(maxsize=4)
def _server_zone_at(minute: int, _zone_names: tuple[str, str]) -> tzinfo:
    # The server's own zone as ``astimezone()`` gives it, asked once a minute instead of
    # on every turn (each asks the C library for the local time, twice per session
    # start). Offsets change on whole minutes, so a minute's answer holds all minute;
    # the zone's names are in the key for a process that changes TZ (time.tzset).
    zone = datetime.fromtimestamp(minute * 60, timezone.utc).astimezone().tzinfo
    assert zone is not None  # astimezone() always gives an aware datetime
    return zone


def _plausible(value: Any, max_length: int) -> str | None:
    # Control characters stripped (PostgreSQL refuses NUL); longer than max_length after
    # that is no label a channel sends, so it is ignored rather than cut.
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        return None
    text = bounded_text(value)
    return text if text is not None and len(text) <= max_length else None


def _label(value: Any) -> str | None:
    text = _plausible(value, _MAX_LABEL)
    return text.lower() if text is not None else None


def _location(value: Any) -> str | None:
    # A city or region name, as a channel sends it; never coordinates or an address.
    return _plausible(value, _MAX_LOCATION)


def context_from_metadata(
    metadata: Mapping[str, Any] | None, input_channel: str | None = None
) -> ConversationContext:
    """Read channel, device and time zone from message metadata, ignoring bad values.

    Control characters are stripped; a channel or device over 32 characters, a location
    over 64 or a time zone over 64 is ignored (never an error to the shopper).
    """
    metadata = metadata if isinstance(metadata, Mapping) else {}
    values = (
        metadata.get("channel"),
        metadata.get("device"),
        metadata.get("timezone"),
        metadata.get("utc_offset_minutes"),
        metadata.get("location"),
        input_channel,
    )
    # A channel sends a handful of distinct contexts: short plain values are read once.
    if all(
        value is None
        or (type(value) is str and len(value) <= _MAX_CACHED_TEXT)
        or type(value) is int
        for value in values
    ):
        return _cached_context(*values)
    return _context(values)


# Longer values are no label, zone or place a channel sends: not worth keeping.
_MAX_CACHED_TEXT = 64


# typed: an offset of True must not share an entry with an offset of 1 (nor 1.0 with 1).
@functools.lru_cache(maxsize=1_024, typed=True)
def _cached_context(*values: Any) -> ConversationContext:
    return _context(values)


def _context(values: tuple[Any, ...]) -> ConversationContext:
    """channel, device, time zone, UTC offset, location and input channel, as sent."""
    channel, device, raw_zone, offset, location, input_channel = values
    timezone_name: str | None = None
    # Zone names are plain ASCII paths: anything with a control character is no zone.
    if isinstance(raw_zone, str) and 0 < len(raw_zone) <= 64 and raw_zone.isprintable():
        try:
            ZoneInfo(raw_zone)
            timezone_name = raw_zone
        except (ZoneInfoNotFoundError, ValueError):
            timezone_name = None
    valid_offset = (
        isinstance(offset, int)
        and not isinstance(offset, bool)
        and abs(offset) <= _MAX_OFFSET_MINUTES
    )
    return ConversationContext(
        channel=_label(channel) or _label(input_channel),
        device=_label(device),
        timezone_name=timezone_name,
        utc_offset_minutes=offset if valid_offset else None,
        location=_location(location),
    )


def time_of_day(local: datetime) -> str:
    """morning 05-12, afternoon 12-17, evening 17-22, night 22-05 (local hours)."""
    hour = local.hour
    if 5 <= hour < 12:
        return "morning"
    if 12 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 22:
        return "evening"
    return "night"
