"""Interaction imports keep out customers without tracking consent, and erased history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

from rasa_personalize.identity import customer_key
from rasa_personalize.imports.interactions import import_interactions
from rasa_personalize.imports.report import counts_of
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import ErasureTombstone, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_product
from tests.imports.conftest import write

EVENTS = """\
event_id,customer,product,kind,timestamp
e1,u-yes,SKU-1,view,2026-05-01T10:00:00Z
e2,u-no,SKU-1,view,2026-05-01T10:00:00Z
e3,u-silent,SKU-1,view,2026-05-01T10:00:00Z
e4,u-gone,SKU-1,view,2026-05-01T10:00:00Z
e5,u-gone,SKU-1,view,2026-05-20T10:00:00Z
e6,u-no,SKU-1,view,someday
"""


async def seed(store: SqlStore) -> None:
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        for customer, granted in (("u-yes", True), ("u-no", False)):
            await set_consent(
                session, customer_key(TEST_SECRET, customer), {"tracking": granted},
                source="import", policy_version=None, now=NOW - timedelta(days=60),
            )  # fmt: skip
        await session.execute(
            insert(ErasureTombstone).values(
                customer_key=customer_key(TEST_SECRET, "u-gone"),
                erased_at=NOW - timedelta(days=20),  # 2026-05-12
            )
        )


async def stored(store: SqlStore) -> list[str]:
    async with store.sessions() as session:
        return sorted((await session.execute(select(Interaction.event_id))).scalars().all())


async def test_import_counts_suppressed_events(store: SqlStore, tmp_path: Path) -> None:
    """Denied and pre-erasure rows are suppressed; the bad row is still a rejection."""
    await seed(store)
    report = await import_interactions(
        store.sessions, write(tmp_path, "events.csv", EVENTS), secret_key=TEST_SECRET, now=NOW
    )
    assert (report.read, report.inserted, report.suppressed, report.rejected) == (6, 3, 2, 1)
    # u-yes, u-silent and u-gone (its event after the erasure); never u-no.
    assert report.customers_created == 3
    assert await stored(store) == ["e1", "e3", "e5"]
    assert ("suppressed (no tracking consent, or erased)", 2) in counts_of(report)
    assert report.to_document()["suppressed"] == 2


async def test_opt_in_import_keeps_only_granted_customers(
    sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """Under an opt-in default only the customer who said yes is imported."""
    await seed(sqlite_store)
    report = await import_interactions(
        sqlite_store.sessions, write(tmp_path, "events.csv", EVENTS), secret_key=TEST_SECRET,
        now=NOW, consent_default="denied",
    )  # fmt: skip
    assert (report.inserted, report.suppressed) == (1, 4)
    assert await stored(sqlite_store) == ["e1"]
