"""The SQL side of erasure: targets through aliases, tombstones, batches, every row gone."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.identity import customer_key
from rasa_personalize.store.erasure import (
    ERASED_TABLES,
    delete_customer_rows,
    delete_interaction_batch,
    erasure_tombstones,
    find_erasure_targets,
    write_tombstones,
)
from rasa_personalize.store.models import (
    ConsentChange,
    ConsentState,
    Customer,
    CustomerAlias,
    CustomerProfile,
    CustomerTag,
    Interaction,
    InteractionInbox,
    OfferExposure,
    PrecomputedRecommendations,
    PropensityScore,
    SegmentAssignment,
)
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.store.totals import fold_totals
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product


def key_of(external_id: str) -> str:
    return customer_key(TEST_SECRET, external_id)


async def seed(session: AsyncSession, external_id: str, *, interactions: int = 3) -> Customer:
    """A customer with a row in every per-customer table, an alias and consent answers."""
    product = await add_product(session, f"sku-{external_id}", "shoes")
    customer = await add_customer(session, external_id, tags=("runner",), segment="loyal")
    await add_interactions(session, customer, product, "view", interactions)
    await fold_totals(session, [customer.id])
    # One interaction stored since: waiting in the inbox.
    await add_interactions(session, customer, product, "cart", 1)
    session.add(
        InteractionInbox(
            event_id=f"{customer.id}-{product.sku}-cart-1.0-0", customer_id=customer.id
        )
    )
    session.add(CustomerProfile(customer_id=customer.id, attributes={"vip": True}, metrics={}))
    session.add(
        PrecomputedRecommendations(customer_id=customer.id, items=[["a", 1.0]], model_version="v")
    )
    session.add(
        PropensityScore(customer_id=customer.id, target="purchase_7d", score=0.5, model_version="p")
    )
    session.add(
        CustomerAlias(
            alias_key=key_of(f"{external_id}-old"), customer_id=customer.id, match="exact"
        )
    )
    for key in (customer.customer_key, key_of(f"{external_id}-old")):
        session.add(
            ConsentState(customer_key=key, purpose="personalization", granted=True, source="chat")
        )
        session.add(
            ConsentChange(
                customer_key=key,
                purpose="personalization",
                decision="granted",
                source="chat",
                recorded_at=NOW - timedelta(days=3),
            )
        )
        session.add(
            OfferExposure(
                customer_key=key,
                offer="bundle",
                shown_on=NOW.date(),
                segment="loyal",
                shown_at=NOW,
            )
        )
    await session.flush()
    return customer


async def count(session: AsyncSession, model: type, **where: object) -> int:
    statement = select(func.count()).select_from(model)
    for name, value in where.items():
        statement = statement.where(getattr(model, name) == value)
    return int(await session.scalar(statement) or 0)


async def test_targets_follow_aliases_both_ways(store: SqlStore) -> None:
    """The survivor's key and an alias's key reach the same customer and the same keys."""
    async with store.sessions.begin() as session:
        customer = await seed(session, "ada")
    keys = (key_of("ada"), key_of("ada-old"))
    async with store.sessions() as session:
        by_key = await find_erasure_targets(session, key_of("ada"))
        by_alias = await find_erasure_targets(session, key_of("ada-old"))
        unknown = await find_erasure_targets(session, key_of("nobody"))
    assert by_key.customer_ids == by_alias.customer_ids == (customer.id,)
    assert by_key.keys == by_alias.keys == tuple(sorted(keys))
    assert by_key.has_rows
    assert by_alias.has_rows
    assert unknown.customer_ids == ()
    assert unknown.keys == (key_of("nobody"),)
    assert not unknown.has_rows


async def test_tombstones_are_kept_unless_renewed(store: SqlStore) -> None:
    """A tombstone is written once; only an erasure that found something moves it."""
    later = NOW + timedelta(days=1)
    async with store.sessions.begin() as session:
        assert await write_tombstones(session, ["k1", "k2"], NOW, renew=False) == 2
    async with store.sessions.begin() as session:
        assert await write_tombstones(session, ["k1", "k3"], later, renew=False) == 1
    async with store.sessions() as session:
        assert await erasure_tombstones(session, ["k1", "k2", "k3", "k4"]) == {
            "k1": NOW,
            "k2": NOW,
            "k3": later,
        }
    async with store.sessions.begin() as session:
        assert await write_tombstones(session, ["k1"], later, renew=True) == 1
    async with store.sessions() as session:
        assert await erasure_tombstones(session, ["k1"]) == {"k1": later}


async def test_interactions_go_in_batches_of_the_limit(store: SqlStore) -> None:
    """Each batch deletes at most ``limit`` rows of these customers, then none are left."""
    async with store.sessions.begin() as session:
        customer = await seed(session, "ada", interactions=7)
        other = await seed(session, "bob", interactions=2)
    deleted = []
    while True:
        async with store.sessions.begin() as session:
            n = await delete_interaction_batch(session, [customer.id], limit=3)
        if n == 0:
            break
        deleted.append(n)
    assert deleted == [3, 3, 2]  # 7 views and the cart in the inbox
    async with store.sessions() as session:
        assert await count(session, Interaction, customer_id=customer.id) == 0
        assert await count(session, Interaction, customer_id=other.id) == 3


async def test_every_row_goes_and_an_erased_marker_stays(store: SqlStore) -> None:
    """Customer, alias, profile, interactions, tags, segments, precomputed and consent of
    both keys go; each key keeps one "erased" history row; another customer is untouched."""
    async with store.sessions.begin() as session:
        customer = await seed(session, "ada")
        other = await seed(session, "bob")
    async with store.sessions.begin() as session:
        targets, counts = await delete_customer_rows(session, key_of("ada-old"), NOW)
    assert targets.customer_ids == (customer.id,)
    assert counts == {
        "customers": 1,
        "customer_aliases": 1,
        "customer_profiles": 1,
        "customer_totals": 1,
        "interactions": 4,
        "customer_tags": 1,
        "segment_assignments": 1,
        "precomputed_recommendations": 1,
        "propensity_scores": 1,
        "consent_states": 2,
        "consent_history": 2,
        "experiment_exposures": 0,
        "offer_exposures": 2,
    }
    assert tuple(counts) == ERASED_TABLES
    async with store.sessions() as session:
        for model in (
            CustomerTag,
            SegmentAssignment,
            PrecomputedRecommendations,
            PropensityScore,
            Interaction,
            InteractionInbox,
        ):
            assert await count(session, model, customer_id=customer.id) == 0
            assert await count(session, model, customer_id=other.id) >= 1
        assert await count(session, Customer) == 1
        assert await count(session, CustomerAlias) == 1
        assert await count(session, ConsentState) == 2  # bob's
        history = (
            await session.execute(
                select(
                    ConsentChange.customer_key,
                    ConsentChange.decision,
                    ConsentChange.purpose,
                    ConsentChange.source,
                    ConsentChange.policy_version,
                ).where(ConsentChange.customer_key.in_([key_of("ada"), key_of("ada-old")]))
            )
        ).all()
        assert sorted(history) == sorted(
            [
                (key_of("ada"), "erased", None, None, None),
                (key_of("ada-old"), "erased", None, None, None),
            ]
        )
        assert set(await erasure_tombstones(session, [key_of("ada"), key_of("ada-old")])) == {
            key_of("ada"),
            key_of("ada-old"),
        }


async def test_deleting_again_finds_nothing_and_adds_no_marker(store: SqlStore) -> None:
    """A second pass deletes nothing and leaves the one "erased" row per key as it was."""
    async with store.sessions.begin() as session:
        await seed(session, "ada")
    async with store.sessions.begin() as session:
        await delete_customer_rows(session, key_of("ada"), NOW)
    async with store.sessions.begin() as session:
        targets, counts = await delete_customer_rows(
            session, key_of("ada"), NOW + timedelta(days=1)
        )
    assert targets.customer_ids == ()
    assert not targets.has_rows
    assert sum(counts.values()) == 0
    async with store.sessions() as session:
        assert await count(session, ConsentChange, customer_key=key_of("ada")) == 1


async def test_a_visitor_with_consent_only_is_erased_too(store: SqlStore) -> None:
    """Consent answers of a key the store never knew as a customer go as well."""
    async with store.sessions.begin() as session:
        session.add(
            ConsentState(customer_key=key_of("v"), purpose="tracking", granted=False, source="api")
        )
    async with store.sessions() as session:
        assert (await find_erasure_targets(session, key_of("v"))).has_rows
    async with store.sessions.begin() as session:
        _, counts = await delete_customer_rows(session, key_of("v"), NOW)
    assert counts["consent_states"] == 1
    async with store.sessions() as session:
        assert await count(session, ConsentChange, customer_key=key_of("v"), decision="erased") == 1
