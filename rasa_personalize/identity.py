"""Who the customer is, and the pseudonymous key the store knows them by.

Every lookup, CLI argument and import goes through :func:`customer_key`, so the store never
holds a raw channel id, sender id or CRM id.

A chat widget's metadata comes from the browser, so a ``user_id`` in it is only a claim.
With an identity secret configured, a claim counts only when ``metadata.user_hash`` is
:func:`sign_user_id` of it, computed by the shop's server (which knows who is logged in);
any other visitor is anonymous, known by the conversation alone.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rasa_personalize.settings import Settings

logger = logging.getLogger(__name__)

IdentitySource = Literal["message_metadata", "session_metadata", "sender_id"]

# Longer ids are not ids: refuse them rather than hash megabytes of junk from a channel.
MAX_EXTERNAL_ID_LENGTH = 256


@dataclass(frozen=True)
class CustomerIdentity:
    """A resolved customer: the external id (never stored) and where it came from.

    ``verified`` is True only for a metadata ``user_id`` whose ``user_hash`` matched the
    identity secret. Without a secret configured, metadata ids are used unverified (the
    behaviour before verification existed); a ``sender_id`` identity is the conversation
    itself, never a claim to be someone, so it is never "verified".
    """

    external_id: str
    source: IdentitySource
    verified: bool = False

    @property
    def is_claim(self) -> bool:
        """Whether the id came from channel metadata (a customer's id) rather than the
        conversation."""
        return self.source != "sender_id"


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


def sign_user_id(secret: str, user_id: str) -> str:
    """The ``user_hash`` a shop's server sends beside ``user_id``: proof of who is logged in.

    Lower-case hex HMAC-SHA256 of the trimmed user id under the identity secret
    (``PERSONALIZE_IDENTITY_SECRET``), the scheme chat widgets use for logged-in users.
    Compute it on the server that knows the login, never in the browser.
    """
    return hmac.new(secret.encode(), user_id.strip().encode(), hashlib.sha256).hexdigest()


def user_hash_matches(secret: str, user_id: str, user_hash: object) -> bool:
    """Whether ``user_hash`` is :func:`sign_user_id` of ``user_id``, compared in constant
    time (so response timing does not leak how much of a forged hash was right)."""
    if not isinstance(user_hash, str):
        return False
    expected = sign_user_id(secret, user_id)
    # Bytes, because compare_digest refuses non-ASCII str (a junk hash must not raise).
    return hmac.compare_digest(expected.encode(), user_hash.encode())


def resolve_customer(
    *,
    sender_id: str,
    latest_message_metadata: Mapping[str, Any] | None,
    session_started_metadata: Mapping[str, Any] | None,
    at_session_start: bool = False,
    identity_secret: str | None = None,
) -> CustomerIdentity:
    """Decide who the customer is. The one place that decides.

    The channel's ``metadata.user_id`` wins over the ``sender_id`` (a channel's sender id is
    often a per-device or per-conversation id). At session start Rasa has not yet attached
    the new message to the tracker, and puts that message's metadata into the
    ``session_started_metadata`` slot, so there it is read first; mid-conversation the latest
    user message is the freshest source.

    With ``identity_secret``, a ``user_id`` counts only beside a ``user_hash`` in the same
    metadata that :func:`sign_user_id` gives; an unproven claim is skipped (a verified id
    in the other source may still answer), and with none the visitor is the conversation.

    Args:
        sender_id: The tracker's sender id, the last resort.
        latest_message_metadata: ``metadata`` of the latest user message, if any.
        session_started_metadata: value of the ``session_started_metadata`` slot, if any.
        at_session_start: True inside ``action_session_start``.
        identity_secret: ``PERSONALIZE_IDENTITY_SECRET``; None trusts metadata ids as sent.
    """
    ordered: list[tuple[IdentitySource, Mapping[str, Any] | None]] = [
        ("message_metadata", latest_message_metadata),
        ("session_metadata", session_started_metadata),
    ]
    if at_session_start:
        ordered.reverse()
    rejected = False
    for source, metadata in ordered:
        user_id = _user_id_in(metadata)
        if user_id is None:
            continue
        if identity_secret is None:
            return CustomerIdentity(user_id, source)
        user_hash = metadata.get("user_hash") if metadata is not None else None
        if user_hash_matches(identity_secret, user_id, user_hash):
            return CustomerIdentity(user_id, source, verified=True)
        rejected = True
    if rejected:
        # Neither the id nor the hash: they come from the channel and may be personal.
        logger.info("A user_id without a valid user_hash was ignored: anonymous visitor.")
    return CustomerIdentity(sender_id[:MAX_EXTERNAL_ID_LENGTH], "sender_id")


def customer_key(secret_key: str, external_id: str) -> str:
    """The store's key for a customer: hex HMAC-SHA256 of the trimmed external id.

    Keyed rather than a plain hash so that someone with a copy of the database cannot
    confirm a guessed e-mail address or phone number without the secret.
    """
    normalized = external_id.strip()
    # One-shot hmac.digest (C, no HMAC object): the hot path computes this on every turn.
    return hmac.digest(secret_key.encode(), normalized.encode(), "sha256").hex()


# The hot path asks for the same few thousand customers' keys turn after turn; a bounded
# memo saves the HMAC (about 9 microseconds, a few percent of a session start). Keyed by
# the secret too, so a rotated secret never answers with a key of the old one.
_hot_customer_key = functools.lru_cache(maxsize=16_384)(customer_key)


def hot_customer_key(secret_key: str, external_id: str) -> str:
    """:func:`customer_key`, remembered for the most recent 16,384 customers."""
    return _hot_customer_key(secret_key, external_id)


def previous_customer_keys(settings: Settings, external_id: str) -> tuple[str, ...]:
    """The keys ``external_id`` had under each former secret, most recent first.

    From ``PERSONALIZE_PREVIOUS_SECRET_KEYS``; empty when none are configured, so callers
    can skip the lookup. A customer stored under one of these keys has not been seen since
    the secret changed (:func:`rasa_personalize.store.rekey.rekey_customer` moves them).
    """
    return tuple(customer_key(secret, external_id) for secret in settings.previous_secrets)
