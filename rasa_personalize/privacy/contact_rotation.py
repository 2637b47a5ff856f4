"""Re-encrypting stored contact details under the current contact key (key rotation).

After a new key is added to ``PERSONALIZE_CONTACT_KEYS`` and named by
``PERSONALIZE_CONTACT_KEY_ID``, new contacts are written with it and old ones still open
with their own keys. :func:`rotate_contacts` re-encrypts every field still under another
key, in batches that commit on their own: a run that stops (a crash, Ctrl-C, a lost
connection) is resumed by running it again, since fields under the current key are no
longer selected. Once none are left, the old key can be removed from the list.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from rasa_personalize.clock import utc_now
from rasa_personalize.imports.contacts import (
    KEY_ID_PATTERN,
    ContactCipher,
    ContactDecryptionError,
)
from rasa_personalize.store.audit import append_audit_entry
from rasa_personalize.store.contact_keys import (
    CONTACT_FIELDS,
    ContactSwap,
    PendingContacts,
    SealedContacts,
    contacts_not_under,
    count_contacts_not_under,
    swap_contacts,
)
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.types import SessionFactory

logger = logging.getLogger(__name__)

ROTATE_CONTACTS_ACTION: Final = "keys.rotate_contacts"
# Counted under this name: a value with no valid key id in front (damaged, or never
# encrypted) must not reach a report or the audit log, which it would as its "key id".
UNREADABLE_KEY_ID: Final = "?"
DEFAULT_BATCH_SIZE: Final = 500

# progress(customers done, customers to do), after each batch.
RotationProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class ContactRotation:
    """What a run re-encrypted (or, in a dry run, would have).

    ``from_key_ids`` counts the fields re-encrypted by the key id they were under;
    ``failed_key_ids`` counts fields that did not decrypt (an unknown key id, a wrong key
    or damaged data), which stay as they are.
    """

    key_id: str
    customers: int = 0
    fields: int = 0
    batches: int = 0
    dry_run: bool = False
    from_key_ids: Mapping[str, int] = field(default_factory=dict)
    failed_key_ids: Mapping[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Fields that did not decrypt."""
        return sum(self.failed_key_ids.values())

    def audit_detail(self) -> dict[str, object]:
        """Counts and key ids for the audit log (never a key, never a contact)."""
        return {
            "key_id": self.key_id,
            "customers": self.customers,
            "fields": self.fields,
            "failed": self.failed,
            "batches": self.batches,
            "from_key_ids": dict(sorted(self.from_key_ids.items())),
            "failed_key_ids": dict(sorted(self.failed_key_ids.items())),
        }


async def pending_contacts(sessions: SessionFactory, key_id: str) -> PendingContacts:
    """Customers and contact fields not yet under ``key_id``."""
    async with sessions() as session:
        return await count_contacts_not_under(session, key_id)


async def rotate_contacts(
    sessions: SessionFactory,
    cipher: ContactCipher,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: RotationProgress | None = None,
) -> ContactRotation:
    """Re-encrypt every contact field not under ``cipher``'s current key.

    Each batch of ``batch_size`` customers is read, decrypted, encrypted anew and written
    in one transaction of its own. A dry run decrypts everything (so it finds fields
    whose key is missing) and writes nothing. A real run appends one audit entry
    (``keys.rotate_contacts``) with the counts: outcome ``ok``, ``partial`` when fields
    did not decrypt, or ``interrupted`` when the run stopped on an error.

    Raises:
        ValueError: ``batch_size`` below 1.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    key_id = cipher.current_key_id
    total = (await pending_contacts(sessions, key_id)).customers
    moved: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    customers = batches = seen = after_id = 0

    def result() -> ContactRotation:
        return ContactRotation(
            key_id, customers, sum(moved.values()), batches, dry_run, dict(moved), dict(failed)
        )

    try:
        while True:
            async with sessions.begin() as session:
                page = await contacts_not_under(
                    session, key_id, after_id=after_id, limit=batch_size
                )
                if not page:
                    break
                swaps: list[ContactSwap] = []
                for row in page:
                    row_swaps = _reencrypted(row, cipher, moved, failed)
                    customers += bool(row_swaps)
                    swaps.extend(row_swaps)
                if not dry_run:
                    await swap_contacts(session, swaps)
            # Pages go by id: rows that did not decrypt (and, in a dry run, every row)
            # still match, and must not come back.
            after_id = page[-1].customer_id
            seen += len(page)
            batches += 1
            if progress is not None:
                progress(min(seen, total), max(total, seen))
    except BaseException:
        if not dry_run:
            await _audit(sessions, "interrupted", result())
        raise
    rotation = result()
    if not dry_run:
        await _audit(sessions, "partial" if rotation.failed else "ok", rotation)
    return rotation


def _reencrypted(
    row: SealedContacts, cipher: ContactCipher, moved: Counter[str], failed: Counter[str]
) -> list[ContactSwap]:
    """The swaps that put ``row``'s fields under the current key, counting each field in
    ``moved`` or ``failed`` by the key id it was under."""
    prefix = f"{cipher.current_key_id}:"
    swaps: list[ContactSwap] = []
    for name in CONTACT_FIELDS:
        sealed = row.sealed(name)
        if sealed is None or sealed.startswith(prefix):
            continue
        old_key_id = ContactCipher.key_id_of(sealed)
        if not KEY_ID_PATTERN.match(old_key_id):
            old_key_id = UNREADABLE_KEY_ID
        try:
            plaintext = cipher.decrypt(name, sealed)
        except ContactDecryptionError:
            failed[old_key_id] += 1
            continue
        swaps.append(ContactSwap(row.customer_id, name, sealed, cipher.encrypt(name, plaintext)))
        moved[old_key_id] += 1
    return swaps


async def _audit(sessions: SessionFactory, outcome: str, rotation: ContactRotation) -> None:
    try:
        async with sessions.begin() as session:
            await append_audit_entry(
                session,
                occurred_at=utc_now(),
                actor="cli",
                action=ROTATE_CONTACTS_ACTION,
                outcome=outcome,
                detail=rotation.audit_detail(),
            )
    except DatabaseError as error:
        # The store that just failed may fail again: the run's own error matters more.
        logger.warning(
            "The audit entry of this contact key rotation was not written (%s).",
            type(error).__name__,
        )
