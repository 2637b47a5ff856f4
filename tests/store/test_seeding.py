"""Bulk loading: plain and insert-ignoring chunked inserts, counts and id maps (both backends)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from rasa_personalize.store import seeding
from rasa_personalize.store.models import (
    Customer,
    CustomerProfile,
    CustomerTag,
    Interaction,
    Product,
)
from rasa_personalize.store.seeding import (
    CustomerRow,
    InteractionRow,
    ProductRow,
    ProfileRow,
    TagRow,
    bulk_insert_customers,
    bulk_insert_interactions,
    bulk_insert_products,
    bulk_insert_tags,
    count_customers,
    count_products,
    customer_ids,
    insert_new_customers,
    insert_new_interactions,
    insert_new_products,
    insert_new_profiles,
    product_ids,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW


def product_row(sku: str, price: float = 10.0) -> ProductRow:
    """A product to insert."""
    return {
        "sku": sku, "title": f"Title {sku}", "description": "", "category": "books",
        "brand": None, "price": price, "in_stock": True, "attributes": {"pages": 100},
    }  # fmt: skip


def customer_row(key: str, age: int | None = 30) -> CustomerRow:
    """A customer to insert."""
    return {
        "customer_key": key, "created_at": NOW - timedelta(days=10), "age": age,
        "gender": None, "country": None, "city": None, "loyalty_tier": "none",
        "synthetic_group": None,
    }  # fmt: skip


def interaction_row(
    event_id: str, customer_id: int, product_id: int | None, value: float | None = None
) -> InteractionRow:
    """A view (or a rating when ``value`` is given) to insert."""
    return {
        "event_id": event_id, "customer_id": customer_id, "product_id": product_id,
        "kind": "view" if value is None else "rating", "value": value, "quantity": 1,
        "price": None, "channel": "web", "device": None, "occurred_at": NOW,
    }  # fmt: skip


async def test_bulk_inserts_write_every_row_in_chunks_and_report_progress(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five products in chunks of two: three statements, progress 0, 2, 4, 5 of 5."""
    monkeypatch.setattr(seeding, "INSERT_CHUNK", 2)
    calls: list[tuple[int, int]] = []
    async with store.sessions.begin() as session:
        await bulk_insert_products(
            session,
            [product_row(f"SKU-{n}", price=n + 0.99) for n in range(5)],
            lambda done, total: calls.append((done, total)),
        )
    async with store.sessions() as session:
        stored = await session.execute(select(Product.sku, Product.price, Product.attributes))
        rows = sorted(tuple(row) for row in stored.all())
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert rows == [(f"SKU-{n}", n + 0.99, {"pages": 100}) for n in range(5)]


async def test_bulk_inserts_of_customers_interactions_and_tags_link_by_id(
    store: SqlStore,
) -> None:
    """Ids from the id maps link interactions and tags to what was inserted before."""
    async with store.sessions.begin() as session:
        await bulk_insert_products(session, [product_row("A"), product_row("B")])
        await bulk_insert_customers(session, [customer_row("k1"), customer_row("k2", age=None)])
        products = await product_ids(session)
        customers = await customer_ids(session)
        await bulk_insert_interactions(
            session,
            [
                interaction_row("e1", customers["k1"], products["A"]),
                interaction_row("e2", customers["k2"], None),  # a search without a product
            ],
        )
        tags: list[TagRow] = [
            {"customer_id": customers["k1"], "tag": "premium", "source": "seed",
             "weight": 1.0, "updated_at": NOW},
        ]  # fmt: skip
        await bulk_insert_tags(session, tags)
    async with store.sessions() as session:
        interactions = (
            await session.execute(
                select(Customer.customer_key, Interaction.event_id, Product.sku)
                .join(Customer, Customer.id == Interaction.customer_id)
                .outerjoin(Product, Product.id == Interaction.product_id)
                .order_by(Interaction.event_id)
            )
        ).all()
        tag_rows = (
            await session.execute(
                select(Customer.customer_key, CustomerTag.tag).join(
                    Customer, Customer.id == CustomerTag.customer_id
                )
            )
        ).all()
        ages = dict((await session.execute(select(Customer.customer_key, Customer.age))).all())
        assert (await count_customers(session), await count_products(session)) == (2, 2)
    assert [tuple(row) for row in interactions] == [("k1", "e1", "A"), ("k2", "e2", None)]
    assert [tuple(row) for row in tag_rows] == [("k1", "premium")]
    assert ages == {"k1": 30, "k2": None}


async def test_counts_of_an_empty_store_are_zero(store: SqlStore) -> None:
    """An empty store holds no customers and no products."""
    async with store.sessions() as session:
        assert await count_customers(session) == 0
        assert await count_products(session) == 0


async def test_insert_new_skips_stored_keys_and_counts_only_inserted_rows(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun with one new row inserts that row alone; stored rows keep their values."""
    monkeypatch.setattr(seeding, "INSERT_CHUNK", 2)
    async with store.sessions.begin() as session:
        first = await insert_new_products(session, [product_row("A", 1.0), product_row("B")])
        first_customers = await insert_new_customers(session, [customer_row("k1")])
    calls: list[tuple[int, int]] = []
    async with store.sessions.begin() as session:
        again = await insert_new_products(
            session,
            [product_row("A", price=99.0), product_row("B"), product_row("C")],
            lambda done, total: calls.append((done, total)),
        )
        again_customers = await insert_new_customers(
            session, [customer_row("k1", age=80), customer_row("k2")]
        )
    async with store.sessions() as session:
        prices = dict((await session.execute(select(Product.sku, Product.price))).all())
        ages = dict((await session.execute(select(Customer.customer_key, Customer.age))).all())
    assert (first, first_customers, again, again_customers) == (2, 1, 1, 1)
    assert calls == [(0, 3), (2, 3), (3, 3)]
    assert prices == {"A": 1.0, "B": 10.0, "C": 10.0}
    assert ages == {"k1": 30, "k2": 30}


async def test_insert_new_profiles_and_interactions_keep_what_is_stored(store: SqlStore) -> None:
    """A stored profile stays as it is; a stored event id is not inserted twice."""
    async with store.sessions.begin() as session:
        await bulk_insert_products(session, [product_row("A")])
        await bulk_insert_customers(session, [customer_row("k1"), customer_row("k2")])
        customers = await customer_ids(session)
        product = (await product_ids(session, ["A"]))["A"]

        def profile(customer_id: int, source: str) -> ProfileRow:
            return {"customer_id": customer_id, "attributes": {"source": source},
                    "metrics": {}, "version": 1, "updated_at": NOW}  # fmt: skip

        first = await insert_new_profiles(session, [profile(customers["k1"], "crm")])
        second = await insert_new_profiles(
            session, [profile(customers["k1"], "movielens"), profile(customers["k2"], "movielens")]
        )
        events = await insert_new_interactions(
            session, [interaction_row("e1", customers["k1"], product, value=4.0)]
        )
        events_again = await insert_new_interactions(
            session,
            [
                interaction_row("e1", customers["k1"], product, value=1.0),
                interaction_row("e2", customers["k2"], product, value=5.0),
            ],
        )
    async with store.sessions() as session:
        sources = {
            customer_id: attributes["source"]
            for customer_id, attributes in (
                await session.execute(
                    select(CustomerProfile.customer_id, CustomerProfile.attributes)
                )
            ).all()
        }
        values = dict(
            (await session.execute(select(Interaction.event_id, Interaction.value))).all()
        )
    assert (first, second, events, events_again) == (1, 1, 1, 1)
    assert sources == {customers["k1"]: "crm", customers["k2"]: "movielens"}
    assert values == {"e1": 4.0, "e2": 5.0}


async def test_id_maps_answer_the_stored_keys_asked_for_across_chunks(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five keys in lookups of two: every stored one found, an unknown one left out."""
    monkeypatch.setattr(seeding, "LOOKUP_CHUNK", 2)
    async with store.sessions.begin() as session:
        await bulk_insert_products(session, [product_row(f"SKU-{n}") for n in range(4)])
        await bulk_insert_customers(session, [customer_row(f"key-{n}") for n in range(4)])
    async with store.sessions() as session:
        every_product = await product_ids(session)
        every_customer = await customer_ids(session)
        some_products = await product_ids(session, (f"SKU-{n}" for n in (3, 1, 9, 0, 2)))
        some_customers = await customer_ids(session, ["key-2", "key-9"])
        none = await product_ids(session, [])
    assert sorted(every_product) == [f"SKU-{n}" for n in range(4)]
    assert len(set(every_product.values())) == 4
    assert some_products == every_product
    assert sorted(every_customer) == [f"key-{n}" for n in range(4)]
    assert some_customers == {"key-2": every_customer["key-2"]}
    assert none == {}
