"""Fixtures for purchase propensity: a hand-made store with known answers, and a demo shop.

The hand-made store (:func:`seed_history`) has three customers whose features are worked
out by hand in ``test_features.py``; the demo shop is seeded once per test session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.repository import rebuild_profile_metrics
from tests.conftest import TEST_SECRET, migrated_store

# The end of the data in the hand-made store; the label week starts at CUTOFF.
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
CUTOFF = NOW - timedelta(days=7)
# A demo shop whose figures clear the targets (see test_training.py).
DEMO = DemoShopConfig(customers=2_000, products=300, interactions=50_000, seed=1)


@dataclass(frozen=True)
class History:
    """Store ids of the hand-made customers."""

    buyer: int  # two purchases, views, a cart; buys again in the label week
    quiet: int  # a customer row and nothing else
    late: int  # created inside the label week


def at(days_before_cutoff: float, hour: int = 12) -> datetime:
    """A moment ``days_before_cutoff`` days before CUTOFF, at ``hour`` UTC."""
    return (CUTOFF - timedelta(days=days_before_cutoff)).replace(hour=hour, minute=0)


async def seed_history(session: AsyncSession) -> History:
    """Three customers, two products; every interaction placed so features are known."""
    shoes = Product(sku="SKU-SHOE", title="Shoe", category="running", price=100.0)
    book = Product(sku="SKU-BOOK", title="Book", category="books", price=20.0)
    session.add_all([shoes, book])
    customers = [
        Customer(
            customer_key=customer_key(TEST_SECRET, name),
            created_at=created,
            loyalty_tier=tier,
        )
        for name, created, tier in (
            ("buyer", CUTOFF - timedelta(days=100), "gold"),
            ("quiet", CUTOFF - timedelta(days=30), "none"),
            ("late", CUTOFF + timedelta(days=2), "none"),
        )
    ]
    session.add_all(customers)
    await session.flush()
    buyer = customers[0]
    rows = [
        # (kind, product, days before the cut-off, hour, channel, device, price paid)
        ("view", shoes, 60.0, 8, "web", "desktop", None),
        ("purchase", shoes, 60.0, 9, "web", "desktop", 100.0),  # full price
        ("view", book, 20.0, 19, "app", "mobile", None),
        ("view", shoes, 10.0, 20, "app", "mobile", None),
        ("cart", shoes, 10.0, 21, "app", "mobile", None),
        ("purchase", book, 10.0, 23, "app", "mobile", 15.0),  # 75 % of list: discounted
        ("shown", book, 5.0, 12, "chat", None, None),  # the assistant's own: not activity
        # The label week: never a feature as of the cut-off.
        ("view", book, -1.0, 10, "app", "mobile", None),
        ("purchase", book, -2.0, 11, "app", "mobile", 20.0),
    ]
    session.add_all(
        Interaction(
            event_id=f"history-{n}",
            customer_id=buyer.id,
            product_id=product.id,
            kind=kind,
            quantity=1,
            price=price,
            channel=channel,
            device=device,
            occurred_at=at(days, hour),
        )
        for n, (kind, product, days, hour, channel, device, price) in enumerate(rows)
    )
    await session.flush()
    return History(buyer.id, customers[1].id, customers[2].id)


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The :data:`DEMO` shop seeded at NOW into a SQLite file, with profile metrics."""
    path = tmp_path_factory.mktemp("propensity") / "shop.db"

    async def seed() -> None:
        store = await migrated_store(f"sqlite:///{path}")
        try:
            async with store.sessions.begin() as session:
                await seed_demo_shop(session, DEMO, secret_key=TEST_SECRET, now=NOW)
                await rebuild_profile_metrics(session, NOW)
        finally:
            await store.dispose()

    asyncio.run(seed())
    return path
