"""The conversation's local time, from the channel's zone or the server's."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rasa_personalize.context import ConversationContext, context_from_metadata


@pytest.mark.parametrize(
    "now",
    [
        # either side of Berlin's spring and autumn changes (01:00 UTC both days)
        datetime(2026, 3, 29, 0, 59, 59, tzinfo=timezone.utc),
        datetime(2026, 3, 29, 1, 0, 0, tzinfo=timezone.utc),
        datetime(2026, 10, 25, 0, 59, 59, tzinfo=timezone.utc),
        datetime(2026, 10, 25, 1, 0, 0, tzinfo=timezone.utc),
    ],
)
def test_without_a_zone_the_server_zone_is_used_across_clock_changes(
    now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's zone is remembered a minute at a time, and still follows DST."""
    time = pytest.importorskip("time")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        local = ConversationContext().local_time(now)
        assert local == now
        assert local.utcoffset() == now.astimezone().utcoffset()
        assert local.tzname() == now.astimezone().tzname()
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_channel_zone_wins_over_the_offset_and_the_server() -> None:
    """A named zone first, then a fixed offset."""
    now = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    assert ConversationContext(timezone_name="Asia/Tokyo").local_time(now).hour == 21
    assert ConversationContext(utc_offset_minutes=-300).local_time(now).hour == 7


def test_metadata_read_again_gives_the_same_context_and_typed_values_stay_apart() -> None:
    """Contexts of short metadata are kept, but an offset of True (no offset) never takes
    the entry of an offset of 1 minute, nor 1.0 that of 1."""
    minute = context_from_metadata({"utc_offset_minutes": 1, "channel": "Web"})
    flag = context_from_metadata({"utc_offset_minutes": True, "channel": "Web"})
    real = context_from_metadata({"utc_offset_minutes": 1.0, "channel": "Web"})
    long_location = context_from_metadata({"location": "x" * 65}, "slack")

    assert minute.utc_offset_minutes == 1
    assert flag.utc_offset_minutes is None
    assert real.utc_offset_minutes is None
    assert minute.channel == "web"
    assert context_from_metadata({"utc_offset_minutes": 1, "channel": "Web"}) is minute
    assert (long_location.location, long_location.channel) == (None, "slack")
