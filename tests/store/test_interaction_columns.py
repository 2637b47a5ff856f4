"""The columnar read of interactions gives the rows of the list-based reads it replaced,
and training's data derived from it equals what the string-based path computes."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.demo_data import shop_positives, store_events, tuning_sample
from rasa_personalize.recommend.evaluation import EvaluationData
from rasa_personalize.recommend.interactions import InteractionData
from rasa_personalize.recommend.store_columns import pair_rows, popularity_rows, purchase_baskets
from rasa_personalize.store import interaction_columns
from rasa_personalize.store.catalogue import (
    read_latest_segments,
    read_popularity_rows,
    read_training_rows,
)
from rasa_personalize.store.evaluation_data import read_evaluation_rows
from rasa_personalize.store.interaction_columns import read_interaction_columns
from rasa_personalize.store.models import Interaction, SegmentAssignment
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer, add_product

KINDS = ("view", "cart", "purchase", "feedback", "rating", "chat_click", "shown", "search")


async def _seed(store: SqlStore, events: int = 400) -> None:
    """Customers, products and mixed interactions; one row moved out of insertion order."""
    draw = random.Random(3)
    async with store.sessions.begin() as session:
        products = [(await add_product(session, f"P{n:02d}", "books")).id for n in range(25)]
        await add_product(session, "NEVER", "toys")  # in the catalogue, never interacted with
        customers = [
            (await add_customer(session, f"c{n}", segment=("a", "b", None)[n % 3])).id
            for n in range(60)
        ]
        # Two methods' segments for one customer: popularity counts the greatest.
        session.add(
            SegmentAssignment(
                customer_id=customers[0],
                segment="z",
                method="rfm",
                model_version="test-1",
                assigned_at=NOW,
            )
        )
        for n in range(events):
            kind = draw.choice(KINDS)
            value = {"feedback": draw.choice((1.0, -1.0)), "rating": float(draw.randint(1, 5))}
            session.add(
                Interaction(
                    event_id=f"e{(n * 7919) % 100_003}",  # event ids do not sort as inserted
                    customer_id=draw.choice(customers),
                    product_id=None if kind == "search" else draw.choice(products),
                    kind=kind,
                    value=value.get(kind),
                    quantity=1,
                    occurred_at=NOW - timedelta(minutes=draw.randint(0, 10_000)),
                )
            )
        await session.flush()
    async with store.sessions.begin() as session:
        # On PostgreSQL an updated row moves to the table's end: physical order != ids.
        first = await session.scalar(
            Interaction.__table__.select()
            .with_only_columns(Interaction.id)
            .where(Interaction.product_id.is_not(None))
            .order_by(Interaction.id)
            .limit(1)
        )
        await session.execute(update(Interaction).where(Interaction.id == first).values(quantity=2))


async def test_columns_give_the_rows_of_the_list_reads(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same rows in insertion order as the evaluation read; same multiset and newest time
    as the training read; product-less events left out."""
    monkeypatch.setattr(interaction_columns, "READ_BATCH", 7)
    await _seed(store)
    async with store.sessions() as session:
        columns = await read_interaction_columns(session)
        evaluation = await read_evaluation_rows(session)
        training = await read_training_rows(session)
    assert len(columns) == len(evaluation) > 300
    assert columns.customer_ids[columns.customers].tolist() == evaluation.customer_ids
    assert columns.skus[columns.products].tolist() == evaluation.skus
    assert columns.kind_names().tolist() == evaluation.kinds
    expected_values = np.array([np.nan if v is None else v for v in evaluation.values])
    np.testing.assert_array_equal(columns.values, expected_values)
    assert columns.catalogue_size == evaluation.catalogue_size == 26
    as_rows = sorted(
        zip(
            columns.customer_keys[columns.customers].tolist(),
            columns.skus[columns.products].tolist(),
            columns.kind_names().tolist(),
            [None if np.isnan(v) else v for v in columns.values.tolist()],
            strict=True,
        ),
        key=repr,
    )
    old = sorted(
        zip(training.customer_keys, training.skus, training.kinds, training.values, strict=True),
        key=repr,
    )
    assert as_rows == old
    assert columns.newest_at == training.newest_at


async def test_an_empty_store_gives_empty_columns(store: SqlStore) -> None:
    async with store.sessions() as session:
        columns = await read_interaction_columns(session)
    assert len(columns) == 0
    assert columns.newest_at is None
    assert columns.catalogue_size == 0


async def test_training_data_from_columns_equals_the_string_path(store: SqlStore) -> None:
    """Pairs, id maps, fitted factors, the tuning sample and the baskets: equal to what
    InteractionData, AlsRecommender.fit and tuning_sample compute from the old reads."""
    await _seed(store)
    async with store.sessions() as session:
        columns = await read_interaction_columns(session)
        training = await read_training_rows(session)
        evaluation = await read_evaluation_rows(session)
    confidence = store_confidence()
    values = [np.nan if value is None else value for value in training.values]
    data = InteractionData.from_events(
        training.customer_keys, training.skus, training.kinds, values, confidence
    )
    pairs = pair_rows(columns, confidence)
    assert pairs.users.ids[pairs.user_rows].tolist() == data.user_ids.tolist()
    assert pairs.items.ids[pairs.item_rows].tolist() == data.item_ids.tolist()
    np.testing.assert_array_equal(pairs.weights, data.weights)

    params = {"factors": 4, "iterations": 3, "weighting": "bm25", "num_threads": 1}
    by_strings = AlsRecommender(**params).fit(data)
    by_rows = AlsRecommender(**params).fit_rows(
        pairs.users, pairs.items, pairs.user_rows, pairs.item_rows, pairs.weights
    )
    assert by_rows.user_ids_.ids.tolist() == by_strings.user_ids_.ids.tolist()
    assert by_rows.item_ids_.ids.tolist() == by_strings.item_ids_.ids.tolist()
    np.testing.assert_array_equal(by_rows.user_factors_, by_strings.user_factors_)
    np.testing.assert_array_equal(by_rows.item_factors_, by_strings.item_factors_)

    seen = pairs.seen()
    for key in set(training.customer_keys):
        assert sorted(seen.of(key)) == sorted(data.item_ids[data.user_ids == key].tolist())
    assert seen.of("nobody") == []

    kinds = np.asarray(evaluation.kinds, dtype=np.str_)
    value_array = np.asarray(evaluation.values, dtype=np.float64)
    whole = EvaluationData.from_events(
        [str(customer) for customer in evaluation.customer_ids],
        evaluation.skus,
        kinds,
        value_array,
        shop_positives(kinds, value_array),
        catalogue_size=evaluation.catalogue_size,
        times=np.arange(len(kinds), dtype=np.float64),
    )
    for customers in (None, 25, 60):
        expected = whole if customers is None else tuning_sample(whole, customers, seed=42)
        got = store_events(columns, customers=customers, seed=42)
        assert got.user_ids.tolist() == expected.user_ids.tolist()
        assert got.item_ids.tolist() == expected.item_ids.tolist()
        assert got.kinds.tolist() == expected.kinds.tolist()
        np.testing.assert_array_equal(got.values, expected.values)
        np.testing.assert_array_equal(got.positive, expected.positive)
        assert got.times is not None
        assert expected.times is not None
        np.testing.assert_array_equal(got.times, expected.times)
        assert got.catalogue_size == expected.catalogue_size
        # A sample drawn from it keeps it whole: the search and guardrail use it as is.
        if customers is not None:
            assert len(tuning_sample(got, customers, seed=42)) == len(got)

    baskets, skus = purchase_baskets(columns)
    purchases = [
        (key, sku)
        for key, sku, kind in zip(
            training.customer_keys, training.skus, training.kinds, strict=True
        )
        if kind == "purchase"
    ]
    assert len(baskets) == len(skus) == len(purchases)
    key_of = dict(zip(columns.customer_ids.tolist(), columns.customer_keys.tolist(), strict=True))
    assert sorted(zip([key_of[int(b)] for b in baskets], skus.tolist(), strict=True)) == sorted(
        purchases
    )


async def test_popularity_from_columns_equals_the_stores_counts(store: SqlStore) -> None:
    """What training stores with the content model is what a server would count."""
    await _seed(store)
    async with store.sessions() as session:
        columns = await read_interaction_columns(session)
        segment_customers, segments = await read_latest_segments(session)
    async with store.engine.connect() as connection:
        expected = await connection.run_sync(read_popularity_rows)
    got = popularity_rows(
        columns, np.asarray(segment_customers, dtype=np.int64), np.asarray(segments, np.str_)
    )
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert {segment for _, segment, _, _ in got} == {"a", "b", "z", None}
