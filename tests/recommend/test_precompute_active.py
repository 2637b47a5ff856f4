"""``train --precompute --precompute-active-days N``: lists only for recent customers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from rasa_personalize.clock import utc_now
from rasa_personalize.identity import customer_key
from rasa_personalize.recommend.als import AlsParams
from rasa_personalize.recommend.training import train_from_store
from rasa_personalize.store.catalogue import active_customer_keys
from rasa_personalize.store.models import Customer, Interaction, PrecomputedRecommendations
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import add_customer, add_product

PARAMS = AlsParams(factors=4, regularization=1.0, iterations=3, alpha=1.0, weighting="none")


async def _shop(store: SqlStore) -> dict[str, int]:
    """Six customers buying four products each; ``recent-*`` last did so 2 days ago,
    ``lapsed-*`` 40 days ago (times from the real clock, as training reads it)."""
    now = utc_now()
    days_ago = {f"recent-{n}": 2 for n in range(3)} | {f"lapsed-{n}": 40 for n in range(3)}
    async with store.sessions.begin() as session:
        products = [await add_product(session, f"SKU-{n}", "running") for n in range(8)]
        for position, (name, days) in enumerate(days_ago.items()):
            customer = await add_customer(session, name)
            for offset, product in enumerate(products[position % 3 : position % 3 + 4]):
                session.add(
                    Interaction(
                        event_id=f"{name}-{product.sku}",
                        customer_id=customer.id,
                        product_id=product.id,
                        kind="purchase",
                        quantity=1,
                        price=product.price,
                        occurred_at=now - timedelta(days=days + offset),
                    )
                )
    return days_ago


async def test_only_recently_active_customers_get_lists(
    sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """With 7 active days, the three recent customers get lists and the lapsed none;
    without the option, everyone does."""
    await _shop(sqlite_store)
    recent = {customer_key(TEST_SECRET, f"recent-{n}") for n in range(3)}

    async with sqlite_store.sessions() as session:
        assert await active_customer_keys(session, utc_now() - timedelta(days=7)) == recent

    limited = await train_from_store(
        sqlite_store, tmp_path, params=PARAMS, precompute=True, precompute_active_days=7
    )
    async with sqlite_store.sessions() as session:
        listed = set(
            (
                await session.scalars(
                    select(Customer.customer_key).join(
                        PrecomputedRecommendations,
                        PrecomputedRecommendations.customer_id == Customer.id,
                    )
                )
            ).all()
        )
    everyone = await train_from_store(sqlite_store, tmp_path, params=PARAMS, precompute=True)

    assert limited.precomputed == 3
    assert listed == recent
    assert everyone.precomputed == 6
