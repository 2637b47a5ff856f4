"""A shopper's "no more kitchen stuff" keeps kitchen out of every strategy's list, unless
they ask for kitchen; a dislike tag is never read as an interest."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.recommend.content import ContentRecommender, ProductText
from rasa_personalize.recommend.service import RecommendationRequest, without_dislikes
from rasa_personalize.recommend.training import train_from_store
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.models import Customer, CustomerTag, Product
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer, add_interactions, add_product

DISLIKE = "not_interested_in_kitchen"
# Customers whose tags hold this follow the bought_together strategy.
RULES = """\
rules:
  - name: bundles
    when: {tags: wants_bundles}
    then: {recommendation_strategy: bought_together}
"""


def ask(external_id: str) -> PersonalizationRequest:
    return PersonalizationRequest(CustomerIdentity(external_id, "message_metadata"))


@pytest.fixture
async def service(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> PersonalizationService:
    """Buyers of running and (more) kitchen products, all in segment loyal, a model trained
    on them, and one customer per strategy; nobody dislikes anything yet."""
    async with sqlite_store.sessions.begin() as session:
        products = {
            category: [
                await add_product(session, f"{prefix}-{n}", category, price=20.0 + n)
                for n in range(6)
            ]
            for category, prefix in (("running", "RUN"), ("kitchen", "KIT"), ("toys", "TOY"))
        }
        for person in range(12):
            buyer = await add_customer(session, f"buyer-{person}", segment="loyal")
            start = person % 3
            for product in products["kitchen"][start : start + 3]:
                await add_interactions(session, buyer, product, "purchase", 2, days_ago=5)
            for product in products["running"][start : start + 2]:
                await add_interactions(session, buyer, product, "purchase", 1, days_ago=4)
            if person % 4 == 0:
                await add_interactions(session, buyer, products["toys"][start], "purchase", 1)
        await add_customer(session, "fan", tags=("interested_in_kitchen", "interested_in_running"))
        await add_customer(session, "member", segment="loyal")
        await add_customer(session, "stranger")
        bundler = await add_customer(session, "bundler", tags=("wants_bundles",))
        await add_interactions(session, bundler, products["kitchen"][0], "purchase", 1, days_ago=3)
        await add_interactions(session, bundler, products["running"][0], "purchase", 1, days_ago=2)
        await rebuild_profile_metrics(session, now=NOW)
    settings = make_settings(sqlite_url, model_dir=tmp_path / "models", recommend_substitute_days=0)
    await train_from_store(sqlite_store, settings.model_dir, precompute=True)
    # After training: history the model has not seen, so the session strategy answers.
    async with sqlite_store.sessions.begin() as session:
        late = await add_customer(session, "late")
        kitchen = (await session.scalars(select(Product).where(Product.sku == "KIT-1"))).one()
        await add_interactions(session, late, kitchen, "view", 3, days_ago=1)
    rules = tmp_path / "personalization.yml"
    rules.write_text(RULES, encoding="utf-8")
    personalization = PersonalizationService(
        settings, sqlite_store, clock=lambda: NOW, rules=RuleBook(rules)
    )
    await personalization.warm_up()
    return personalization


async def dislike_kitchen(store: SqlStore, external_id: str) -> None:
    async with store.sessions.begin() as session:
        customer = (
            await session.scalars(
                select(Customer).where(
                    Customer.customer_key == customer_key(TEST_SECRET, external_id)
                )
            )
        ).one()
        session.add(CustomerTag(customer_id=customer.id, tag=DISLIKE, source="chat"))


def categories_of(plan: object) -> list[str]:
    products = plan["recommended_products"]  # type: ignore[index]
    return [product["sku"].split("-")[0] for product in products]


@pytest.mark.parametrize(
    ("customer", "source"),
    [
        ("buyer-0", "als"),  # in the model (its precomputed list)
        ("late", "session"),  # history newer than the model
        ("fan", "content"),  # interest tags only
        ("member", "segment_popular"),  # a stored segment only
        ("stranger", "popular"),  # nothing at all
        ("bundler", "bought_together"),  # the rules choose bundles
    ],
)
async def test_every_strategy_leaves_a_disliked_category_out(
    service: PersonalizationService, sqlite_store: SqlStore, customer: str, source: str
) -> None:
    """Kitchen leads or shares each list until the customer says no to it; then the same
    strategy answers with three products, none of them kitchen."""
    before = await service.recommend(ask(customer))
    await dislike_kitchen(sqlite_store, customer)

    after = await service.recommend(ask(customer))

    assert (before["recommendation_source"], after["recommendation_source"]) == (source, source)
    assert "KIT" in categories_of(before)
    assert "KIT" not in categories_of(after)
    assert len(categories_of(after)) == 3
    assert "kitchen" not in after["recommendation_reason"]


async def test_asking_for_the_disliked_category_overrides_the_dislike(
    service: PersonalizationService, sqlite_store: SqlStore
) -> None:
    """Asking for kitchen after "no more kitchen": kitchen it is, for that request."""
    await dislike_kitchen(sqlite_store, "buyer-0")

    asked = await service.recommend(ask("buyer-0"), category="kitchen stuff")
    after = await service.recommend(ask("buyer-0"))

    assert set(categories_of(asked)) == {"KIT"}
    assert "KIT" not in categories_of(after)


def test_dislikes_are_no_interests_and_no_reasons() -> None:
    """The request keeps only real interests; a disliked favourite is dropped; the
    category asked for is not disliked in that request."""
    request = RecommendationRequest(
        customer_key="k",
        tags=("premium", DISLIKE, "interested_in_kitchen", "interested_in_running"),
        favorite_category="kitchen",
    )
    categories = frozenset({"kitchen", "running", "toys"})

    cleaned, disliked = without_dislikes(request, categories)
    asked, disliked_when_asked = without_dislikes(
        RecommendationRequest(customer_key="k", tags=(DISLIKE,), category="kitchen"), categories
    )

    assert disliked == frozenset({"kitchen"})
    assert (cleaned.tags, cleaned.favorite_category) == (
        ("premium", "interested_in_running"),
        None,
    )
    assert disliked_when_asked == frozenset()
    assert asked.tags == ()


def test_content_does_not_read_a_dislike_as_an_interest() -> None:
    """Only the dislike tag: nothing matches (not the kitchen products its words name)."""
    products = [
        ProductText("KIT-1", "Chef's Knife", "sharp kitchen knife", "kitchen"),
        ProductText("RUN-1", "Road Running Shoes", "light shoes for running", "running"),
    ]
    model = ContentRecommender().fit(products)

    assert model.for_interests(tags=[DISLIKE], n=2) == []
    assert [s.item_id for s in model.for_interests(tags=[DISLIKE, "interested_in_running"])][
        :1
    ] == ["RUN-1"]
