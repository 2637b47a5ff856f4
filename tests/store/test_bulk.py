"""Bulk inserts that skip stored keys, on SQLite and PostgreSQL (unnest arrays there)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from rasa_personalize.store.bulk import insert_new_rows
from rasa_personalize.store.interactions import INTERACTIONS
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer, add_product


def row(event_id: str, customer_id: int, product_id: int | None, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": customer_id,
        "product_id": product_id,
        "kind": "purchase",
        "value": None,
        "quantity": 2,
        "price": 9.99,
        "channel": "web",
        "device": None,
        "location": "Berlin",
        "category": None,
        "occurred_at": NOW - timedelta(minutes=5),
    }
    values.update(changes)
    return values


async def owners(store: SqlStore) -> tuple[int, int]:
    async with store.sessions.begin() as session:
        product = await add_product(session, "SKU-1", "shoes")
        customer = await add_customer(session, "ada")
        return customer.id, product.id


async def test_returns_the_keys_inserted_and_skips_stored_ones(store: SqlStore) -> None:
    """Only new keys are inserted and returned; the stored row keeps its values."""
    customer_id, product_id = await owners(store)
    async with store.sessions.begin() as session:
        first = await insert_new_rows(
            session, INTERACTIONS, "event_id", [row("a", customer_id, product_id)]
        )
    async with store.sessions.begin() as session:
        second = await insert_new_rows(
            session,
            INTERACTIONS,
            "event_id",
            [row("a", customer_id, None, price=1.0), row("b", customer_id, None, kind="view")],
        )
    assert (first, second) == (frozenset({"a"}), frozenset({"b"}))
    async with store.sessions() as session:
        stored = (
            await session.execute(
                select(
                    INTERACTIONS.c.event_id,
                    INTERACTIONS.c.product_id,
                    INTERACTIONS.c.kind,
                    INTERACTIONS.c.quantity,
                    INTERACTIONS.c.price,
                    INTERACTIONS.c.location,
                    INTERACTIONS.c.occurred_at,
                ).order_by(INTERACTIONS.c.event_id)
            )
        ).all()
    at = NOW - timedelta(minutes=5)
    assert [tuple(r) for r in stored] == [
        ("a", product_id, "purchase", 2, 9.99, "Berlin", at),
        ("b", None, "view", 2, 9.99, "Berlin", at),
    ]


async def test_no_rows_is_no_statement(store: SqlStore) -> None:
    """An empty batch inserts nothing and answers with no keys."""
    async with store.sessions.begin() as session:
        assert await insert_new_rows(session, INTERACTIONS, "event_id", []) == frozenset()


async def test_a_too_long_value_is_refused_on_postgresql(store: SqlStore) -> None:
    """Text longer than its column fails the insert (the arrays carry no length that
    would cut it silently); SQLite, which has no lengths, keeps it whole."""
    customer_id, _ = await owners(store)
    rows = [row("a", customer_id, None, location="x" * 200)]
    if store.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError):
            async with store.sessions.begin() as session:
                await insert_new_rows(session, INTERACTIONS, "event_id", rows)
        return
    async with store.sessions.begin() as session:
        assert await insert_new_rows(session, INTERACTIONS, "event_id", rows) == {"a"}


@pytest.mark.parametrize("size", [1, 1_500, 5_000])
async def test_batch_sizes(store: SqlStore, size: int) -> None:
    """Every row of a batch is inserted, whatever its size."""
    customer_id, _ = await owners(store)
    rows = [row(f"e{n}", customer_id, None) for n in range(size)]
    async with store.sessions.begin() as session:
        inserted = await insert_new_rows(session, INTERACTIONS, "event_id", rows)
    assert inserted == frozenset(f"e{n}" for n in range(size))
