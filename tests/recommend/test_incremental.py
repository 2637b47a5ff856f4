"""Incremental updates: new interactions change recommendations without retraining.

A demo shop is trained once per test (with precomputed lists, as in production); then
events are stored the way the events API stores them and the next recommendation is
asked through the engine, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.events.ingest import ingest_events
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.recommend.artifacts import (
    AlsArtifact,
    ArtifactMetadata,
    list_versions,
    load_latest,
    save_artifact,
)
from rasa_personalize.recommend.incremental import counted_kinds, fresh_vector, weighted_products
from rasa_personalize.recommend.interactions import ConfidenceWeights
from rasa_personalize.recommend.service import RecommendationRequest
from rasa_personalize.recommend.training import als_dir, store_confidence, train_from_store
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.catalogue import CustomerItems
from rasa_personalize.store.history import CustomerHistory, HistoryEntry, HistoryQuery
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings

SHOP = DemoShopConfig(customers=150, products=40, interactions=5_000, days=150, seed=3)
SEEDED_AT = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
# Requests and new events happen an hour after the data the model was trained on.
LATER = SEEDED_AT + timedelta(hours=1)
CUSTOMER = "demo-loyal"


def ask(external_id: str) -> PersonalizationRequest:
    return PersonalizationRequest(CustomerIdentity(external_id, "message_metadata"))


@pytest.fixture
async def shop(store: SqlStore) -> SqlStore:
    """The small demo shop, with profile metrics."""
    async with store.sessions.begin() as session:
        await seed_demo_shop(session, SHOP, secret_key=TEST_SECRET, now=SEEDED_AT)
        await rebuild_profile_metrics(session, now=SEEDED_AT)
    return store


@pytest.fixture
async def service(shop: SqlStore, database_url: str, tmp_path: Path) -> PersonalizationService:
    """A server on a model trained on the shop (precomputed lists written), no rules.

    The tests read the model's ranking of the whole catalogue (n=40), so lists are not
    spread over categories and substitutes of purchases keep their place.
    """
    settings = make_settings(
        database_url,
        model_dir=tmp_path / "models",
        action_budget_s=10.0,
        recommend_max_per_category=20,
        recommend_substitute_days=0,
    )
    await train_from_store(shop, settings.model_dir, precompute=True)
    rules = tmp_path / "rules.yml"
    rules.write_text("rules: []\n")
    personalization = PersonalizationService(
        settings, shop, clock=lambda: LATER, rules=RuleBook(rules)
    )
    await personalization.warm_up()
    return personalization


async def categories_by_sku(store: SqlStore) -> dict[str, str]:
    async with store.sessions() as session:
        return dict((await session.execute(select(Product.sku, Product.category))).all())


async def titles_by_sku(store: SqlStore) -> dict[str, str]:
    async with store.sessions() as session:
        return dict((await session.execute(select(Product.sku, Product.title))).all())


async def untouched_category(store: SqlStore, external_id: str) -> tuple[str, list[str]]:
    """A category the customer never interacted with, and its in-stock skus (at least 4)."""
    key = customer_key(TEST_SECRET, external_id)
    async with store.sessions() as session:
        touched = set(
            (
                await session.scalars(
                    select(Product.category)
                    .join(Interaction, Interaction.product_id == Product.id)
                    .join(Customer, Customer.id == Interaction.customer_id)
                    .where(Customer.customer_key == key)
                )
            ).all()
        )
        rows = (
            await session.execute(
                select(Product.category, Product.sku)
                .where(Product.in_stock.is_(True))
                .order_by(Product.category, Product.sku)
            )
        ).all()
    skus: dict[str, list[str]] = {}
    for category, sku in rows:
        skus.setdefault(category, []).append(sku)
    choices = sorted(
        (category for category, listed in skus.items() if category not in touched),
        key=lambda category: (-len(skus[category]), category),
    )
    assert choices, "the customer touched every category"
    assert len(skus[choices[0]]) >= 4, "the untouched category is too small"
    return choices[0], skus[choices[0]]


async def store_events(
    store: SqlStore, external_id: str, events: list[tuple[str, str]], *, at: datetime = LATER
) -> None:
    """(kind, sku) events, one second apart ending at ``at``, through the events API path."""
    raw = [
        {
            "event_id": f"incremental-{external_id}-{n}",
            "customer": external_id,
            "kind": kind,
            "product": sku,
            "timestamp": (at - timedelta(seconds=len(events) - n)).isoformat(),
        }
        for n, (kind, sku) in enumerate(events)
    ]
    async with store.sessions.begin() as session:
        result = await ingest_events(session, raw, secret_key=TEST_SECRET, now=at)
    assert len(result.accepted) == len(events), result.rejected


def skus_of(plan: object) -> list[str]:
    return [product["sku"] for product in plan["recommended_products"]]  # type: ignore[index]


async def test_new_interactions_move_recommendations_without_retraining(
    service: PersonalizationService, shop: SqlStore, tmp_path: Path
) -> None:
    """Purchases and views in a new category pull that category up the next list."""
    category, skus = await untouched_category(shop, CUSTOMER)
    # The category's products that stay recommendable (skus[0] is bought below).
    by_sku = await categories_by_sku(shop)
    wanted = {sku for sku, name in by_sku.items() if name == category} - {skus[0]}
    version = service.recommendations.models.version
    # n=40: the whole in-stock catalogue, ranked, so every product's position shows.
    before = skus_of(await service.recommend(ask(CUSTOMER), n=40))

    await store_events(
        shop,
        CUSTOMER,
        [("view", skus[0]), ("view", skus[1]), ("purchase", skus[0]), ("cart", skus[2])],
    )
    answer = await service.recommend(ask(CUSTOMER), n=40)
    after = skus_of(answer)

    ranks_before = [rank for rank, sku in enumerate(before) if sku in wanted]
    ranks_after = [rank for rank, sku in enumerate(after) if sku in wanted]
    assert len(ranks_before) == len(ranks_after) == len(wanted) >= 3
    assert sum(rank < 10 for rank in ranks_before) <= 1
    assert sum(rank < 5 for rank in ranks_after) >= 2
    assert np.mean(ranks_after) < np.mean(ranks_before) / 2
    # The model is the trained one: nothing was retrained or written.
    assert service.recommendations.models.version == version
    assert list_versions(als_dir(tmp_path / "models")) == [version]
    assert answer["recommendation_source"] == "als"
    # The reason names the new product most related to the first one shown.
    titles = await titles_by_sku(shop)
    assert answer["recommendation_reason"] in {
        f"because you bought {titles[skus[0]]}",
        f"because you looked at {titles[skus[1]]}",
        f"because you put {titles[skus[2]]} in your cart",
    }
    # The bought item is not offered again.
    assert skus[0] not in after


async def test_customer_without_new_events_keeps_their_list(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """Others' events and being shown products change nothing for this customer."""
    _, other_skus = await untouched_category(shop, "customer-00001")
    before = await service.recommend(ask(CUSTOMER), n=10)
    await store_events(shop, "customer-00001", [("purchase", sku) for sku in other_skus[:3]])
    # "shown" carries no weight: it must not count as news.
    await store_events(shop, CUSTOMER, [("shown", sku) for sku in skus_of(before)])

    after = await service.recommend(ask(CUSTOMER), n=10)

    assert skus_of(after) == skus_of(before)
    assert after["recommendation_source"] == before["recommendation_source"] == "als"
    assert after["recommendation_reason"] == before["recommendation_reason"]


async def test_first_seen_customer_gets_personal_recommendations(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """A customer created by their first events: a vector from them, not the bestsellers."""
    category, skus = await untouched_category(shop, CUSTOMER)
    in_category = {sku for sku, name in (await categories_by_sku(shop)).items() if name == category}
    popular = await service.recommend(ask("brand-new-shopper"), n=5)

    await store_events(
        shop,
        "brand-new-shopper",
        [("view", skus[0]), ("view", skus[1]), ("view", skus[2]), ("view", skus[1])],
    )
    personal = await service.recommend(ask("brand-new-shopper"), n=5)

    assert popular["recommendation_source"] == "popular"
    assert personal["recommendation_source"] == "session"
    assert skus_of(personal) != skus_of(popular)
    assert sum(sku in in_category for sku in skus_of(personal)) >= 4
    assert personal["recommendation_reason"].startswith("because you looked at ")


async def test_history_is_read_when_the_items_came_without_it(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """A caller that did not ask for the history still gets the fresh vector (one more read)."""
    _, skus = await untouched_category(shop, CUSTOMER)
    await store_events(shop, CUSTOMER, [("purchase", sku) for sku in skus[:2]])
    key = customer_key(TEST_SECRET, CUSTOMER)
    with_history = await service.recommend(ask(CUSTOMER), n=10)
    _, items = await shop.load_customer_context(key, LATER - timedelta(days=30))
    assert items is not None
    assert items.history is None

    answer = await service.recommendations.recommend(
        RecommendationRequest(customer_key=key, n=10), items
    )

    assert [p.sku for p in answer.products] == skus_of(with_history)
    assert answer.reason == with_history["recommendation_reason"]


async def test_recalculated_vectors_equal_the_trained_ones(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """Every trained customer's history, read as on the hot path, gives back their vector."""
    artifact = service.recommendations.models.artifact
    assert artifact is not None
    model = artifact.model
    confidence = store_confidence()
    query = HistoryQuery(after=None, kinds=counted_kinds(confidence))
    async with shop.sessions() as session:
        customers = (await session.execute(select(Customer.customer_key, Customer.id))).all()
        ids = {key: customer_id for key, customer_id in customers if model.has_user(key)}
    cosines, same_top = [], 0
    for key, customer_id in ids.items():
        history = await shop.load_customer_history(customer_id, query)
        recalculated = fresh_vector(artifact, history, confidence)
        assert recalculated is not None
        trained = model.user_factors_[model.user_ids_.row(key)]
        vector = recalculated.vector
        cosines.append(float(vector @ trained / np.linalg.norm(vector) / np.linalg.norm(trained)))
        ranked = [s.item_id for s in model.recommend_for_vector(vector, 10)]
        same_top += ranked == [s.item_id for s in model.recommend(key, 10)]
    assert len(ids) > 100
    assert min(cosines) >= 0.999
    assert same_top >= 0.95 * len(ids)


async def test_training_records_its_data_cutoff(
    service: PersonalizationService, shop: SqlStore
) -> None:
    """The artifact's cutoff is the newest interaction trained on, not the training time."""
    artifact = service.recommendations.models.artifact
    assert artifact is not None
    async with shop.sessions() as session:
        newest = await session.scalar(select(func.max(Interaction.occurred_at)))
    assert artifact.metadata.trained_until == newest
    assert artifact.metadata.trained_until < datetime.fromisoformat(artifact.metadata.trained_at)


def test_artifacts_without_a_cutoff_use_their_training_time(
    tmp_path: Path, checkerboard_model: object
) -> None:
    """An artifact written before cutoffs were recorded still loads; cutoff = trained_at."""
    trained_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    saved = save_artifact(checkerboard_model, tmp_path, trained_at=trained_at)  # type: ignore[arg-type]
    metadata_path = saved.path / "metadata.json"
    cutoff_line = f'"data_cutoff": "{trained_at.isoformat()}",\n'
    old = metadata_path.read_text().replace(cutoff_line, "")
    assert "data_cutoff" not in old
    metadata_path.write_text(old)
    metadata = ArtifactMetadata.from_json(old)
    assert metadata.trained_until == trained_at
    assert load_latest(tmp_path).metadata.trained_until == trained_at


ENTRY_TIME = datetime(2026, 5, 1, tzinfo=timezone.utc)


def entry(sku: str, kind: str, count: int = 1, value: float | None = None) -> HistoryEntry:
    return HistoryEntry(sku, kind, value, count, ENTRY_TIME)


def test_history_is_weighted_as_training_sums_it() -> None:
    """Weights sum per product; a product viewed then disliked drops out, as in training."""
    confidence = ConfidenceWeights.ecommerce()
    skus, totals, newest = weighted_products(
        [
            entry("disliked", "feedback", value=-1.0),  # newest, but its total is <= 0
            entry("bought", "purchase"),
            entry("disliked", "view", 2),
            entry("bought", "view", 3),
            entry("ignored", "shown", 5),
        ],
        confidence,
    )
    assert dict(zip(skus, totals.tolist(), strict=True)) == {"bought": 11.0}
    assert newest == entry("bought", "purchase")


def test_a_history_of_unknown_products_gives_no_vector(checkerboard_model: object) -> None:
    """Products the model has never seen cannot place the customer: no vector, no error."""
    artifact = AlsArtifact(
        checkerboard_model,  # type: ignore[arg-type]
        ArtifactMetadata(version="v", trained_at=ENTRY_TIME.isoformat(), params={}, counts={}),
        Path("."),
    )
    history = CustomerHistory(
        HistoryQuery(after=None, kinds=frozenset({"view"})), (entry("not-in-model", "view"),)
    )
    assert fresh_vector(artifact, history, ConfidenceWeights.ecommerce()) is None
    known = CustomerHistory(history.query, (entry("A-sku-01", "view"), entry("A-sku-02", "view")))
    vector = fresh_vector(artifact, known, ConfidenceWeights.ecommerce())
    assert vector is not None
    assert vector.products == 2


def test_counted_kinds_leave_out_weightless_kinds() -> None:
    """Kinds "shown" and "category_asked" weigh nothing: they never make a history new."""
    kinds = counted_kinds(store_confidence())
    assert {"view", "purchase", "cart", "feedback", "rating"} <= kinds
    assert not {"shown", "category_asked"} & kinds


def test_items_default_to_no_history() -> None:
    """Callers that build items themselves are unaffected: no history, no customer id."""
    items = CustomerItems(purchased=frozenset(), recent=())
    assert (items.history, items.customer_id) == (None, None)
