"""Who the customer is, and the pseudonymous key the store knows them by.

Every lookup, CLI argument and import goes through :func:`customer_key`, so the store never
holds a raw channel id, sender id or CRM id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

IdentitySource = Literal["message_metadata", "session_metadata", "sender_id"]

# Longer ids are not ids: refuse them rather than hash megabytes of junk from a channel.
MAX_EXTERNAL_ID_LENGTH = 256


@dataclass(frozen=True)
class CustomerIdentity:
    """A resolved customer: the external id (never stored) and where it came from."""

    external_id: str
    source: IdentitySource


def _user_id_in(metadata: Mapping[str, Any] | None) -> str | None:
    if not isinstance(metadata, Mapping):
        return None
    user_id = metadata.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str):
        return None
    user_id = user_id.strip()
    if not user_id or len(user_id) > MAX_EXTERNAL_ID_LENGTH:
        return None
    return user_id


def resolve_customer(
    *,
    sender_id: str,
    latest_message_metadata: Mapping[str, Any] | None,
    session_started_metadata: Mapping[str, Any] | None,
    at_session_start: bool = False,
) -> CustomerIdentity:
    """Decide who the customer is. The one place that decides.

    The channel's ``metadata.user_id`` wins over the ``sender_id`` (a channel's sender id is
    often a per-device or per-conversation id). At session start Rasa has not yet attached
    the new message to the tracker, and puts that message's metadata into the
    ``session_started_metadata`` slot, so there it is read first; mid-conversation the latest
    user message is the freshest source.

    Args:
        sender_id: The tracker's sender id, the last resort.
        latest_message_metadata: ``metadata`` of the latest user message, if any.
        session_started_metadata: value of the ``session_started_metadata`` slot, if any.
        at_session_start: True inside ``action_session_start``.
    """
    ordered: list[tuple[IdentitySource, Mapping[str, Any] | None]] = [
        ("message_metadata", latest_message_metadata),
        ("session_metadata", session_started_metadata),
    ]
    if at_session_start:
        ordered.reverse()
    for source, metadata in ordered:
        user_id = _user_id_in(metadata)
        if user_id is not None:
            return CustomerIdentity(user_id, source)
    return CustomerIdentity(sender_id[:MAX_EXTERNAL_ID_LENGTH], "sender_id")


def customer_key(secret_key: str, external_id: str) -> str:
    """The store's key for a customer: hex HMAC-SHA256 of the trimmed external id.

    Keyed rather than a plain hash so that someone with a copy of the database cannot
    confirm a guessed e-mail address or phone number without the secret.
    """
    normalized = external_id.strip()
    return hmac.new(secret_key.encode(), normalized.encode(), hashlib.sha256).hexdigest()
