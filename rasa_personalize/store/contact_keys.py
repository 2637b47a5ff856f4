"""Contact ciphertexts by the key they are under, for re-encrypting them (key rotation).

A stored contact is ``"<key id>:<ciphertext>"`` (``rasa_personalize.imports.contacts``);
this module selects rows by that prefix and swaps ciphertexts, and never sees a
plaintext. Rows come in pages by customer id, so a job that stops half-way goes on
where it stopped: re-encrypted rows no longer match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, or_, select, update

from rasa_personalize.store.dialect import count_where
from rasa_personalize.store.models import Customer
from rasa_personalize.store.types import Session

ContactField = Literal["name", "email", "phone"]
CONTACT_FIELDS: Final[tuple[ContactField, ...]] = ("name", "email", "phone")


def _customers() -> Table:
    # As a Table, which is what Core update() is typed for.
    table: Table = Customer.metadata.tables[Customer.__tablename__]
    return table


def _column(field: ContactField) -> Any:
    return _customers().c[f"{field}_encrypted"]


@dataclass(frozen=True)
class SealedContacts:
    """A customer's stored contact ciphertexts (None: not given)."""

    customer_id: int
    name: str | None
    email: str | None
    phone: str | None

    def sealed(self, field: ContactField) -> str | None:
        """The ciphertext of ``field``."""
        value: str | None = getattr(self, field)
        return value


@dataclass(frozen=True)
class ContactSwap:
    """Replace ``old`` by ``new`` in ``field`` of customer ``customer_id``."""

    customer_id: int
    field: ContactField
    old: str
    new: str


@dataclass(frozen=True)
class PendingContacts:
    """Customers, and their contact fields, not yet under a key."""

    customers: int
    fields: int


def _not_under(field: ContactField, key_id: str) -> ColumnElement[bool]:
    # substr and =, not LIKE: "_" in a key id is a LIKE wildcard, and SQLite's LIKE
    # ignores case, so key "K1" would pass for "k1".
    prefix = f"{key_id}:"
    column = _column(field)
    return and_(column.is_not(None), func.substr(column, 1, len(prefix)) != prefix)


def _any_not_under(key_id: str) -> ColumnElement[bool]:
    return or_(*(_not_under(field, key_id) for field in CONTACT_FIELDS))


async def count_contacts_not_under(session: Session, key_id: str) -> PendingContacts:
    """How many customers have a contact field under another key than ``key_id``, and
    how many such fields there are."""
    table = _customers()
    row = (
        await session.execute(
            select(
                count_where(_any_not_under(key_id)),
                *(count_where(_not_under(field, key_id)) for field in CONTACT_FIELDS),
            ).select_from(table)
        )
    ).one()
    return PendingContacts(customers=int(row[0]), fields=sum(int(value) for value in row[1:]))


async def contacts_not_under(
    session: Session, key_id: str, *, after_id: int = 0, limit: int = 500
) -> list[SealedContacts]:
    """The next ``limit`` customers (by id, after ``after_id``) with a contact field under
    another key than ``key_id``. All three fields come back as stored, including those
    already under ``key_id``."""
    table = _customers()
    rows = await session.execute(
        select(table.c.id, *(_column(field) for field in CONTACT_FIELDS))
        .where(table.c.id > after_id, _any_not_under(key_id))
        .order_by(table.c.id)
        .limit(limit)
    )
    return [
        SealedContacts(customer_id=int(customer_id), name=name, email=email, phone=phone)
        for customer_id, name, email, phone in rows.all()
    ]


async def swap_contacts(session: Session, swaps: Sequence[ContactSwap]) -> None:
    """Write the new ciphertexts, each only where the old one is still stored (an import
    that changed the field meanwhile wrote a newer value, which stays)."""
    table = _customers()
    for field in CONTACT_FIELDS:
        rows = [
            {"target": swap.customer_id, "old_value": swap.old, "new_value": swap.new}
            for swap in swaps
            if swap.field == field
        ]
        if not rows:
            continue
        column = _column(field)
        await session.execute(
            update(table)
            .where(table.c.id == bindparam("target"), column == bindparam("old_value"))
            .values({column.name: bindparam("new_value")}),
            rows,
        )
