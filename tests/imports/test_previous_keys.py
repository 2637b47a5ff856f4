"""Imports after the secret changed: customers stored under a former secret's key are
found (moved first), not inserted again, on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from rasa_personalize.identity import customer_key
from rasa_personalize.imports.contacts import BlindIndex
from rasa_personalize.imports.customers import CustomerImportOptions, import_customers
from rasa_personalize.imports.interactions import import_interactions
from rasa_personalize.imports.report import ImportReport
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW
from tests.imports.conftest import CIPHER, write

OLD_SECRET = "former-secret-key-0123456789"
NEW_SECRET = "current-secret-key-0123456789"
CUSTOMERS = """\
customer,name,email,loyalty_tier
c-1,Anna Müller,anna@example.com,gold
c-2,Bob Smith,bob@example.com,silver
"""
EVENTS = """\
event_id,customer,kind,timestamp,category
e-1,c-1,search,2026-05-01T10:00:00Z,shoes
e-2,c-3,search,2026-05-01T10:00:00Z,shoes
"""


async def import_with(
    store: SqlStore, path: Path, secret: str, previous: tuple[str, ...] = ()
) -> ImportReport:
    async with store.sessions.begin() as session:
        return await import_customers(
            session,
            path,
            secret_key=secret,
            cipher=CIPHER,
            options=CustomerImportOptions(fuzzy_threshold=0),
            now=NOW,
            previous_secret_keys=previous,
        )


async def keys_by_id(store: SqlStore) -> dict[int, str]:
    async with store.sessions() as session:
        return dict((await session.execute(select(Customer.id, Customer.customer_key))).all())


async def test_customers_import_finds_customers_under_the_former_secret(
    store: SqlStore, tmp_path: Path
) -> None:
    """The same file under the new secret inserts nobody: both customers keep their rows
    (ids) under their new keys."""
    path = write(tmp_path, "customers.csv", CUSTOMERS)
    await import_with(store, path, OLD_SECRET)
    before = await keys_by_id(store)

    report = await import_with(store, path, NEW_SECRET, (OLD_SECRET,))

    assert report.inserted == 0
    after = await keys_by_id(store)
    assert after.keys() == before.keys()
    assert sorted(after.values()) == sorted(
        customer_key(NEW_SECRET, external_id) for external_id in ("c-1", "c-2")
    )
    # Touched by the import, so re-indexed under the new secret: duplicates match again.
    async with store.sessions() as session:
        indexes = set((await session.scalars(select(Customer.email_index))).all())
    assert indexes == {
        BlindIndex(NEW_SECRET)("email", email) for email in ("anna@example.com", "bob@example.com")
    }


async def test_interactions_import_counts_moved_customers_as_known(
    store: SqlStore, tmp_path: Path
) -> None:
    """c-1 (stored under the former secret) gets the event and is not counted as created;
    c-3 is new."""
    await import_with(store, write(tmp_path, "customers.csv", CUSTOMERS), OLD_SECRET)
    report = await import_interactions(
        store.sessions,
        write(tmp_path, "events.csv", EVENTS),
        secret_key=NEW_SECRET,
        now=NOW,
        previous_secret_keys=(OLD_SECRET,),
    )
    assert (report.inserted, report.customers_created) == (2, 1)
    async with store.sessions() as session:
        owner = await session.scalar(
            select(Customer.customer_key)
            .join(Interaction, Interaction.customer_id == Customer.id)
            .where(Interaction.event_id == "e-1")
        )
    assert owner == customer_key(NEW_SECRET, "c-1")
