"""Precomputed lists in a real Redis: written by training, read by the hot path."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rasa_personalize.cache.precomputed import PrecomputedCache, cache_key
from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.recommend.training import train_from_store
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer, add_interactions, add_product

pytestmark = pytest.mark.redis


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[PrecomputedCache]:
    precomputed = PrecomputedCache(redis_url, timeout_s=2.0)
    yield precomputed
    await precomputed.close()


async def test_round_trip(cache: PrecomputedCache) -> None:
    """What is written under a customer key reads back with its model version."""
    key = f"test-{uuid.uuid4().hex}"
    assert await cache.write([(key, [["SKU-1", 0.9], ["SKU-2", 0.5]])], "v1") == 1
    assert await cache.read(key) == ((("SKU-1", 0.9), ("SKU-2", 0.5)), "v1")
    assert await cache.read(f"missing-{key}") is None


async def test_unreachable_redis_reads_as_not_cached() -> None:
    """Nothing listens on the port: the read says 'not cached' instead of failing."""
    unreachable = PrecomputedCache("redis://127.0.0.1:1/0", timeout_s=0.2)
    try:
        assert await unreachable.read("anyone") is None
    finally:
        await unreachable.close()


async def test_training_writes_redis_and_the_hot_path_reads_it(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, redis_url: str, cache: PrecomputedCache
) -> None:
    """With Redis configured, a known customer's list comes from Redis (same items)."""
    async with sqlite_store.sessions.begin() as session:
        products = [await add_product(session, f"SKU-{n}", "running") for n in range(8)]
        for person in range(6):
            customer = await add_customer(session, f"r-{person}")
            for product in products[person % 3 : person % 3 + 4]:
                await add_interactions(session, customer, product, "purchase", 1)
        await rebuild_profile_metrics(session, now=NOW)
    settings = make_settings(sqlite_url, model_dir=tmp_path / "models", redis_url=redis_url)
    report = await train_from_store(sqlite_store, settings.model_dir, precompute=True, cache=cache)
    cached = await cache.read(customer_key(TEST_SECRET, "r-0"))
    assert cached is not None
    assert cached[1] == report.version

    service = PersonalizationService(
        settings, sqlite_store, clock=lambda: NOW, rules=RuleBook(tmp_path / "none.yml")
    )
    ask = PersonalizationRequest(CustomerIdentity("r-0", "message_metadata"))
    try:
        await service.warm_up()
        plan = await service.recommend(ask)
        # Proof the hot path reads Redis: a list only Redis holds (SKU-7 is in no
        # interaction, so the model could never rank it) is what comes back.
        await cache.write([(customer_key(TEST_SECRET, "r-0"), [["SKU-7", 1.0]])], report.version)
        from_redis = await service.recommend(ask, n=1)
    finally:
        await service.close()
    assert [p["sku"] for p in from_redis["recommended_products"]] == ["SKU-7"]
    shown = [p["sku"] for p in plan["recommended_products"]]
    assert plan["recommendation_source"] == "als"
    # the cached list (r-0's purchases already left out) leads, in the cached order
    expected = [sku for sku, _ in cached[0]]
    assert expected
    assert shown[: len(expected)] == expected[: len(shown)]
    assert cache_key("x").startswith("personalize:precomputed:")
