"""Who did what to whose data: actors, actions and one way to record them.

Every entry names its actor (the CLI, or an API key by id and label), an action such as
``"profile.read"``, an outcome, and the customer by key: the keyed hash, checked here
so that a raw id never reaches the table. ``detail`` holds counts, ids and names of
things (a key's scope), never a person's data and never an API key itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Final, Literal

from rasa_personalize.clock import from_iso, utc_now
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store.audit import AuditRecord, append_audit_entry
from rasa_personalize.store.types import Session

PROFILE_READ: Final = "profile.read"
PROFILE_WRITE: Final = "profile.write"
APIKEY_CREATE: Final = "apikey.create"
APIKEY_REVOKE: Final = "apikey.revoke"
PRIVACY_EXPORT: Final = "privacy.export"

OUTCOME_OK: Final = "ok"
OUTCOME_NOT_FOUND: Final = "not_found"

# The store's customer key: hex HMAC-SHA256 (rasa_personalize.identity.customer_key).
CUSTOMER_KEY_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
_DURATION: Final = re.compile(r"(\d{1,6})([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Actor:
    """Who acted: the command line, the HTTP API with the key that was used, or the
    customer in a conversation."""

    kind: Literal["cli", "api", "chat"]
    api_key_id: int | None = None
    api_key_label: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """Someone at the ``personalize`` command line."""
        return cls("cli")

    @classmethod
    def chat(cls) -> Actor:
        """The customer themself, in a conversation (their request, through an action)."""
        return cls("chat")

    @classmethod
    def api(cls, key_id: int, label: str) -> Actor:
        """A caller of the HTTP API, by the id and label of its key (never the key)."""
        return cls("api", key_id, label)


async def record_audit(
    session: Session,
    actor: Actor,
    action: str,
    outcome: str,
    *,
    customer_key: str | None = None,
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Append one audit entry in the caller's transaction.

    Args:
        session: The unit of work; the entry commits (or rolls back) with it.
        actor: Who acted.
        action: What was done, e.g. :data:`PROFILE_READ`.
        outcome: How it ended, e.g. :data:`OUTCOME_OK`.
        customer_key: The customer's key (64 hex digits), when the action is about one.
        detail: Counts, ids and names; never personal data.
        now: When (default: now).

    Raises:
        ValueError: ``customer_key`` is not a customer key (a raw id, most likely). The
            message does not quote it.
    """
    if customer_key is not None and not CUSTOMER_KEY_PATTERN.fullmatch(customer_key):
        raise ValueError(
            "an audit entry names a customer by key (64 hex digits), never by a raw id"
        )
    await append_audit_entry(
        session,
        occurred_at=now or utc_now(),
        actor=actor.kind,
        action=action,
        outcome=outcome,
        customer_key=customer_key,
        api_key_id=actor.api_key_id,
        api_key_label=actor.api_key_label,
        detail=detail,
    )


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A point in time from a date (``2026-01-31``, midnight UTC), an ISO date-time
    (UTC when it has no offset) or a duration back from now (``90m``, ``12h``, ``7d``,
    ``2w``; ``s`` for seconds).

    Raises:
        InvalidInputError: none of these forms.
    """
    text = text.strip()
    duration = _DURATION.fullmatch(text)
    moment: datetime | None = None
    if duration:
        amount, unit = duration.groups()
        try:
            moment = (now or utc_now()) - timedelta(**{_UNITS[unit]: int(amount)})
        except OverflowError:  # further back than datetime reaches
            moment = None
        return _in_range(text, moment)
    if len(text) == 10:
        try:
            moment = datetime.combine(date.fromisoformat(text), time(), timezone.utc)
        except ValueError:
            moment = None
    else:
        moment = from_iso(text)
    return _in_range(text, moment)


def _in_range(text: str, moment: datetime | None) -> datetime:
    # Years 2 to 9998 only: the store's timestamp types cannot take the edges of datetime.
    if moment is None or not 1 < moment.year < 9999:
        raise InvalidInputError(
            f"--since {text[:40]!r} is neither a date (2026-01-31), a date-time "
            "(2026-01-31T08:00:00Z) nor a duration (7d, 12h, 30m, 2w) in reach"
        )
    return moment


def audit_entry_document(record: AuditRecord) -> dict[str, Any]:
    """One entry as a JSON object (what ``personalize audit list --json`` prints)."""
    return {
        "id": record.id,
        "occurred_at": record.occurred_at.isoformat(),
        "actor": record.actor,
        "api_key_id": record.api_key_id,
        "api_key_label": record.api_key_label,
        "action": record.action,
        "customer_key": record.customer_key,
        "outcome": record.outcome,
        "detail": dict(record.detail),
    }
