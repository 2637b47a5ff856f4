"""A tiny shop whose every aggregate is worked out by hand (tests/segments/test_features.py
and tests/store/test_features.py check against it), on any backend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.store.models import Customer, Interaction, Product

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


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
