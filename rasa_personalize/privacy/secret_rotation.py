"""Rotating the secret behind customer keys: customers move to their new key on contact.

A customer key is HMAC-SHA256(``PERSONALIZE_SECRET_KEY``, external id), and the store
keeps no external id: a batch job cannot recompute anyone's key. So after the secret
changes, whoever sees an external id again (event ingestion, an import, a conversation)
also computes its keys under the former secrets (``PERSONALIZE_PREVIOUS_SECRET_KEYS``)
and moves a customer found under one of them
(:func:`rasa_personalize.store.rekey.rekey_customers`). With no former secrets
configured, all of this costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rasa_personalize.identity import customer_key, previous_customer_keys
from rasa_personalize.settings import Settings
from rasa_personalize.store.rekey import rekey_customer, rekey_customers
from rasa_personalize.store.types import Session, SessionFactory


async def adopt_previous_keys(
    session: Session,
    external_ids: Iterable[str],
    *,
    secret_key: str,
    previous_secret_keys: Sequence[str],
) -> int:
    """Move the customers of these external ids that are still stored under a former
    secret's key to their key under ``secret_key``, in the caller's transaction.

    One lookup for the whole batch (per 1,000 keys), then work only for the customers
    found under a former key; nothing at all without ``previous_secret_keys``.

    Returns:
        How many customers moved.
    """
    if not previous_secret_keys:
        return 0
    moves: dict[str, tuple[str, ...]] = {}
    for external_id in external_ids:
        key = customer_key(secret_key, external_id)
        if key not in moves:
            moves[key] = tuple(customer_key(former, external_id) for former in previous_secret_keys)
    if not moves:
        return 0
    return await rekey_customers(session, moves)


async def rekey_on_miss(sessions: SessionFactory, settings: Settings, external_id: str) -> bool:
    """For a customer whose key the store did not know: move them from a former secret's
    key, in a transaction of its own, and say whether they moved (then read again).

    Returns False at once, without touching the store, when no former secrets are
    configured.
    """
    previous = previous_customer_keys(settings, external_id)
    if not previous:
        return False
    async with sessions.begin() as session:
        return await rekey_customer(
            session, previous, customer_key(settings.secret_key, external_id)
        )
