"""The fallback chain end to end over a real store: each source is reached, filters hold."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.errors import StoreUnavailableError
from rasa_personalize.identity import CustomerIdentity
from rasa_personalize.recommend.service import resolve_category
from rasa_personalize.recommend.training import train_content, train_from_store
from rasa_personalize.rules import RuleBook
from rasa_personalize.settings import Settings
from rasa_personalize.store.models import Product
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import make_settings
from tests.factories import NOW, add_customer, add_interactions, add_product


def ask(external_id: str) -> PersonalizationRequest:
    return PersonalizationRequest(CustomerIdentity(external_id, "message_metadata"))


def shop_settings(database_url: str, model_dir: Path, **overrides: object) -> Settings:
    """Settings for the shop below: its titles ("Product SKU-RUN-1") name no product type,
    so every product would substitute every other of its category; substitutes are
    tested in test_reranking.py and test_demo_relevance.py instead."""
    return make_settings(
        database_url, model_dir=model_dir, recommend_substitute_days=0, **overrides
    )


@pytest.fixture
async def shop(sqlite_store: SqlStore, tmp_path: Path) -> SqlStore:
    """Two taste groups (running, kitchen) of buyers, plus loners who only browse."""
    async with sqlite_store.sessions.begin() as session:
        running = [
            await add_product(session, f"SKU-RUN-{n}", "running", price=20.0 + 10 * n)
            for n in range(6)
        ]
        kitchen = [
            await add_product(session, f"SKU-KIT-{n}", "kitchen", price=15.0 + 10 * n)
            for n in range(6)
        ]
        await add_product(session, "SKU-RUN-GONE", "running", price=25.0, in_stock=False)
        for group, products in (("runner", running), ("cook", kitchen)):
            for person in range(8):
                customer = await add_customer(session, f"{group}-{person}")
                for product in products[person % 3 : person % 3 + 4]:
                    await add_interactions(session, customer, product, "purchase", 1)
        await add_customer(session, "interested", tags=("interested_in_running",))
        await add_customer(session, "blank")
        await rebuild_profile_metrics(session, now=NOW)
    return sqlite_store


@pytest.fixture
async def service(shop: SqlStore, sqlite_url: str, tmp_path: Path) -> PersonalizationService:
    """A service with a model trained on the shop, precomputed lists included."""
    settings = shop_settings(sqlite_url, tmp_path / "models")
    await train_from_store(shop, settings.model_dir, precompute=True)
    personalization = PersonalizationService(
        settings, shop, clock=lambda: NOW, rules=RuleBook(tmp_path / "none.yml")
    )
    await personalization.warm_up()
    return personalization


async def test_known_customer_gets_als_items_of_their_taste(
    service: PersonalizationService,
) -> None:
    """A runner in the model: ALS answers, with running items they have not bought."""
    plan = await service.recommend(ask("runner-0"))
    skus = [p["sku"] for p in plan["recommended_products"]]
    assert plan["recommendation_source"] == "als"
    # runner-0 bought RUN-0..RUN-3: the two unbought in-stock running items lead
    assert set(skus[:2]) == {"SKU-RUN-4", "SKU-RUN-5"}
    assert len(skus) == 3
    assert "SKU-RUN-GONE" not in skus
    assert plan["recommendation_reason"].startswith("because you bought Product SKU-RUN-")


async def test_category_filter_is_applied(service: PersonalizationService) -> None:
    """Asking about kitchen gives only kitchen items, even to a runner."""
    plan = await service.recommend(ask("runner-1"), category="kitchen")
    skus = [p["sku"] for p in plan["recommended_products"]]
    assert skus
    assert all(sku.startswith("SKU-KIT-") for sku in skus)
    assert len(set(skus)) == len(skus)


async def test_customer_with_only_tags_gets_content(service: PersonalizationService) -> None:
    """No history, an interest tag: content-based picks in that interest, at most two of a
    category (the third comes from the bestsellers)."""
    plan = await service.recommend(ask("interested"))
    skus = [p["sku"] for p in plan["recommended_products"]]
    assert plan["recommendation_source"] == "content"
    assert [sku.startswith("SKU-RUN-") for sku in skus] == [True, True, False]
    assert plan["recommendation_reason"] == "because you're interested in running"


async def test_unknown_customer_gets_popular_items(service: PersonalizationService) -> None:
    """Nobody we know, no category: the bestsellers."""
    plan = await service.recommend(ask("stranger"))
    assert plan["recommendation_source"] == "popular"
    assert len(plan["recommended_products"]) == 3
    assert plan["recommendation_reason"] == "because they are our bestsellers right now"


async def test_customer_outside_the_model_with_recent_items_gets_session(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """Interactions after training: the user vector is recalculated from them."""
    async with shop.sessions.begin() as session:
        late = await add_customer(session, "late-runner")
        shoes = (await session.scalars(select(Product).where(Product.sku == "SKU-RUN-1"))).one()
        await add_interactions(session, late, shoes, "view", 3, days_ago=1)
    plan = await service.recommend(ask("late-runner"))
    assert plan["recommendation_source"] == "session"
    assert plan["recommendation_reason"] == "because you looked at Product SKU-RUN-1"


async def test_segment_popular_answers_for_stored_segments(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """A customer with a stored segment and nothing else gets that segment's favourites."""
    async with shop.sessions.begin() as session:
        await add_customer(session, "segment-only", segment="loyal")
    service.recommendations._resources = None  # re-read popularity with the new segment
    plan = await service.recommend(ask("segment-only"))
    assert plan["recommendation_source"] in {"segment_popular", "popular"}


async def test_price_cap_from_rules_is_respected(
    shop: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """A rule's max_price keeps every recommended price at or below the cap when enough
    relevant products are within it (here: five of the eight in stock)."""
    settings = shop_settings(sqlite_url, tmp_path / "models")
    await train_from_store(shop, settings.model_dir)
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "defaults: {max_price: 40, recommendation_strategy: cheapest_first}\nrules: []\n"
    )
    service = PersonalizationService(settings, shop, clock=lambda: NOW, rules=RuleBook(rules))
    await service.warm_up()
    plan = await service.recommend(ask("runner-2"), n=5)
    prices = [p["price"] for p in plan["recommended_products"]]
    assert len(prices) == 5
    assert max(prices) <= 40


async def test_a_capped_list_finds_a_cheap_product_of_their_interests_they_looked_at(
    shop: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """Precomputed lists leave out what the customer has looked at. Under a price cap the
    one running product within it is one they viewed: the capped list is ranked from the
    model, so it leads with that product instead of cheap kitchen items."""
    async with shop.sessions.begin() as session:
        products = {
            product.sku: product for product in (await session.scalars(select(Product))).all()
        }
        browser = await add_customer(session, "browser-runner")
        for sku in ("SKU-RUN-3", "SKU-RUN-4", "SKU-RUN-5"):
            await add_interactions(session, browser, products[sku], "purchase", 1, days_ago=30)
        await add_interactions(session, browser, products["SKU-RUN-0"], "view", 2, days_ago=20)
        await rebuild_profile_metrics(session, now=NOW)
    settings = shop_settings(sqlite_url, tmp_path / "models")
    await train_from_store(shop, settings.model_dir, precompute=True)
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "defaults: {max_price: 22, recommendation_strategy: cheapest_first}\nrules: []\n"
    )
    capped = PersonalizationService(settings, shop, clock=lambda: NOW, rules=RuleBook(rules))
    uncapped = PersonalizationService(
        settings, shop, clock=lambda: NOW, rules=RuleBook(tmp_path / "none.yml")
    )
    await capped.warm_up()
    await uncapped.warm_up()

    plain = await uncapped.recommend(ask("browser-runner"))
    cheap = await capped.recommend(ask("browser-runner"))

    assert "SKU-RUN-0" not in [p["sku"] for p in plain["recommended_products"]]
    assert cheap["recommended_products"][0]["sku"] == "SKU-RUN-0"
    assert cheap["recommendation_source"] == "als"
    # Two products of the shop are within the cap (SKU-RUN-0 and SKU-KIT-0): they come first.
    assert [p["price"] <= 22 for p in cheap["recommended_products"]] == [True, True, False]


async def test_similar_products_for_a_named_product(service: PersonalizationService) -> None:
    """'Something like SKU-KIT-2' gives other kitchen products, never the item itself."""
    plan = await service.similar("Product SKU-KIT-2")
    skus = [p["sku"] for p in plan["recommended_products"]]
    assert skus
    assert "SKU-KIT-2" not in skus
    assert plan["recommendation_reason"] == "because they are like Product SKU-KIT-2"


async def test_no_als_model_yet_still_recommends(
    shop: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """Before ALS is trained: content from the favourite category, else the bestsellers."""
    settings = shop_settings(sqlite_url, tmp_path / "empty-models")
    await train_content(shop, settings.model_dir)
    service = PersonalizationService(settings, shop, clock=lambda: NOW)
    await service.warm_up()
    runner = await service.recommend(ask("runner-0"))
    stranger = await service.recommend(ask("stranger"))
    assert runner["recommendation_source"] == "content"
    # two unbought running items, then the list is topped up from the bestsellers
    assert [p["sku"] for p in runner["recommended_products"]][:2] == ["SKU-RUN-4", "SKU-RUN-5"]
    assert stranger["recommendation_source"] == "popular"


async def test_nothing_trained_yet_answers_and_says_once_what_to_run(
    shop: SqlStore, sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No content model either: the bestsellers answer, and one log line names the fix."""
    settings = shop_settings(sqlite_url, tmp_path / "empty-models")
    service = PersonalizationService(settings, shop, clock=lambda: NOW)
    with caplog.at_level(logging.WARNING, logger="rasa_personalize.recommend.service"):
        await service.warm_up()
        runner = await service.recommend(ask("runner-0"))
        service.recommendations._resources = None  # a refresh finds no model either
        again = await service.recommend(ask("interested"))
    assert runner["recommendation_source"] == "popular"
    assert again["recommendation_source"] == "popular"
    assert len(runner["recommended_products"]) == 3
    told = [r.getMessage() for r in caplog.records if "personalize train" in r.getMessage()]
    assert len(told) == 1
    assert "No content model" in told[0]


async def test_a_new_content_model_is_picked_up_without_restart(
    shop: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """Trained while the server runs: the next check serves content recommendations."""
    # Checks are due at once, so the test needs no waiting.
    settings = shop_settings(sqlite_url, tmp_path / "models", model_check_every_s=1e-9)
    service = PersonalizationService(settings, shop, clock=lambda: NOW)
    await service.warm_up()
    assert (await service.recommend(ask("interested")))["recommendation_source"] == "popular"
    artifact = await train_content(shop, settings.model_dir)
    assert artifact is not None
    await service.recommendations.resources()  # starts the check in the background
    await service.recommendations.wait_for_refresh()
    assert service.recommendations._resources is not None
    assert service.recommendations._resources.content_version == artifact.version
    plan = await service.recommend(ask("interested"))
    assert plan["recommendation_source"] == "content"


async def test_feedback_is_stored_once_per_message(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """A yes to shown products stores +1 feedback; the same message twice stores nothing more."""
    before = (await shop.stats()).interactions
    first = await service.record_feedback(
        ask("brand-new-person"), ["SKU-KIT-1", "SKU-KIT-2"], liked=True, event_prefix="chat-abc"
    )
    again = await service.record_feedback(
        ask("brand-new-person"), ["SKU-KIT-1", "SKU-KIT-2"], liked=True, event_prefix="chat-abc"
    )
    stats = await shop.stats()
    assert (first, again) == (2, 0)
    assert stats.interactions == before + 2


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("running", "running"),  # exact
        ("Running Shoes", "running"),  # a category named among other words
        ("kitchn", "kitchen"),  # a close spelling
        ("spaceships", None),  # no category: the list is not narrowed
        (None, None),  # nothing asked
    ],
)
def test_asked_words_resolve_to_a_catalogue_category(
    asked: str | None, expected: str | None
) -> None:
    """The customer's words are mapped onto the catalogue's categories."""
    assert resolve_category(asked, frozenset({"running", "kitchen", "books"})) == expected


async def test_category_words_narrow_the_recommendations(service: PersonalizationService) -> None:
    """'running shoes' is the running category, and the text says so."""
    plan = await service.recommend(ask("cook-1"), category="running shoes")
    assert all(p["sku"].startswith("SKU-RUN-") for p in plan["recommended_products"])
    assert "in running:" in plan["recommendation_text"]


async def test_purchased_items_may_be_allowed_by_settings(
    shop: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """With recommend_exclude_purchased off, bought items may come back (consumables)."""
    settings = shop_settings(
        sqlite_url,
        tmp_path / "models",
        recommend_exclude_purchased=False,
        recommend_count=6,
    )
    await train_from_store(shop, settings.model_dir)
    service = PersonalizationService(
        settings, shop, clock=lambda: NOW, rules=RuleBook(tmp_path / "none.yml")
    )
    await service.warm_up()
    plan = await service.recommend(ask("runner-0"), category="running")
    skus = {p["sku"] for p in plan["recommended_products"]}
    assert len(skus) == 6
    assert skus & {"SKU-RUN-0", "SKU-RUN-1", "SKU-RUN-2", "SKU-RUN-3"}


async def test_warm_up_counts_from_training_and_refreshes_count_from_the_store(
    service: PersonalizationService, shop: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first build takes training's popularity counts (no grouping of every
    interaction); a refresh counts in the store again; a refresh whose count fails (a
    large store past its statement limit) keeps training's counts and a fresh catalogue."""
    recommendations = service.recommendations
    counted: list[str] = []
    original = shop.read_recommendation_inputs

    async def counting() -> object:
        counted.append("store")
        return await original()

    monkeypatch.setattr(shop, "read_recommendation_inputs", counting)
    recommendations._resources = None
    await recommendations.resources()
    assert counted == []
    stored = (await recommendations.resources()).popularity.recommend(3)

    await recommendations._rebuild()
    assert counted == ["store"]
    assert (await recommendations.resources()).popularity.recommend(3) == stored

    async def past_the_limit() -> object:
        counted.append("timed out")
        raise StoreUnavailableError("statement timeout")

    monkeypatch.setattr(shop, "read_recommendation_inputs", past_the_limit)
    before = recommendations._resources
    await recommendations._rebuild()
    assert counted == ["store", "timed out"]
    assert recommendations._resources is not before
    assert (await recommendations.resources()).popularity.recommend(3) == stored
