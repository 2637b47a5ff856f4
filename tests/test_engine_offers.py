"""Next-best offer through the service and the store: the best candidate by expected value,
the fallback with too little data, consent respected, offers shown recorded once a day,
a retrained model picked up without a restart."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import ConversationRef, PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.offers.artifacts import save_offer_model
from rasa_personalize.offers.model import OfferModel, OfferParams
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import OfferExposure
from rasa_personalize.store.offers import OfferCount
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer

RULES = """\
rules:
  - name: win back
    when: {segment: at_risk}
    then:
      offer_type: best
      offers:
        - {offer_type: discount, discount_pct: 10, value: 6}
        - {offer_type: free_shipping, value: 4}
        - {offer_type: bundle, value: 5}
  - name: loyal
    when: {segment: loyal}
    then: {offer_type: exclusive_access}
"""
UTC_NOON = ConversationContext(utc_offset_minutes=0)


def chat(customer: str, turn: int = 0) -> PersonalizationRequest:
    return PersonalizationRequest(
        CustomerIdentity(customer, "message_metadata", verified=True),
        UTC_NOON,
        ConversationRef(f"conversation-of-{customer}", f"message-{turn}"),
    )


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service_for(
    store: SqlStore, url: str, tmp_path: Path, clock: Clock, rules: str = RULES, **settings: Any
) -> PersonalizationService:
    path = tmp_path / "personalization.yml"
    path.write_text(rules, encoding="utf-8")
    return PersonalizationService(
        make_settings(url, rules_path=path, model_dir=tmp_path / "models", **settings),
        store,
        clock=clock,
        rules=RuleBook(path),
    )


def train(tmp_path: Path, counts: dict[str, tuple[int, int]], **params: Any) -> OfferModel:
    """A saved model with counts in segment at_risk: label -> (exposures, accepted)."""
    cells = [OfferCount(label, "at_risk", n, k) for label, (n, k) in counts.items()]
    model = OfferModel.fit(cells, OfferParams(**params), NOW - timedelta(hours=len(counts)))
    return save_offer_model(model, tmp_path / "models")


async def customers(store: SqlStore, *names: str, segment: str = "at_risk") -> None:
    async with store.sessions.begin() as session:
        for name in names:
            await add_customer(session, name, segment=segment)


async def recorded(store: SqlStore) -> list[tuple[str, str, str, datetime]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(
                OfferExposure.customer_key,
                OfferExposure.offer,
                OfferExposure.segment,
                OfferExposure.shown_at,
            ).order_by(OfferExposure.shown_at, OfferExposure.customer_key)
        )
        return [(str(k), str(o), str(s), t) for k, o, s, t in rows.all()]


def key(name: str) -> str:
    return customer_key(TEST_SECRET, name)


async def test_without_a_model_the_first_offer_is_shown_and_recorded_once_a_day(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    await customers(sqlite_store, "ann")
    service = service_for(sqlite_store, sqlite_url, tmp_path, clock)
    for turn in range(3):
        plan = await service.personalize(chat("ann", turn))
        assert (plan["offer_type"], plan["discount_pct"]) == ("discount", 10)
    clock.now = NOW + timedelta(days=1)
    await service.personalize(chat("ann", 3))
    await service.drain()
    assert await recorded(sqlite_store) == [
        (key("ann"), "discount_10", "at_risk", NOW),
        (key("ann"), "discount_10", "at_risk", NOW + timedelta(days=1)),
    ]
    await service.close()


async def test_the_candidate_with_the_highest_expected_value_is_shown(
    store: SqlStore, database_url: str, tmp_path: Path, clock: Clock
) -> None:
    """With a prior worth little, p is about k/n: 0.10 x 6 = 0.6, 0.20 x 4 = 0.8,
    0.18 x 5 = 0.9 -> bundle; the offer recorded is the one shown."""
    train(
        tmp_path,
        {"discount_10": (100, 10), "free_shipping": (100, 20), "bundle": (100, 18)},
        prior_strength=0.001,
    )
    await customers(store, "ann")
    service = service_for(store, database_url, tmp_path, clock)
    plan = await service.personalize(chat("ann"))
    assert (plan["offer_type"], plan["discount_pct"]) == ("bundle", 0)
    await service.drain()
    assert await recorded(store) == [(key("ann"), "bundle", "at_risk", NOW)]
    await service.close()


async def test_too_little_data_for_a_candidate_falls_back_to_the_first(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Bundle would win, but free shipping has 29 exposures of the 30 needed."""
    train(
        tmp_path,
        {"discount_10": (100, 10), "free_shipping": (29, 6), "bundle": (100, 50)},
        min_exposures=30,
    )
    await customers(sqlite_store, "ann")
    service = service_for(sqlite_store, sqlite_url, tmp_path, clock)
    plan = await service.personalize(chat("ann"))
    assert (plan["offer_type"], plan["discount_pct"]) == ("discount", 10)
    await service.close()


async def test_no_offer_and_no_record_without_marketing_consent(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    train(tmp_path, {"discount_10": (100, 10), "free_shipping": (100, 20), "bundle": (100, 50)})
    await customers(sqlite_store, "ann", "quiet")
    async with sqlite_store.sessions.begin() as session:
        await set_consent(
            session, key("ann"), {"marketing": False}, source="cli", policy_version=None, now=NOW
        )
        await set_consent(
            session, key("quiet"), {"tracking": False}, source="cli", policy_version=None, now=NOW
        )
    service = service_for(sqlite_store, sqlite_url, tmp_path, clock)
    plan = await service.personalize(chat("ann"))
    assert (plan["offer_type"], plan["discount_pct"]) == ("none", 0)
    # Without tracking consent the offer is made, but not recorded.
    untracked = await service.personalize(chat("quiet"))
    assert untracked["offer_type"] == "bundle"
    await service.drain()
    assert await recorded(sqlite_store) == []
    await service.close()


async def test_nothing_is_recorded_while_no_rule_chooses_offers(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Offers shown are kept only while a `best` rule needs them."""
    await customers(sqlite_store, "lea", segment="loyal")
    rules = "rules:\n  - {name: all, when: {segment: loyal}, then: {offer_type: bundle}}\n"
    service = service_for(sqlite_store, sqlite_url, tmp_path, clock, rules=rules)
    assert (await service.personalize(chat("lea")))["offer_type"] == "bundle"
    await service.drain()
    assert await recorded(sqlite_store) == []
    await service.close()


async def test_offers_of_other_rules_are_recorded_too(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """While a rule chooses, every offer shown is data: a loyal customer's too."""
    await customers(sqlite_store, "lea", segment="loyal")
    service = service_for(sqlite_store, sqlite_url, tmp_path, clock)
    assert (await service.personalize(chat("lea")))["offer_type"] == "exclusive_access"
    await service.drain()
    assert await recorded(sqlite_store) == [(key("lea"), "exclusive_access", "loyal", NOW)]
    await service.close()


async def test_a_retrained_model_is_used_at_the_next_model_check(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    train(tmp_path, {"discount_10": (100, 10), "free_shipping": (100, 20), "bundle": (100, 50)})
    await customers(sqlite_store, "ann")
    service = service_for(sqlite_store, sqlite_url, tmp_path, clock, model_check_every_s=1e-6)
    assert (await service.personalize(chat("ann")))["offer_type"] == "bundle"
    # Free shipping now sells best: 0.5 x 4 = 2 > 0.1 x 5.
    train(tmp_path, {"discount_10": (100, 10), "free_shipping": (100, 50), "bundle": (100, 10)})
    assert (await service.personalize(chat("ann", 1)))["offer_type"] == "free_shipping"
    await service.close()


async def test_explored_customers_see_every_candidate_and_keep_theirs(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """explore: 1 shows each customer a candidate drawn by their key, the same every turn,
    and records it; without personalization consent a customer is not explored."""
    rules = RULES.replace("offer_type: best\n", "offer_type: best\n      explore: 1\n").replace(
        "when: {segment: at_risk}", "when: {segment: [at_risk, new_visitor]}"
    )
    names = [f"customer-{index}" for index in range(60)]
    await customers(sqlite_store, *names, "private")
    async with sqlite_store.sessions.begin() as session:
        await set_consent(
            session, key("private"), {"personalization": False}, source="cli",
            policy_version=None, now=NOW,
        )  # fmt: skip
    service = service_for(sqlite_store, sqlite_url, tmp_path, clock, rules=rules)
    shown: dict[str, set[str]] = {}
    for turn in range(2):
        for name in names:
            plan = await service.personalize(chat(name, turn))
            shown.setdefault(name, set()).add(plan["offer_type"])
    assert all(len(offers) == 1 for offers in shown.values())
    spread = Counter(next(iter(offers)) for offers in shown.values())
    assert set(spread) == {"discount", "free_shipping", "bundle"}
    # Decided as a visitor (new_visitor) and never explored: the rule's first offer.
    private = await service.personalize(chat("private"))
    assert (private["offer_type"], private["discount_pct"]) == ("discount", 10)
    await service.drain()
    stored = {k: (offer, segment) for k, offer, segment, _ in await recorded(sqlite_store)}
    assert len(stored) == 61
    assert stored[key("private")] == ("discount_10", "new_visitor")
    labels = {"discount": "discount_10", "free_shipping": "free_shipping", "bundle": "bundle"}
    assert all(stored[key(name)][0] == labels[next(iter(shown[name]))] for name in names)
    await service.close()
