"""Profile writes on SQLite and PostgreSQL: metrics refreshes and profile changes."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from rasa_personalize.identity import customer_key
from rasa_personalize.store.customers import add_aliases
from rasa_personalize.store.models import Customer, CustomerProfile, Interaction
from rasa_personalize.store.profiles import (
    ProfileChange,
    RefreshedProfiles,
    apply_profile_change,
    refresh_profile_metrics,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product

ADA = customer_key(TEST_SECRET, "ada")


async def profiles(store: SqlStore) -> dict[int, CustomerProfile]:
    async with store.sessions() as session:
        return {p.customer_id: p for p in (await session.scalars(select(CustomerProfile)))}


async def test_refresh_touches_only_the_given_customers(store: SqlStore) -> None:
    """Customers outside the subset keep their profiles; the keys come back with the count."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes")
        ada = await add_customer(session, "ada")
        bob = await add_customer(session, "bob")
        await add_interactions(session, ada, shoes, "view", 1)
        await add_interactions(session, bob, shoes, "view", 1)
        mine, other = ada.id, bob.id
    async with store.sessions.begin() as session:
        first = await refresh_profile_metrics(session, [mine, other], now=NOW)
    assert first == RefreshedProfiles(2, frozenset({ADA, customer_key(TEST_SECRET, "bob")}))
    async with store.sessions.begin() as session:
        await session.execute(update(Interaction).values(kind="cart"))
    async with store.sessions.begin() as session:
        # An id nobody has is skipped.
        again = await refresh_profile_metrics(session, [mine, mine, 999_999], now=NOW)
    assert again == RefreshedProfiles(1, frozenset({ADA}))
    stored = await profiles(store)
    assert (stored[mine].metrics["view_count"], stored[mine].version) == (0, 2)
    assert (stored[other].metrics["view_count"], stored[other].version) == (1, 1)


async def test_unchanged_metrics_write_nothing(store: SqlStore) -> None:
    """A refresh that finds the same metrics counts no profile and keeps the version."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes")
        ada = await add_customer(session, "ada")
        await add_interactions(session, ada, shoes, "purchase", 2)
        ada_id = ada.id
    for expected in (1, 0):
        async with store.sessions.begin() as session:
            refreshed = await refresh_profile_metrics(session, [ada_id], now=NOW)
        assert refreshed.written == expected
    assert (await profiles(store))[ada_id].version == 1


async def test_change_creates_a_first_seen_customer(store: SqlStore) -> None:
    """An unknown key becomes a customer with the change applied and a first profile."""
    async with store.sessions.begin() as session:
        created = await apply_profile_change(
            session,
            ADA,
            ProfileChange("gold", {"age": 40, "city": "Berlin"}, {"newsletter": True}),
            now=NOW,
        )
    assert created is True
    async with store.sessions() as session:
        row = (await session.scalars(select(Customer))).one()
    assert (row.customer_key, row.loyalty_tier, row.age, row.city) == (ADA, "gold", 40, "Berlin")
    assert row.created_at == NOW
    profile = (await profiles(store))[row.id]
    assert (profile.attributes, profile.metrics, profile.version) == ({"newsletter": True}, {}, 1)


async def test_change_of_a_known_customer_bumps_the_version(store: SqlStore) -> None:
    """Tier or demographics alone bump the version; None clears a demographic; an empty
    change leaves everything as it was."""
    async with store.sessions.begin() as session:
        await apply_profile_change(session, ADA, ProfileChange(demographics={"age": 40}), NOW)
    async with store.sessions.begin() as session:
        created = await apply_profile_change(
            session, ADA, ProfileChange("silver", {"age": None}), NOW
        )
        await apply_profile_change(session, ADA, ProfileChange(), NOW)
    assert created is False
    async with store.sessions() as session:
        row = (await session.scalars(select(Customer))).one()
    assert (row.loyalty_tier, row.age) == ("silver", None)
    profile = (await profiles(store))[row.id]
    assert (profile.attributes, profile.version) == ({}, 2)


async def test_change_under_a_merged_key_reaches_the_survivor(store: SqlStore) -> None:
    """An alias key changes the customer it was merged into; no customer is created."""
    async with store.sessions.begin() as session:
        survivor = await add_customer(session, "bob")
        survivor_id = survivor.id
        await add_aliases(session, [(ADA, survivor_id, "exact")], NOW)
    async with store.sessions.begin() as session:
        created = await apply_profile_change(session, ADA, ProfileChange("platinum"), NOW)
        tier = await session.scalar(select(Customer.loyalty_tier).where(Customer.id == survivor_id))
        count = await session.scalar(select(func.count()).select_from(Customer))
    assert (created, tier, count) == (False, "platinum", 1)


def test_change_refuses_columns_that_are_not_demographics() -> None:
    """Only age, gender, country and city may be set through ``demographics``."""
    with pytest.raises(ValueError, match="customer_key"):
        ProfileChange(demographics={"customer_key": "x"})
