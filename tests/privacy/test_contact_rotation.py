"""Re-encrypting contacts under the current key, on SQLite, PostgreSQL and MySQL/MariaDB:
several keys decrypt, batches resume after an interruption, a dry run writes nothing,
and each run leaves one audit entry."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from rasa_personalize.imports.contacts import ContactCipher
from rasa_personalize.privacy.contact_rotation import (
    ROTATE_CONTACTS_ACTION,
    pending_contacts,
    rotate_contacts,
)
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.models import Customer
from rasa_personalize.store.sql_store import SqlStore

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(1, 33))
KEY_3 = bytes(range(2, 34))
OLD = ContactCipher({"k1": KEY_1}, "k1")
MIDDLE = ContactCipher({"k_2": KEY_2}, "k_2")
# Knows all three, writes with k3.
ROTATED = ContactCipher({"k1": KEY_1, "k_2": KEY_2, "k3": KEY_3}, "k3")

PEOPLE = [(f"Person {n}", f"p{n}@example.com", f"+4930901{n:03d}") for n in range(7)]


class Interrupted(Exception):
    """Stands in for a crash or Ctrl-C after a batch."""


async def seed(store: SqlStore) -> None:
    """Seven customers: contacts under k1 and k_2, one field under k3 already, one
    customer without contacts."""
    async with store.sessions.begin() as session:
        for number, (name, email, phone) in enumerate(PEOPLE):
            cipher = OLD if number % 2 else MIDDLE
            session.add(
                Customer(
                    customer_key=f"{number:064x}",
                    name_encrypted=cipher.encrypt("name", name),
                    email_encrypted=ROTATED.encrypt("email", email)
                    if number == 0
                    else cipher.encrypt("email", email),
                    phone_encrypted=None if number == 6 else cipher.encrypt("phone", phone),
                )
            )
        session.add(Customer(customer_key="f" * 64))


async def stored(store: SqlStore) -> list[tuple[str | None, str | None, str | None]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(Customer.name_encrypted, Customer.email_encrypted, Customer.phone_encrypted)
            .order_by(Customer.id)
        )  # fmt: skip
        return [tuple(row) for row in rows.all()]


def opened(rows: list[tuple[str | None, str | None, str | None]]) -> list[tuple[str | None, ...]]:
    return [
        tuple(
            None if sealed is None else ROTATED.decrypt(field, sealed)
            for field, sealed in zip(("name", "email", "phone"), row, strict=True)
        )
        for row in rows
    ]


def expected() -> list[tuple[str | None, ...]]:
    values: list[tuple[str | None, ...]] = [
        (name, email, None if number == 6 else phone)
        for number, (name, email, phone) in enumerate(PEOPLE)
    ]
    return [*values, (None, None, None)]


async def test_every_field_moves_to_the_current_key_and_opens_to_the_same_value(
    store: SqlStore,
) -> None:
    """Fields under k1 and k_2 are re-encrypted under k3 (the one under k3 is left as it
    was); the plaintexts are unchanged; the counts and the audit entry say so."""
    await seed(store)
    before = await stored(store)
    rotation = await rotate_contacts(store.sessions, ROTATED, batch_size=3)

    after = await stored(store)
    assert all(sealed is None or sealed.startswith("k3:") for row in after for sealed in row)
    assert after[0][1] == before[0][1]  # already under k3: not rewritten
    assert opened(after) == expected()
    assert (rotation.customers, rotation.fields, rotation.failed, rotation.batches) == (7, 19, 0, 3)
    assert dict(rotation.from_key_ids) == {"k1": 9, "k_2": 10}
    assert (await pending_contacts(store.sessions, "k3")).customers == 0
    async with store.sessions() as session:
        entries = await list_audit_entries(session, action=ROTATE_CONTACTS_ACTION)
    assert [(e.actor, e.outcome, e.detail["fields"], e.detail["key_id"]) for e in entries] == [
        ("cli", "ok", 19, "k3")
    ]


async def test_an_interrupted_run_resumes_where_it_stopped(store: SqlStore) -> None:
    """A run stopped after its first batch keeps that batch; the next run does the rest
    (and only the rest); every value still opens to what it was."""
    await seed(store)

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        await rotate_contacts(
            store.sessions, ROTATED, batch_size=2, progress=stop_after_first_batch
        )
    halfway = await stored(store)
    assert [all(s is None or s.startswith("k3:") for s in row) for row in halfway] == [
        True, True, False, False, False, False, False, True
    ]  # fmt: skip
    assert (await pending_contacts(store.sessions, "k3")).customers == 5

    rest = await rotate_contacts(store.sessions, ROTATED, batch_size=2)
    assert rest.customers == 5
    assert opened(await stored(store)) == expected()
    assert (await pending_contacts(store.sessions, "k3")).customers == 0
    async with store.sessions() as session:
        outcomes = [e.outcome for e in await list_audit_entries(session)]
    assert outcomes == ["interrupted", "ok"]


async def test_dry_run_counts_and_changes_nothing(store: SqlStore) -> None:
    """A dry run decrypts and counts every field it would move, and writes nothing (not
    even an audit entry)."""
    await seed(store)
    before = await stored(store)
    rotation = await rotate_contacts(store.sessions, ROTATED, batch_size=2, dry_run=True)
    assert (rotation.dry_run, rotation.customers, rotation.fields) == (True, 7, 19)
    assert await stored(store) == before
    async with store.sessions() as session:
        assert await list_audit_entries(session) == []


async def test_fields_under_an_unknown_key_are_counted_and_left(store: SqlStore) -> None:
    """Without k_2 its fields cannot be opened: they stay, are counted by key id, and the
    run's outcome is partial; the k1 fields move."""
    await seed(store)
    without_middle = ContactCipher({"k1": KEY_1, "k3": KEY_3}, "k3")
    rotation = await rotate_contacts(store.sessions, without_middle, batch_size=10)
    assert dict(rotation.failed_key_ids) == {"k_2": 10}
    assert dict(rotation.from_key_ids) == {"k1": 9}
    async with store.sessions() as session:
        entries = await list_audit_entries(session)
    assert [(e.outcome, e.detail["failed"]) for e in entries] == [("partial", 10)]
    assert (await pending_contacts(store.sessions, "k3")).customers == 4


async def test_a_value_without_a_key_id_is_never_reported_as_one(store: SqlStore) -> None:
    """A contact stored unencrypted (no "<key id>:") fails, counted under "?": the value
    reaches neither the result nor the audit log."""
    async with store.sessions.begin() as session:
        session.add(Customer(customer_key="a" * 64, email_encrypted="anna@example.com"))
    rotation = await rotate_contacts(store.sessions, ROTATED)
    assert dict(rotation.failed_key_ids) == {"?": 1}
    async with store.sessions() as session:
        (entry,) = await list_audit_entries(session)
    assert "anna" not in str(entry.detail)


async def test_key_ids_are_matched_exactly(store: SqlStore) -> None:
    """ "k_2" is no LIKE pattern and "K3" is not "k3": both still count as not rotated."""
    async with store.sessions.begin() as session:
        session.add(Customer(customer_key="a" * 64, name_encrypted="kx2:abc"))
        session.add(Customer(customer_key="b" * 64, name_encrypted="K3:abc"))
        session.add(Customer(customer_key="c" * 64, name_encrypted="k3:abc"))
    assert (await pending_contacts(store.sessions, "k_2")).customers == 3
    pending = await pending_contacts(store.sessions, "k3")
    assert (pending.customers, pending.fields) == (2, 2)
