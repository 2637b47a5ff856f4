"""Small builders of store rows for tests, keyed by external id like real callers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import (
    Customer,
    CustomerTag,
    Interaction,
    Product,
    SegmentAssignment,
)
from tests.conftest import TEST_SECRET

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


async def add_product(
    session: AsyncSession, sku: str, category: str, price: float = 50.0, **fields: Any
) -> Product:
    """A product row."""
    product = Product(
        sku=sku,
        title=fields.pop("title", f"Product {sku}"),
        description=fields.pop("description", ""),
        category=category,
        brand=fields.pop("brand", "Acme"),
        price=price,
        in_stock=fields.pop("in_stock", True),
        attributes=fields.pop("attributes", {}),
    )
    session.add(product)
    await session.flush()
    return product


async def add_customer(
    session: AsyncSession,
    external_id: str,
    *,
    tier: str = "none",
    tags: tuple[str, ...] = (),
    segment: str | None = None,
    **demographics: Any,
) -> Customer:
    """A customer row (plus tags and a stored segment when given)."""
    customer = Customer(
        customer_key=customer_key(TEST_SECRET, external_id),
        created_at=NOW - timedelta(days=365),
        loyalty_tier=tier,
        **demographics,
    )
    session.add(customer)
    await session.flush()
    for weight, tag in enumerate(reversed(tags), start=1):
        session.add(CustomerTag(customer_id=customer.id, tag=tag, source="test", weight=weight))
    if segment is not None:
        session.add(
            SegmentAssignment(
                customer_id=customer.id,
                segment=segment,
                method="kmeans",
                model_version="test-1",
                score=0.9,
                assigned_at=NOW,
            )
        )
    await session.flush()
    return customer


async def add_interactions(
    session: AsyncSession,
    customer: Customer,
    product: Product,
    kind: str,
    count: int,
    *,
    days_ago: float = 1.0,
    paid: float | None = None,
) -> None:
    """``count`` interactions of one kind, a day apart, ending ``days_ago`` before NOW."""
    for n in range(count):
        session.add(
            Interaction(
                event_id=f"{customer.id}-{product.sku}-{kind}-{days_ago}-{n}",
                customer_id=customer.id,
                product_id=product.id,
                kind=kind,
                quantity=1,
                price=paid if paid is not None else (product.price if kind == "purchase" else None),
                channel="web",
                device="desktop",
                occurred_at=NOW - timedelta(days=days_ago + n),
            )
        )
    await session.flush()
