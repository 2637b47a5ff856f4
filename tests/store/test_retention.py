"""The SQL side of retention: old interactions in batches, emptied profiles reset."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from rasa_personalize.store.audit import append_audit_entry
from rasa_personalize.store.models import CustomerProfile, Interaction
from rasa_personalize.store.records import ProfileMetrics
from rasa_personalize.store.retention import (
    count_audit_entries_before,
    count_interactions_before,
    delete_interactions_before,
    reset_emptied_metrics,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer, add_interactions, add_product

CUTOFF = NOW - timedelta(days=10)


async def test_old_interactions_go_in_batches_with_their_customers(store: SqlStore) -> None:
    """Only interactions before the cutoff go, at most ``limit`` per call, and each call
    names the customers it touched."""
    async with store.sessions.begin() as session:
        product = await add_product(session, "SKU-1", "shoes")
        ada = await add_customer(session, "ada")
        bob = await add_customer(session, "bob")
        # ada: days 1..4 (recent); days 20..22 (old). bob: days 30, 31 (old).
        await add_interactions(session, ada, product, "view", 4, days_ago=1)
        await add_interactions(session, ada, product, "view", 3, days_ago=20)
        await add_interactions(session, bob, product, "view", 2, days_ago=30)
    async with store.sessions() as session:
        assert await count_interactions_before(session, CUTOFF) == 5
    batches = []
    touched: set[int] = set()
    while True:
        async with store.sessions.begin() as session:
            count, customers = await delete_interactions_before(session, CUTOFF, limit=2)
        if count == 0:
            assert customers == frozenset()
            break
        batches.append(count)
        touched |= customers
    assert batches == [2, 2, 1]
    assert touched == {ada.id, bob.id}
    async with store.sessions() as session:
        assert await count_interactions_before(session, CUTOFF) == 0
        left = await session.scalar(select(func.count()).select_from(Interaction))
    assert left == 4


async def test_profiles_left_without_interactions_are_emptied(store: SqlStore) -> None:
    """Customers with no customer interaction left get empty metrics and a new version;
    the others, and empty profiles already, are left alone."""
    old_metrics = ProfileMetrics(interaction_count=3, view_count=3).to_document()
    async with store.sessions.begin() as session:
        product = await add_product(session, "SKU-1", "shoes")
        gone = await add_customer(session, "gone")
        kept = await add_customer(session, "kept")
        await add_interactions(session, kept, product, "view", 1)
        await add_interactions(session, gone, product, "shown", 1)  # the assistant's only
        for customer in (gone, kept):
            session.add(CustomerProfile(customer_id=customer.id, metrics=old_metrics, version=4))
    async with store.sessions.begin() as session:
        assert await reset_emptied_metrics(session, [gone.id, kept.id], NOW) == 1
    async with store.sessions.begin() as session:
        assert await reset_emptied_metrics(session, [gone.id, kept.id], NOW) == 0
    async with store.sessions() as session:
        versions = select(CustomerProfile.customer_id, CustomerProfile.version)
        rows = {int(row[0]): int(row[1]) for row in (await session.execute(versions)).all()}
        gone_metrics = await session.scalar(
            select(CustomerProfile.metrics).where(CustomerProfile.customer_id == gone.id)
        )
    assert rows == {gone.id: 5, kept.id: 4}
    assert gone_metrics == ProfileMetrics().to_document()


async def test_old_audit_rows_are_counted(store: SqlStore) -> None:
    """Audit rows before the cutoff are counted (retention's dry run)."""
    async with store.sessions.begin() as session:
        for days in (1, 11, 400):
            await append_audit_entry(
                session,
                occurred_at=NOW - timedelta(days=days),
                actor="cli",
                action="profile.read",
                outcome="ok",
            )
    async with store.sessions() as session:
        assert await count_audit_entries_before(session, CUTOFF) == 2
