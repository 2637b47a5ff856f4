"""Helpers of the import tests: files written per test, a fixed cipher, table dumps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from rasa_personalize.imports.contacts import ContactCipher
from rasa_personalize.imports.customers import CustomerImportOptions, import_customers
from rasa_personalize.imports.report import ImportReport
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.store.models import (
    Customer,
    CustomerAlias,
    CustomerProfile,
    CustomerTag,
    Interaction,
    PrecomputedRecommendations,
    SegmentAssignment,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW

CIPHER = ContactCipher({"test-key": bytes(range(32))}, "test-key")

# A CRM export as they come: odd header spellings, semicolons, stray spaces, mixed
# case, three date styles, a repeated id, bad cells, and two people entered twice.
MESSY_CUSTOMERS = """\
 Customer ID ;Name;E-Mail;Phone;Age;Gender;Country;City;Tier;Signup Date
c-001; ANNA   MÜLLER ;Anna.Mueller@Example.com ;+49 30 901820;34;F;germany;berlin;Gold;2024-03-01
c-002;Bob Smith;bob@example.com;(415) 555-2671;41;m;US;new york;silver;03/04/2024
c-003;Robert Smith;BOB@example.com;;;male;us;;;1711929600
c-004;Anna Muller;anna.muller@example.com;+49 30 901821;;;DE;Berlin;;01.02.2024
c-005;Carla Diaz;not-an-email;;;;;;;
c-006;Dan Brown;dan@example.org;;200;;;;;
c-001;;;;35;;;;;
c-007;Eve Adams;eve@example.net;+1 415 555 0199;29;woman;GB;London;platinum;2023-12-31T10:00:00Z
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    """A file of the test's own."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def import_file(
    store: SqlStore, path: Path, *, tag_rules: TagRules | None = None, **options: Any
) -> ImportReport:
    """One customers import in its own committed transaction."""
    async with store.sessions.begin() as session:
        return await import_customers(
            session,
            path,
            secret_key=TEST_SECRET,
            cipher=CIPHER,
            options=CustomerImportOptions(**options),
            now=NOW,
            tag_rules=tag_rules,
        )


async def table_contents(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables an import may touch, in a stable order."""
    contents: dict[str, list[tuple[Any, ...]]] = {}
    async with store.sessions() as session:
        for model in (
            Customer,
            CustomerAlias,
            CustomerProfile,
            CustomerTag,
            Interaction,
            SegmentAssignment,
            PrecomputedRecommendations,
        ):
            table = model.__table__
            rows = await session.execute(select(table).order_by(*table.primary_key.columns))
            contents[model.__tablename__] = [tuple(row) for row in rows]
    return contents


async def stored_customers(store: SqlStore) -> dict[int, dict[str, Any]]:
    """Customers by id with their contacts decrypted."""
    async with store.sessions() as session:
        rows = (await session.execute(select(Customer).order_by(Customer.id))).scalars().all()
        return {
            row.id: {
                "key": row.customer_key,
                "name": CIPHER.decrypt("name", row.name_encrypted) if row.name_encrypted else None,
                "email": CIPHER.decrypt("email", row.email_encrypted)
                if row.email_encrypted
                else None,
                "phone": CIPHER.decrypt("phone", row.phone_encrypted)
                if row.phone_encrypted
                else None,
                "age": row.age,
                "gender": row.gender,
                "country": row.country,
                "city": row.city,
                "loyalty_tier": row.loyalty_tier,
                "created_at": row.created_at.date().isoformat(),
            }
            for row in rows
        }


async def aliases(store: SqlStore) -> dict[str, tuple[int, str]]:
    """alias key -> (customer id, match)."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(CustomerAlias.alias_key, CustomerAlias.customer_id, CustomerAlias.match)
        )
        return {key: (customer_id, match) for key, customer_id, match in rows}
