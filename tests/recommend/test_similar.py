""" "Something like X": products bought with X lead when the rules choose bought_together,
content similarity answers otherwise (and when X has no partners), and the filters hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.recommend.training import train_from_store
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer, add_interactions, add_product

RULES = """\
rules:
  - name: cheap bundles
    when: {tags: wants_cheap_bundles}
    then: {recommendation_strategy: bought_together, max_price: 20}
  - name: bundles
    when: {tags: wants_bundles}
    then: {recommendation_strategy: bought_together}
"""
TRAIL = "Trail Running Shoes"
# sku, title, category, price, in stock
PRODUCTS = [
    ("SHOE-TRAIL", TRAIL, "running", 120.0, True),
    ("SHOE-ROAD", "Road Running Shoes", "running", 110.0, True),
    ("SHOE-RACE", "Racing Running Shoes", "running", 140.0, True),
    ("SOCKS", "Running Socks", "running", 15.0, True),
    ("GAITERS", "Trail Gaiters", "running", 35.0, False),
    ("BOTTLE", "Insulated Water Bottle", "outdoors", 25.0, True),
    ("TENT", "Dome Tent", "outdoors", 200.0, True),
    ("KNIFE", "Chef Knife", "kitchen", 60.0, True),
    ("BOARD", "Cutting Board", "kitchen", 30.0, True),
    ("PAN", "Frying Pan", "kitchen", 40.0, True),
    ("APRON", "Cotton Apron", "kitchen", 22.0, True),
    ("LAMP", "Camping Lantern", "outdoors", 45.0, True),
]
# Baskets (one customer each), how many of them. With the owner's bottle (below), over
# 31 baskets, the trail shoes' partners by pair score (lift x together / (together + 3)):
# the gaiters (8 baskets, out of stock), the bottle (lift 31 x 6 / (17 x 7) = 1.56,
# x 6/9 = 1.04), the socks (31 x 3 / (17 x 3) = 1.82, x 3/6 = 0.91). Nobody bought the
# racing shoes: they have no partners.
BASKETS = [
    (("SHOE-TRAIL", "GAITERS"), 8),
    (("SHOE-TRAIL", "BOTTLE"), 6),
    (("SHOE-TRAIL", "SOCKS"), 3),
    (("KNIFE", "BOARD", "PAN", "APRON"), 5),
    (("TENT", "LAMP"), 4),
    (("SHOE-ROAD",), 4),
]


def ask(external_id: str) -> PersonalizationRequest:
    return PersonalizationRequest(CustomerIdentity(external_id, "message_metadata"))


async def bundle_shop(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> PersonalizationService:
    """The shop above, its models trained, and one customer per way of asking."""
    async with sqlite_store.sessions.begin() as session:
        products = {
            sku: await add_product(
                session,
                sku,
                category,
                price=price,
                title=title,
                description=f"{title.lower()} for {category}",
                in_stock=in_stock,
            )
            for sku, title, category, price, in_stock in PRODUCTS
        }
        number = 0
        for basket, count in BASKETS:
            for _ in range(count):
                buyer = await add_customer(session, f"buyer-{number}")
                number += 1
                for sku in basket:
                    await add_interactions(session, buyer, products[sku], "purchase", 1, days_ago=9)
        await add_customer(session, "browser")
        await add_customer(session, "bundler", tags=("wants_bundles",))
        await add_customer(session, "thrifty", tags=("wants_cheap_bundles",))
        await add_customer(
            session, "no-outdoors", tags=("wants_bundles", "not_interested_in_outdoors")
        )
        await add_customer(session, "private", tags=("wants_bundles",))
        owner = await add_customer(session, "owner", tags=("wants_bundles",))
        await add_interactions(session, owner, products["BOTTLE"], "purchase", 1, days_ago=2)
        await rebuild_profile_metrics(session, now=NOW)
    async with sqlite_store.sessions.begin() as session:
        await set_consent(
            session,
            customer_key(TEST_SECRET, "private"),
            {"personalization": False},
            source="cli",
            policy_version=None,
            now=NOW,
        )
    settings = make_settings(sqlite_url, model_dir=tmp_path / "models", recommend_substitute_days=0)
    await train_from_store(sqlite_store, settings.model_dir)
    rules = tmp_path / "personalization.yml"
    rules.write_text(RULES, encoding="utf-8")
    personalization = PersonalizationService(
        settings, sqlite_store, clock=lambda: NOW, rules=RuleBook(rules)
    )
    await personalization.warm_up()
    return personalization


@pytest.fixture
async def service(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> PersonalizationService:
    return await bundle_shop(sqlite_store, sqlite_url, tmp_path)


def skus(plan: object) -> list[str]:
    return [product["sku"] for product in plan["recommended_products"]]  # type: ignore[index]


async def test_bought_together_leads_with_the_strongest_partner_in_stock(
    service: PersonalizationService,
) -> None:
    """The rules choose bought_together: the bottle (the strongest partner in stock; the
    gaiters are out of stock), then the socks, then a shoe like X; the reason says so."""
    plan = await service.similar(TRAIL, request=ask("bundler"))

    assert skus(plan)[:2] == ["BOTTLE", "SOCKS"]
    assert skus(plan)[2] in {"SHOE-ROAD", "SHOE-RACE"}
    assert plan["recommendation_source"] == "bought_together"
    assert plan["recommendation_reason"] == f"because they are often bought together with {TRAIL}"


async def test_without_the_strategy_things_like_x_come_by_content(
    service: PersonalizationService,
) -> None:
    """No rule chooses bought_together: the other running shoes, "like" X."""
    plan = await service.similar(TRAIL, request=ask("browser"))

    assert set(skus(plan)[:2]) == {"SHOE-ROAD", "SHOE-RACE"}
    assert plan["recommendation_source"] == "content"
    assert plan["recommendation_reason"] == f"because they are like {TRAIL}"


async def test_a_product_nobody_bought_with_anything_falls_back_to_similar_items(
    service: PersonalizationService,
) -> None:
    """bought_together, but the racing shoes have no partners: products like them, with the
    "like" reason."""
    plan = await service.similar("Racing Running Shoes", request=ask("bundler"))

    assert set(skus(plan)[:2]) == {"SHOE-TRAIL", "SHOE-ROAD"}
    assert plan["recommendation_source"] == "content"
    assert plan["recommendation_reason"] == "because they are like Racing Running Shoes"


async def test_a_disliked_category_is_left_out_of_the_partners(
    service: PersonalizationService,
) -> None:
    """No outdoors for this shopper: the bottle goes, the socks lead."""
    plan = await service.similar(TRAIL, request=ask("no-outdoors"))

    assert skus(plan)[0] == "SOCKS"
    assert "BOTTLE" not in skus(plan)
    assert plan["recommendation_source"] == "bought_together"


async def test_a_partner_already_bought_is_not_offered_again(
    service: PersonalizationService,
) -> None:
    """The owner has the bottle: the socks lead."""
    plan = await service.similar(TRAIL, request=ask("owner"))

    assert skus(plan)[0] == "SOCKS"
    assert "BOTTLE" not in skus(plan)
    assert plan["recommendation_source"] == "bought_together"


async def test_the_price_cap_puts_partners_within_it_first(
    service: PersonalizationService,
) -> None:
    """A cap of 20: the socks (15) before the stronger bottle (25)."""
    plan = await service.similar(TRAIL, request=ask("thrifty"))

    assert skus(plan)[:2] == ["SOCKS", "BOTTLE"]
    assert plan["recommendation_reason"] == f"because they are often bought together with {TRAIL}"


async def test_at_most_two_partners_of_one_category(service: PersonalizationService) -> None:
    """The knife's three partners are all kitchen: two of them, then another category."""
    plan = await service.similar("Chef Knife", request=ask("bundler"))

    kitchen = {"BOARD", "PAN", "APRON"}
    assert [sku in kitchen for sku in skus(plan)] == [True, True, False]
    assert plan["recommendation_source"] == "bought_together"


async def test_without_consent_the_rules_do_not_read_the_profile(
    service: PersonalizationService,
) -> None:
    """The bundles tag may not be used: decided as a visitor, things like X by content."""
    plan = await service.similar(TRAIL, request=ask("private"))

    assert plan["recommendation_source"] == "content"
    assert set(skus(plan)[:2]) == {"SHOE-ROAD", "SHOE-RACE"}


async def test_the_product_by_sku_and_an_unknown_product(service: PersonalizationService) -> None:
    """A sku names the product too; words that match nothing find nothing to answer."""
    by_sku = await service.similar("shoe-trail", request=ask("bundler"))
    unknown = await service.similar("zzzz qqqq", request=ask("bundler"))

    assert skus(by_sku)[0] == "BOTTLE"
    assert skus(unknown) == []
    assert unknown["recommendation_source"] is None
