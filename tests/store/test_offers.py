"""Offer exposures in the store: written once per customer, offer and day by the chat
writer, and counted with what followed them (last offer shown takes the credit, within the
window, once the window is over)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from rasa_personalize.identity import customer_key
from rasa_personalize.store.catalogue import ChatWrite
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import Customer, CustomerAlias, OfferExposure
from rasa_personalize.store.offers import OfferCount, offer_outcomes
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product

WEEK = timedelta(days=7)


def shown(key: str, offer: str, segment: str, days_ago: float) -> OfferExposure:
    at = NOW - timedelta(days=days_ago)
    return OfferExposure(
        customer_key=key, offer=offer, shown_on=at.date(), segment=segment, shown_at=at
    )


async def seed(store: SqlStore) -> None:
    """Seven customers whose outcomes are worked out in the test's docstring."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes")
        people = {name: await add_customer(session, name) for name in
                  ("ann", "ben", "cat", "dan", "fay", "gus")}  # fmt: skip
        key = {name: customer.customer_key for name, customer in people.items()}
        cat_old = customer_key(TEST_SECRET, "cat-old")
        session.add(CustomerAlias(alias_key=cat_old, customer_id=people["cat"].id, match="exact"))
        session.add_all(
            [
                shown(key["ann"], "discount_10", "at_risk", 20),
                shown(key["ann"], "bundle", "at_risk", 18),
                shown(key["ben"], "discount_10", "at_risk", 20),
                shown(cat_old, "discount_10", "browser", 15),
                shown(key["dan"], "bundle", "at_risk", 2),
                shown(customer_key(TEST_SECRET, "eve-visitor"), "free_shipping", "new_visitor", 9),
                shown(key["fay"], "bundle", "at_risk", 12),
                shown(key["gus"], "discount_10", "at_risk", 30),
                shown(key["gus"], "discount_10", "at_risk", 29),
            ]
        )
        await add_interactions(session, people["ann"], shoes, "purchase", 1, days_ago=17)
        await add_interactions(session, people["ben"], shoes, "purchase", 1, days_ago=10)
        await add_interactions(session, people["ben"], shoes, "purchase", 1, days_ago=25)
        await add_interactions(session, people["cat"], shoes, "purchase", 1, days_ago=14)
        await add_interactions(session, people["dan"], shoes, "purchase", 1, days_ago=1)
        await add_interactions(session, people["fay"], shoes, "view", 1, days_ago=11)
        await add_interactions(session, people["fay"], shoes, "cart", 1, days_ago=11)
        await add_interactions(session, people["gus"], shoes, "purchase", 1, days_ago=28)


@pytest.mark.parametrize("page_size", [2_000, 2])  # one page, and pages of two customers
async def test_purchases_are_credited_to_the_last_offer_within_the_window(
    store: SqlStore, page_size: int
) -> None:
    """ann: bundle shown after the discount, then a purchase -> bundle accepted only;
    ben: bought 10 days after (too late) and before -> not accepted; cat: shown under a
    merged key, bought next day -> accepted; dan: shown 2 days ago -> pending; eve: a
    visitor -> not accepted; fay: only viewed and carted -> not a purchase; gus: shown
    twice, bought after the second -> the second accepted."""
    await seed(store)
    async with store.sessions() as session:
        outcomes = await offer_outcomes(
            session, goal="purchase", window=WEEK, now=NOW, page_size=page_size
        )
    assert outcomes.counts == (
        OfferCount("bundle", "at_risk", 2, 1),
        OfferCount("discount_10", "at_risk", 4, 1),
        OfferCount("discount_10", "browser", 1, 1),
        OfferCount("free_shipping", "new_visitor", 1, 0),
    )
    assert (outcomes.pending, outcomes.customers) == (1, 7)


async def test_a_cart_goal_counts_carts_only(store: SqlStore) -> None:
    await seed(store)
    async with store.sessions() as session:
        outcomes = await offer_outcomes(session, goal="cart", window=WEEK, now=NOW)
    accepted = {(c.offer, c.segment): c.accepted for c in outcomes.counts}
    assert accepted == {
        ("bundle", "at_risk"): 1,  # fay's cart
        ("discount_10", "at_risk"): 0,
        ("discount_10", "browser"): 0,
        ("free_shipping", "new_visitor"): 0,
    }


async def test_a_longer_window_counts_later_purchases_and_waits_longer(store: SqlStore) -> None:
    """With 11 days, ben's purchase 10 days after counts; fay (12 days ago) and eve (9 days
    ago) are pending now, and so is dan."""
    await seed(store)
    async with store.sessions() as session:
        outcomes = await offer_outcomes(session, goal="purchase", window=timedelta(11), now=NOW)
    assert {(c.offer, c.segment): (c.exposures, c.accepted) for c in outcomes.counts} == {
        ("bundle", "at_risk"): (2, 1),
        ("discount_10", "at_risk"): (4, 2),
        ("discount_10", "browser"): (1, 1),
    }
    assert outcomes.pending == 2


async def test_an_empty_store_has_nothing_to_count(sqlite_store: SqlStore) -> None:
    async with sqlite_store.sessions() as session:
        outcomes = await offer_outcomes(session, goal="purchase", window=WEEK, now=NOW)
    assert (outcomes.counts, outcomes.pending, outcomes.customers) == ((), 0, 0)


async def test_bad_arguments_are_refused(sqlite_store: SqlStore) -> None:
    async with sqlite_store.sessions() as session:
        with pytest.raises(ValueError, match="unknown goal 'view'; it is one of purchase, cart"):
            await offer_outcomes(session, goal="view", window=WEEK, now=NOW)
        with pytest.raises(ValueError, match="must be positive"):
            await offer_outcomes(session, goal="cart", window=timedelta(0), now=NOW)


async def stored_offers(store: SqlStore) -> list[tuple[str, str, date, str, object]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(
                OfferExposure.customer_key,
                OfferExposure.offer,
                OfferExposure.shown_on,
                OfferExposure.segment,
                OfferExposure.shown_at,
            ).order_by(OfferExposure.shown_at, OfferExposure.offer)
        )
        return [tuple(row) for row in rows.all()]  # type: ignore[misc]


async def test_the_chat_writer_stores_an_offer_once_per_day(store: SqlStore) -> None:
    """Two showings on one day keep the first; the next day is a new row; a customer
    without tracking consent leaves none; showings alone create no customer."""
    ann = customer_key(TEST_SECRET, "ann")
    quiet = customer_key(TEST_SECRET, "quiet")
    async with store.sessions.begin() as session:
        await set_consent(
            session, quiet, {"tracking": False}, source="cli", policy_version=None, now=NOW
        )
    later = NOW + timedelta(hours=2)
    next_day = NOW + timedelta(days=1)
    outcome = await store.store_chat_batch(
        [
            ChatWrite(ann, (), later, offers_shown=(("bundle", "at_risk"),)),
            ChatWrite(ann, (), NOW, offers_shown=(("bundle", "at_risk"),)),
            ChatWrite(quiet, (), NOW, offers_shown=(("bundle", "browser"),)),
        ],
        True,
    )
    assert outcome == [set(), set(), set()]
    await store.store_chat_batch(
        [
            ChatWrite(ann, (), later + timedelta(minutes=1), offers_shown=(("bundle", "loyal"),)),
            ChatWrite(ann, (), next_day, offers_shown=(("bundle", "at_risk"),)),
        ],
        True,
    )
    assert await stored_offers(store) == [
        (ann, "bundle", NOW.date(), "at_risk", NOW),
        (ann, "bundle", next_day.date(), "at_risk", next_day),
    ]
    async with store.sessions() as session:
        assert (await session.execute(select(Customer.id))).all() == []
