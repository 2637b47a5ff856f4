"""The clock: aware UTC datetimes, in one place so no module needs the ORM for the time."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(timezone.utc)
