"""Feature aggregates in SQL: the tiny shop's sums, worked out by hand, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from rasa_personalize.store import features
from rasa_personalize.store.features import (
    CUSTOMER_TOTALS,
    GENDER_FEMALE,
    GENDER_MALE,
    GENDER_OTHER,
    GENDER_UNKNOWN,
    category_prices,
    count_customers,
    stream_category_totals,
    stream_customer_totals,
)
from rasa_personalize.store.models import Customer
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.store.types import Session
from tests.shops import DAY, NOW, TinyShop, build_tiny_shop

# Columns as in CUSTOMER_TOTALS, worked out from the events in build_tiny_shop.
ANA = {
    "purchases": 2,
    "spent": 80.0 * 2 + 20.0,
    "last_purchase": (NOW - 10 * DAY).timestamp(),
    "sessions": 3,  # days -10, -40 and -3
    "views": 3,
    "clicks": 1,
    "age": 30,
    "gender": GENDER_FEMALE,
    "loyalty_tier": 2,  # gold
}
BEN = {
    "purchases": 0,
    "spent": 0.0,
    "last_purchase": -1.0,  # never bought
    "sessions": 0,
    "views": 0,
    "clicks": 0,
    "age": -1,  # unknown
    "gender": GENDER_UNKNOWN,
    "loyalty_tier": 0,
}
CLEO = {
    "purchases": 0,
    "spent": 0.0,
    "last_purchase": -1.0,
    "sessions": 3,  # days -5 (views and a search), -60 and -70
    "views": 4,
    "clicks": 0,
    "age": 50,
    "gender": GENDER_MALE,
    "loyalty_tier": 1,  # silver
}
# (customer, category): weight, priced purchases, price paid, discounted purchases.
CATEGORY_SUMS = {
    # A purchase (5), three views (1 each) and a chat click (2); 80 < 0.95 x 100.
    ("ana", "running"): (10.0, 1.0, 80.0, 1.0),
    ("ana", "books"): (5.0, 1.0, 20.0, 0.0),  # bought at list price
    ("cleo", "running"): (3.0, 0.0, 0.0, 0.0),
    # cleo's search had no product: it belongs to no category.
    ("cleo", "books"): (1.0, 0.0, 0.0, 0.0),
}


async def customer_totals(session: Session, ids: list[int] | None = None) -> NDArray[np.float64]:
    parts = [part async for part in stream_customer_totals(session, ids)]
    return np.concatenate(parts) if parts else np.zeros((0, len(CUSTOMER_TOTALS)))


async def category_sums(
    session: Session, shop: TinyShop, ids: list[int] | None = None
) -> dict[tuple[str, str], tuple[float, ...]]:
    names = {customer_id: name for name, customer_id in shop.customers.items()}
    found: dict[tuple[str, str], tuple[float, ...]] = {}
    async for totals in stream_category_totals(session, ids):
        for n, category in enumerate(totals.categories):
            key = (names[int(totals.customer_ids[n])], category)
            found[key] = tuple(
                float(column[n])
                for column in (totals.weight, totals.priced, totals.paid, totals.discounted)
            )
    return found


def as_dicts(rows: NDArray[np.float64]) -> dict[int, dict[str, float]]:
    return {
        int(row[0]): dict(zip(CUSTOMER_TOTALS[1:], row[1:].tolist(), strict=True)) for row in rows
    }


async def test_customer_totals_of_a_tiny_shop(store: SqlStore) -> None:
    """One row per customer, ascending ids, every column as worked out by hand."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        rows = await customer_totals(session)
    assert rows.dtype == np.float64
    assert rows[:, 0].tolist() == sorted(shop.customers.values())
    totals = as_dicts(rows)
    for name, expected in (("ana", ANA), ("ben", BEN), ("cleo", CLEO)):
        assert totals[shop.customers[name]] == pytest.approx(expected, abs=1e-3), name


async def test_customer_totals_of_some_customers_in_chunks(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chosen ids (unknown ones skipped) give the same rows, however they are chunked."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        everyone = as_dicts(await customer_totals(session))
        wanted = sorted([shop.customers["ana"], shop.customers["cleo"], 999])
        some = await customer_totals(session, wanted)
        monkeypatch.setattr(features, "ID_CHUNK", 1)
        one_by_one = await customer_totals(session, wanted)
    assert some[:, 0].tolist() == [shop.customers["ana"], shop.customers["cleo"]]
    np.testing.assert_array_equal(one_by_one, some)
    assert as_dicts(some) == {key: everyone[key] for key in as_dicts(some)}


async def test_category_totals_of_a_tiny_shop(store: SqlStore) -> None:
    """Per customer and category: weight, priced purchases, price paid, discounted."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        everyone = await category_sums(session, shop)
        cleo = await category_sums(session, shop, [shop.customers["cleo"]])
    assert everyone.keys() == CATEGORY_SUMS.keys()
    for key, sums in CATEGORY_SUMS.items():
        assert everyone[key] == pytest.approx(sums), key
    assert cleo == {key: value for key, value in CATEGORY_SUMS.items() if key[0] == "cleo"}


async def test_catalogue_prices_and_customer_count(store: SqlStore) -> None:
    """List prices grouped by category, and how many customers there are."""
    async with store.sessions.begin() as session:
        empty = await count_customers(session), await category_prices(session)
        await build_tiny_shop(session)
        prices = await category_prices(session)
        customers = await count_customers(session)
    assert empty == (0, {})
    assert {category: sorted(values) for category, values in prices.items()} == {
        "running": [50.0, 100.0, 150.0],
        "books": [10.0, 20.0],
    }
    assert customers == 3


async def test_gender_is_coded_whatever_its_case(store: SqlStore) -> None:
    """Female and male in any case, other stated values, and empty or missing ones."""
    genders = {"a": "FEMALE", "b": "Male", "c": "nonbinary", "d": "", "e": None}
    async with store.sessions.begin() as session:
        customers = {
            name: Customer(customer_key=f"k-{name}", gender=g) for name, g in genders.items()
        }
        session.add_all(customers.values())
        await session.flush()
        totals = as_dicts(await customer_totals(session))
    column = {name: totals[customer.id]["gender"] for name, customer in customers.items()}
    assert column == {
        "a": GENDER_FEMALE,
        "b": GENDER_MALE,
        "c": GENDER_OTHER,
        "d": GENDER_UNKNOWN,
        "e": GENDER_UNKNOWN,
    }
