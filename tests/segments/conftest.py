"""Fixtures for segmentation: the seeded demo shop, and features built by hand.

The tiny shop with known answers is in :mod:`tests.shops` (the store's tests use it too).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.segments.assign import true_groups
from rasa_personalize.segments.features import BASE_FEATURES, CustomerFeatures, compute_features
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store
from tests.shops import NOW


def features_from(columns: Mapping[str, NDArray[np.float64]]) -> CustomerFeatures:
    """Features of ``len(column)`` customers with every base column (zeros unless given)."""
    n = len(next(iter(columns.values())))
    matrix = np.zeros((n, len(BASE_FEATURES)))
    for name, values in columns.items():
        matrix[:, BASE_FEATURES.index(name)] = values
    return CustomerFeatures(np.arange(1, n + 1, dtype=np.int64), matrix, BASE_FEATURES, NOW)


@dataclass(frozen=True, eq=False)
class DemoShop:
    """The default demo shop, seeded once per test session into a SQLite file."""

    path: Path
    features: CustomerFeatures
    truth: list[str | None]


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> DemoShop:
    """The default ``DemoShopConfig`` (2,000 customers, six true groups), seeded at NOW."""
    path = tmp_path_factory.mktemp("demo") / "shop.db"

    async def seed() -> DemoShop:
        store = await migrated_store(f"sqlite:///{path}")
        try:
            async with store.sessions.begin() as session:
                await seed_demo_shop(session, DemoShopConfig(), secret_key=TEST_SECRET, now=NOW)
                await rebuild_profile_metrics(session, NOW)
            async with store.sessions() as session:
                features = await compute_features(session, now=NOW)
                truth = await true_groups(session, features.customer_ids)
        finally:
            await store.dispose()
        return DemoShop(path, features, truth)

    return asyncio.run(seed())


@pytest.fixture
async def demo_store(demo_shop: DemoShop, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A private copy of the seeded demo shop (tests may write to it)."""
    copy = tmp_path / "shop.db"
    shutil.copyfile(demo_shop.path, copy)
    store = SqlStore(f"sqlite:///{copy}")
    yield store
    await store.dispose()
