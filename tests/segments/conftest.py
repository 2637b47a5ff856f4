"""Fixtures for segmentation: a tiny shop with known answers, and the seeded demo shop."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.segments.assign import true_groups
from rasa_personalize.segments.features import BASE_FEATURES, CustomerFeatures, compute_features
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def features_from(columns: Mapping[str, NDArray[np.float64]]) -> CustomerFeatures:
    """Features of ``len(column)`` customers with every base column (zeros unless given)."""
    n = len(next(iter(columns.values())))
    matrix = np.zeros((n, len(BASE_FEATURES)))
    for name, values in columns.items():
        matrix[:, BASE_FEATURES.index(name)] = values
    return CustomerFeatures(np.arange(1, n + 1, dtype=np.int64), matrix, BASE_FEATURES, NOW)


@dataclass(frozen=True)
class TinyShop:
    """Store ids of the tiny shop's customers and products, by name."""

    customers: dict[str, int]
    products: dict[str, int]


async def build_tiny_shop(session: AsyncSession) -> TinyShop:
    """Three customers whose features are worked out by hand in test_features.py.

    - ana (30, female, gold): bought a running item (list 100) for 80 twice over (one
      discounted purchase, quantity 2) 10 days ago and a book (list 20) at full price
      40 days ago; 3 running views and 1 chat click; active on 3 distinct days.
    - ben (nothing known): no interactions at all.
    - cleo (50, male, silver): 2 running views 5 days ago, 1 running view 60 days ago, a
      book view 70 days ago, a search without a product; never bought.
    """
    products = {
        "run-1": Product(sku="run-1", title="Road Shoe", category="running", price=50.0),
        "run-2": Product(sku="run-2", title="Trail Shoe", category="running", price=100.0),
        "run-3": Product(sku="run-3", title="Race Shoe", category="running", price=150.0),
        "book-1": Product(sku="book-1", title="Novel", category="books", price=10.0),
        "book-2": Product(sku="book-2", title="Atlas", category="books", price=20.0),
    }
    customers = {
        "ana": Customer(customer_key="k-ana", age=30, gender="female", loyalty_tier="gold"),
        "ben": Customer(customer_key="k-ben", loyalty_tier="none"),
        "cleo": Customer(customer_key="k-cleo", age=50, gender="male", loyalty_tier="silver"),
    }
    session.add_all([*products.values(), *customers.values()])
    await session.flush()
    events: list[tuple[str, str, str | None, datetime, float | None, int]] = [
        ("ana", "purchase", "run-2", NOW - 10 * DAY, 80.0, 2),
        ("ana", "view", "run-1", NOW - 10 * DAY - HOUR, None, 1),
        ("ana", "purchase", "book-2", NOW - 40 * DAY, 20.0, 1),
        ("ana", "view", "run-3", NOW - 3 * DAY, None, 1),
        ("ana", "view", "run-2", NOW - 3 * DAY + HOUR, None, 1),
        ("ana", "chat_click", "run-1", NOW - 3 * DAY + 2 * HOUR, None, 1),
        ("cleo", "view", "run-1", NOW - 5 * DAY - 3 * HOUR, None, 1),
        ("cleo", "view", "run-3", NOW - 5 * DAY - 2 * HOUR, None, 1),
        ("cleo", "search", None, NOW - 5 * DAY - HOUR, None, 1),
        ("cleo", "view", "run-2", NOW - 60 * DAY, None, 1),
        ("cleo", "view", "book-1", NOW - 70 * DAY, None, 1),
    ]
    session.add_all(
        Interaction(
            event_id=f"tiny-{n}",
            customer_id=customers[who].id,
            product_id=products[sku].id if sku else None,
            kind=kind,
            price=price,
            quantity=quantity,
            occurred_at=when,
        )
        for n, (who, kind, sku, when, price, quantity) in enumerate(events)
    )
    await session.flush()
    return TinyShop(
        customers={name: c.id for name, c in customers.items()},
        products={sku: p.id for sku, p in products.items()},
    )


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
