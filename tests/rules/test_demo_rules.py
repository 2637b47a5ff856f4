"""The demo's personalization.yml: valid, today's offers, and stable offers for the personas."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import product
from pathlib import Path

import pytest

from rasa_personalize.context import ConversationContext
from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.identity import customer_key
from rasa_personalize.rules.facts import Facts, facts_from
from rasa_personalize.rules.loader import check_file, load_rules
from rasa_personalize.rules.ruleset import Decision, RuleSet, evaluate
from rasa_personalize.segments.archetypes import archetype_for
from rasa_personalize.slots import CUSTOMER_SEGMENTS
from rasa_personalize.store.records import CustomerSnapshot
from rasa_personalize.store.repository import load_customer_snapshot, rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.rules.expected import SEGMENT_OFFERS

DEMO_RULES = Path(__file__).parent.parent.parent / "personalization.yml"
NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)  # a Monday
SMALL = DemoShopConfig(customers=120, products=40, interactions=3_000, seed=7)

# What a demo must show for each persona, at any hour, on any device and channel.
PERSONA_OFFERS = {
    "demo-bargain": ("discount", 15),
    "demo-loyal": ("exclusive_access", 0),
    "demo-lapsed": ("discount", 10),
    "demo-new": ("none", 0),
    "someone-unknown": ("none", 0),
}


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules(DEMO_RULES)


def test_the_demo_file_is_valid() -> None:
    """personalization.yml loads with no problem at all."""
    assert check_file(DEMO_RULES) == []


@pytest.mark.parametrize("segment", CUSTOMER_SEGMENTS)
def test_ordinary_moments_give_todays_offer_per_segment(rules: RuleSet, segment: str) -> None:
    """A weekday afternoon on a desktop: each segment gets the offer it had before rules existed."""
    facts = Facts(
        segment=segment,
        loyalty_tier="gold",
        time_of_day="afternoon",
        weekday="tuesday",
        hour=14,
        device="desktop",
        channel="web",
        days_since_last_purchase=10.0,
    )
    decision = evaluate(rules, facts)
    assert (decision.offer_type, decision.discount_pct) == SEGMENT_OFFERS[segment]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # Bargain hunters: 15 %, cheap items first, capped at 60.
        (
            Facts(segment="price_sensitive"),
            Decision("discount", 15, 60, "cheapest_first", "bargain hunters"),
        ),
        # Loyal but silver: exclusive access without the premium strategy.
        (
            Facts(segment="loyal", loyalty_tier="silver"),
            Decision("exclusive_access", 0, None, "default", "other loyal customers"),
        ),
        # A regular who has gone quiet for two months gets a small nudge.
        (
            Facts(segment="frequent_buyer", days_since_last_purchase=60.0),
            Decision("discount", 5, None, "default", "frequent buyers cooling off"),
        ),
        # Frequent buyers at the weekend: bundles of new arrivals.
        (
            Facts(segment="frequent_buyer", weekday="sunday", is_weekend=True),
            Decision("bundle", 0, None, "new_arrivals", "weekend bundles"),
        ),
        # Browsers on a phone in the evening: cheaper picks first.
        (
            Facts(segment="browser", device="mobile", time_of_day="evening"),
            Decision("free_shipping", 0, 80, "cheapest_first", "evening browsing on a phone"),
        ),
        # Running fans browsing at the weekend on the web see new running gear.
        (
            Facts(
                segment="browser", is_weekend=True, tags=("interested_in_running",), channel="web"
            ),
            Decision("free_shipping", 0, None, "new_arrivals", "weekend runners"),
        ),
        # ... by affinity too, not only by tag.
        (
            Facts(segment="browser", is_weekend=True, category_affinity={"running": 0.5}),
            Decision("free_shipping", 0, None, "new_arrivals", "weekend runners"),
        ),
        # ... but not in the app, which runs its own campaign.
        (
            Facts(
                segment="browser", is_weekend=True, tags=("interested_in_running",), channel="app"
            ),
            Decision("free_shipping", 0, None, "default", "browsers"),
        ),
        # Staff never get offers, whatever their segment (priority 100).
        (
            Facts(segment="price_sensitive", attributes={"staff": True}),
            Decision("none", 0, None, "default", "no offers for staff accounts"),
        ),
        # New visitors: no offer, new arrivals.
        (Facts(), Decision("none", 0, None, "new_arrivals", "new visitors")),
    ],
)
def test_context_rules(rules: RuleSet, facts: Facts, expected: Decision) -> None:
    """The demo's context rules do what their descriptions say."""
    assert evaluate(rules, facts) == expected


async def _persona_snapshots(store: SqlStore) -> dict[str, CustomerSnapshot | None]:
    async with store.sessions.begin() as session:
        await seed_demo_shop(session, SMALL, secret_key=TEST_SECRET, now=NOW)
        await rebuild_profile_metrics(session, now=NOW)
    async with store.sessions() as session:
        return {
            name: await load_customer_snapshot(session, customer_key(TEST_SECRET, name))
            for name in PERSONA_OFFERS
        }


def _segment(snapshot: CustomerSnapshot | None) -> str:
    # As the engine decides today: a stored assignment, else the archetype rule.
    if snapshot is None:
        return "new_visitor"
    stored = snapshot.segment.segment if snapshot.segment else None
    if stored in CUSTOMER_SEGMENTS:
        return stored
    return archetype_for(snapshot.metrics, snapshot.loyalty_tier, NOW)


async def test_demo_personas_get_their_offer_at_any_moment(
    sqlite_store: SqlStore, rules: RuleSet
) -> None:
    """On the seeded demo shop, every hour of a week, on any device and channel."""
    snapshots = await _persona_snapshots(sqlite_store)
    assert snapshots["someone-unknown"] is None
    contexts = [
        ConversationContext(channel=channel, device=device, utc_offset_minutes=0)
        for channel, device in product((None, "web", "app"), (None, "mobile", "desktop"))
    ]
    for name, expected in PERSONA_OFFERS.items():
        snapshot, segment = snapshots[name], _segment(snapshots[name])
        seen = {
            tuple(
                evaluate(rules, facts_from(snapshot, segment, context, moment))
                .slot_values()
                .values()
            )[:2]  # the offer and its discount
            for context in contexts
            for moment in (NOW + timedelta(hours=hours) for hours in range(7 * 24))
        }
        assert seen == {expected}, name
