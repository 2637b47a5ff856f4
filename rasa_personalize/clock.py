"""The clock: aware UTC datetimes, in one place so no module needs the ORM for the time."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def from_iso(text: str) -> datetime | None:
    """An ISO 8601 date-time in UTC (UTC when it names no offset), or None."""
    # Python 3.10's fromisoformat does not read a trailing Z.
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # year 1 or 9999 moved past the edge by its offset
        return None
