"""The store's interactions as evaluation rows: order, product-less events, catalogue size."""

from __future__ import annotations

import pytest

from rasa_personalize.store import evaluation_data
from rasa_personalize.store.evaluation_data import read_evaluation_rows
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer, add_product


async def test_rows_follow_insertion_order_and_skip_product_less_events(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Insertion order across stream batches; a search without product is left out."""
    monkeypatch.setattr(evaluation_data, "READ_BATCH", 2)
    async with store.sessions.begin() as session:
        products = {
            sku: (await add_product(session, sku, category)).id
            for sku, category in (("A", "books"), ("B", "books"), ("C", "toys"))
        }  # C is never interacted with
        anna = await add_customer(session, "anna")
        ben = await add_customer(session, "ben")
        ids = {"anna": anna.id, "ben": ben.id}
        # (customer, sku, kind, value), in insertion order; event ids sort otherwise.
        events = [
            ("ben", "B", "view", None),
            ("ben", "A", "purchase", None),
            ("ben", None, "search", None),
            ("anna", "A", "feedback", -1.0),
            ("anna", "B", "rating", 5.0),
        ]
        for n, (name, sku, kind, value) in enumerate(events):
            session.add(
                Interaction(
                    event_id=f"z-{len(events) - n}",
                    customer_id=ids[name],
                    product_id=products[sku] if sku is not None else None,
                    kind=kind,
                    value=value,
                    quantity=1,
                    occurred_at=NOW,
                )
            )
            await session.flush()
    async with store.sessions() as session:
        rows = await read_evaluation_rows(session)
    assert rows.customer_ids == [ids["ben"], ids["ben"], ids["anna"], ids["anna"]]
    assert rows.skus == ["B", "A", "A", "B"]
    assert rows.kinds == ["view", "purchase", "feedback", "rating"]
    assert rows.values == [None, None, -1.0, 5.0]
    assert rows.catalogue_size == 3
    assert len(rows) == 4


async def test_an_empty_store_gives_no_rows(store: SqlStore) -> None:
    """No interactions and no products: empty lists and a catalogue of zero."""
    async with store.sessions() as session:
        rows = await read_evaluation_rows(session)
    assert (rows.customer_ids, rows.skus, rows.kinds, rows.values) == ([], [], [], [])
    assert rows.catalogue_size == 0
    assert len(rows) == 0
