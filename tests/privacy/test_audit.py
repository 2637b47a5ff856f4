"""Actors, recording entries by customer key only, and reading --since."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.privacy.audit import (
    PROFILE_READ,
    Actor,
    audit_entry_document,
    parse_since,
    record_audit,
)
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.models import AuditEntry
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW

RAW_ID = "jane.doe@example.com"


def test_actors() -> None:
    """The CLI has no key; an API caller is its key's id and label."""
    assert Actor.cli() == Actor("cli", None, None)
    assert Actor.api(3, "crm sync") == Actor("api", 3, "crm sync")


async def test_entry_names_the_customer_by_key(store: SqlStore) -> None:
    """The stored row holds the actor, the key and the detail as given."""
    key = customer_key(TEST_SECRET, RAW_ID)
    async with store.sessions.begin() as session:
        await record_audit(
            session, Actor.api(3, "crm"), PROFILE_READ, "ok", customer_key=key, now=NOW
        )
    async with store.sessions() as session:
        [record] = await list_audit_entries(session)
    assert (record.actor, record.api_key_id, record.api_key_label) == ("api", 3, "crm")
    assert (record.action, record.outcome, record.customer_key) == ("profile.read", "ok", key)
    assert record.occurred_at == NOW
    assert audit_entry_document(record) == {
        "id": record.id,
        "occurred_at": "2026-06-01T12:00:00+00:00",
        "actor": "api",
        "api_key_id": 3,
        "api_key_label": "crm",
        "action": "profile.read",
        "customer_key": key,
        "outcome": "ok",
        "detail": {},
    }


@pytest.mark.parametrize(
    "not_a_key",
    [
        RAW_ID,  # an e-mail address
        "customer-42",  # a CRM id
        "A" * 64,  # upper-case hex is not what customer_key produces
        "a" * 63,  # one digit short
    ],
)
async def test_a_raw_id_never_reaches_the_table(sqlite_store: SqlStore, not_a_key: str) -> None:
    """Anything but a customer key is refused, the message does not quote it, and no row
    is written."""
    async with sqlite_store.sessions.begin() as session:
        with pytest.raises(ValueError, match="never by a raw id") as raised:
            await record_audit(session, Actor.cli(), PROFILE_READ, "ok", customer_key=not_a_key)
    assert not_a_key not in str(raised.value)
    async with sqlite_store.sessions() as session:
        assert (await session.scalars(select(AuditEntry))).all() == []


NOW_UTC = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a duration in days, back from now
        ("7d", NOW_UTC - timedelta(days=7)),
        # hours, minutes, seconds and weeks
        ("12h", NOW_UTC - timedelta(hours=12)),
        ("30m", NOW_UTC - timedelta(minutes=30)),
        ("45s", NOW_UTC - timedelta(seconds=45)),
        ("2w", NOW_UTC - timedelta(weeks=2)),
        # a date is midnight UTC
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=timezone.utc)),
        # a date-time without an offset is UTC
        ("2026-01-31T08:30:00", datetime(2026, 1, 31, 8, 30, tzinfo=timezone.utc)),
        # an offset is kept (the same instant)
        (
            "2026-01-31T08:30:00+02:00",
            datetime(2026, 1, 31, 6, 30, tzinfo=timezone.utc),
        ),
        # Z for UTC, and surrounding spaces
        (" 2026-01-31T08:30:00Z ", datetime(2026, 1, 31, 8, 30, tzinfo=timezone.utc)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    """Durations count back from now; dates and date-times are absolute, UTC by default."""
    assert parse_since(text, now=NOW_UTC) == expected


@pytest.mark.parametrize(
    "text",
    [
        "7 days",  # a duration is digits and one unit letter
        "7y",  # no years
        "yesterday",
        "2026-13-01",  # no 13th month
        "999999d",  # further back than a date reaches
        "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
        "",
    ],
)
def test_parse_since_refuses_other_forms(text: str) -> None:
    """The error lists the forms that work."""
    with pytest.raises(InvalidInputError, match=r"neither a date .* nor a duration \(7d"):
        parse_since(text, now=NOW_UTC)
