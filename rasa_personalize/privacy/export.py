"""A customer's data export (access and portability): one versioned JSON document.

The document holds everything stored about one customer: profile, decrypted contacts,
consent, tags, segments, precomputed recommendations, the keys of customers merged into
them, experiment arms, propensity scores, offers shown and every interaction. It is
produced as a stream of JSON text (:func:`export_chunks`), interactions read a batch at
a time, so a customer with tens of thousands of interactions costs one batch of memory.
``docs/privacy.md`` describes every field; a change to the shape bumps
:data:`EXPORT_VERSION`.

Each export is audited (``privacy.export``) before any of its data leaves, with
outcome ``ok`` or ``not_found``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import datetime
from typing import Any, Final, Literal

from rasa_personalize.clock import utc_now
from rasa_personalize.errors import NotFoundError
from rasa_personalize.imports.contacts import (
    KEY_ID_PATTERN,
    ContactCipher,
    ContactDecryptionError,
    ContactField,
)
from rasa_personalize.privacy.audit import (
    OUTCOME_NOT_FOUND,
    OUTCOME_OK,
    PRIVACY_EXPORT,
    Actor,
    record_audit,
)
from rasa_personalize.store.export import (
    INTERACTION_BATCH,
    CustomerRecords,
    InteractionRecord,
    StoredContacts,
    interaction_batches,
    read_customer_records,
)
from rasa_personalize.store.types import SessionFactory

EXPORT_FORMAT: Final = "rasa-personalize.export"
# 2: "experiments" (the arms the customer was shown); 3: "propensity" (model scores) and
# "offers" (the offers shown, for next-best-offer rules).
EXPORT_VERSION: Final = 3

ContactsStatus = Literal["none", "decrypted", "partial", "not_decrypted"]
_CONTACT_FIELDS: Final[tuple[ContactField, ...]] = ("name", "email", "phone")


class CustomerNotFoundError(NotFoundError):
    """No customer (nor merged customer) has the key asked for."""

    def __init__(self) -> None:
        # The id asked for is not repeated: it may be an e-mail address.
        super().__init__("no such customer in the store")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def contacts_document(stored: StoredContacts, cipher: ContactCipher | None) -> dict[str, Any]:
    """The contacts part: plaintexts where they decrypt, and a status that says why not.

    ``status`` is ``none`` (nothing stored), ``decrypted``, ``partial`` or
    ``not_decrypted``; ``problems`` names each field that did not decrypt and the key id
    it needs (never the content).
    """
    values: dict[str, str | None] = dict.fromkeys(_CONTACT_FIELDS)
    problems: list[str] = []
    stored_fields = [name for name in _CONTACT_FIELDS if getattr(stored, name) is not None]
    for name in stored_fields:
        ciphertext: str = getattr(stored, name)
        if cipher is None:
            problems.append(
                f"{name}: no contact key is configured (PERSONALIZE_CONTACT_KEY), "
                f"so it stays encrypted (key id {_shown_key_id(ciphertext)!r})"
            )
            continue
        try:
            values[name] = cipher.decrypt(name, ciphertext)
        except ContactDecryptionError as error:
            problems.append(str(error))
    status: ContactsStatus
    if not stored_fields:
        status = "none"
    elif not problems:
        status = "decrypted"
    elif len(problems) < len(stored_fields):
        status = "partial"
    else:
        status = "not_decrypted"
    return {"status": status, **values, "problems": problems}


def export_head(
    records: CustomerRecords, cipher: ContactCipher | None, now: datetime
) -> dict[str, Any]:
    """Every part of the document but the interactions, in document order."""
    profile = records.profile
    recommendations = records.recommendations
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": now.isoformat(),
        "customer": {
            "customer_key": records.customer_key,
            "created_at": records.created_at.isoformat(),
        },
        "profile": {
            "loyalty_tier": records.loyalty_tier,
            "demographics": asdict(records.demographics),
            "attributes": dict(profile.attributes) if profile else {},
            "metrics": dict(profile.metrics) if profile else {},
            "profile_version": profile.version if profile else None,
            "updated_at": _iso(profile.updated_at) if profile else None,
        },
        "contacts": contacts_document(records.contacts, cipher),
        "consent": [
            {
                "customer_key": consent.customer_key,
                "states": [
                    {
                        "purpose": state.purpose,
                        "granted": state.granted,
                        "source": state.source,
                        "policy_version": state.policy_version,
                        "updated_at": state.updated_at.isoformat(),
                    }
                    for state in consent.states
                ],
                "history": [
                    {
                        "purpose": change.purpose,
                        "decision": change.decision,
                        "source": change.source,
                        "policy_version": change.policy_version,
                        "recorded_at": change.recorded_at.isoformat(),
                    }
                    for change in consent.history
                ],
            }
            for consent in records.consent
        ],
        "tags": [
            {
                "tag": tag.tag,
                "source": tag.source,
                "weight": tag.weight,
                "updated_at": tag.updated_at.isoformat(),
            }
            for tag in records.tags
        ],
        "segments": [
            {
                "segment": segment.segment,
                "method": segment.method,
                "model_version": segment.model_version,
                "score": segment.score,
                "assigned_at": segment.assigned_at.isoformat(),
            }
            for segment in records.segments
        ],
        "recommendations": (
            {
                "model_version": recommendations.model_version,
                "computed_at": recommendations.computed_at.isoformat(),
                "items": [{"sku": sku, "score": score} for sku, score in recommendations.items],
            }
            if recommendations is not None
            else None
        ),
        "aliases": [
            {
                "customer_key": alias.alias_key,
                "match": alias.match,
                "merged_at": alias.merged_at.isoformat(),
            }
            for alias in records.aliases
        ],
        "experiments": [
            {
                "experiment": exposure.experiment,
                "arm": exposure.arm,
                "customer_key": exposure.customer_key,
                "exposed_at": exposure.exposed_at.isoformat(),
            }
            for exposure in records.experiments
        ],
        "propensity": [
            {
                "target": stored.target,
                "score": stored.score,
                "model_version": stored.model_version,
                "scored_at": stored.scored_at.isoformat(),
            }
            for stored in records.propensity
        ],
        "offers": [
            {
                "offer": shown.offer,
                "segment": shown.segment,
                "customer_key": shown.customer_key,
                "shown_at": shown.shown_at.isoformat(),
            }
            for shown in records.offers
        ],
        "interaction_count": records.interaction_count,
    }


def interaction_document(interaction: InteractionRecord) -> dict[str, Any]:
    """One entry of ``interactions``."""
    return {
        "sku": interaction.sku,
        "kind": interaction.kind,
        "value": interaction.value,
        "quantity": interaction.quantity,
        "price": interaction.price,
        "occurred_at": interaction.occurred_at.isoformat(),
        "channel": interaction.channel,
        "device": interaction.device,
        "location": interaction.location,
        "category": interaction.category,
    }


async def export_chunks(
    sessions: SessionFactory,
    customer_key: str,
    *,
    cipher: ContactCipher | None,
    actor: Actor,
    now: datetime | None = None,
    batch_size: int = INTERACTION_BATCH,
) -> AsyncIterator[str]:
    """The export document of the customer with ``customer_key``, as pieces of JSON text
    whose concatenation is one JSON object.

    The audit entry commits before the first piece is produced, so no data leaves
    unaudited; a caller that asks for the first piece learns at once whether the
    customer exists (and can still answer 404).

    Args:
        sessions: Opens the units of work: one for the customer's rows and the audit
            entry, one for the interactions.
        customer_key: The customer's key (an alias key reaches the merged customer).
        cipher: Decrypts contacts; None leaves them encrypted and says so.
        actor: Who asked, for the audit log.
        now: The export's time (default: now).
        batch_size: Interactions read per query.

    Raises:
        CustomerNotFoundError: before the first piece, when no customer has the key.
    """
    now = now or utc_now()
    async with sessions.begin() as session:
        records = await read_customer_records(session, customer_key)
        head = export_head(records, cipher, now) if records is not None else None
        await record_audit(
            session,
            actor,
            PRIVACY_EXPORT,
            OUTCOME_OK if records is not None else OUTCOME_NOT_FOUND,
            customer_key=records.customer_key if records is not None else customer_key,
            detail=(
                {
                    "interactions": records.interaction_count,
                    "aliases": len(records.aliases),
                    "contacts": head["contacts"]["status"],
                }
                if records is not None and head is not None
                else {}
            ),
            now=now,
        )
    if records is None or head is None:
        raise CustomerNotFoundError()
    text = json.dumps(head, ensure_ascii=False)
    # The head is an object; the interactions array goes in before its closing brace.
    yield f'{text[:-1]}, "interactions": ['
    first = True
    async with sessions() as session:
        async for batch in interaction_batches(session, records.customer_id, batch_size):
            pieces = ", ".join(
                json.dumps(interaction_document(item), ensure_ascii=False) for item in batch
            )
            yield pieces if first else f", {pieces}"
            first = False
    yield "]}\n"


async def export_document(
    sessions: SessionFactory,
    customer_key: str,
    *,
    cipher: ContactCipher | None,
    actor: Actor,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole export document in memory (tests, small customers); audited as
    :func:`export_chunks` is.

    Raises:
        CustomerNotFoundError: no customer has the key.
    """
    pieces = [
        piece
        async for piece in export_chunks(
            sessions, customer_key, cipher=cipher, actor=actor, now=now
        )
    ]
    document: dict[str, Any] = json.loads("".join(pieces))
    return document


def _shown_key_id(ciphertext: str) -> str:
    """The key id a stored value names, or "?" when it names none (never its text)."""
    key_id = ContactCipher.key_id_of(ciphertext)
    return key_id if KEY_ID_PATTERN.match(key_id) else "?"
