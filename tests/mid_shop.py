"""A mid-sized demo shop for the guardrail and pipeline tests, seeded once per session.

600 customers and 20,000 interactions: large enough that the recommender guardrail has
133 customers with a held-out purchase to judge on and the propensity model learns
something (ROC AUC about 0.76), small enough that a training run takes a few seconds.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

import pytest

from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.recommend.als import AlsParams
from rasa_personalize.store.repository import rebuild_profile_metrics
from tests.conftest import TEST_SECRET, migrated_store

SEEDED_AT: Final = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
MID_SHOP: Final = DemoShopConfig(customers=600, products=80, interactions=20_000, days=150, seed=3)
# ALS parameters that do well on it (validation's choice for this shop), and ones that
# do badly: one sweep of 64 barely regularized factors.
GOOD_ALS: Final = AlsParams(factors=16, regularization=10.0, alpha=2.0, weighting="bm25")
BAD_ALS: Final = AlsParams(
    factors=64, regularization=0.0001, iterations=1, alpha=1.0, weighting="none"
)

_seeded: dict[str, Path] = {}


def mid_shop_file(factory: pytest.TempPathFactory) -> Path:
    """The seeded SQLite file (seeded on the first call of the session)."""
    if "path" not in _seeded:
        path = factory.mktemp("mid-shop") / "shop.db"

        async def seed() -> None:
            store = await migrated_store(f"sqlite:///{path}")
            try:
                async with store.sessions.begin() as session:
                    await seed_demo_shop(session, MID_SHOP, secret_key=TEST_SECRET, now=SEEDED_AT)
                    await rebuild_profile_metrics(session, SEEDED_AT)
            finally:
                await store.dispose()

        asyncio.run(seed())
        _seeded["path"] = path
    return _seeded["path"]


def copy_of_mid_shop(factory: pytest.TempPathFactory, directory: Path) -> str:
    """A private copy of the shop in ``directory``, as a store URL."""
    copy = directory / "shop.db"
    shutil.copyfile(mid_shop_file(factory), copy)
    return f"sqlite:///{copy}"
