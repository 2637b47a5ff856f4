"""`personalize train --validation time`: the recency blend served from the store's
columns is the one the evaluation validates."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.demo_data import shop_positives
from rasa_personalize.recommend.ease import EaseBlend
from rasa_personalize.recommend.evaluation import (
    HybridConfig,
    RecommenderConfig,
    _HybridParts,
    pair_ranks,
)
from rasa_personalize.recommend.interactions import InteractionData
from rasa_personalize.recommend.protocols import time_split, validation_split
from rasa_personalize.recommend.served import ServedModel
from rasa_personalize.recommend.store_columns import evaluation_data, pair_rows
from rasa_personalize.recommend.training import pair_recency_ranks
from rasa_personalize.store.interaction_columns import KINDS, InteractionColumns

CUSTOMERS = 60
PRODUCTS = 24
STEPS = 8


def chain_columns() -> InteractionColumns:
    """Customers walk a chain of products one step at a time, their rows interleaved in
    insertion order; each views its first product again last (a pair's newest row
    decides its place) and dislikes one product it only viewed (the pair is dropped).
    Customer keys are the store ids as text, so both paths name customers alike."""
    rng = np.random.default_rng(5)
    kind = {name: code for code, name in enumerate(KINDS.tolist())}
    starts = rng.integers(0, PRODUCTS - STEPS, size=CUSTOMERS)
    customers, products, kinds, values = [], [], [], []
    for step in range(STEPS):
        for customer in range(CUSTOMERS):
            customers.append(customer)
            products.append(int(starts[customer]) + step)
            kinds.append(kind["purchase"] if step % 2 else kind["view"])
            values.append(np.nan)
    for customer in range(CUSTOMERS):
        customers += [customer, customer, customer]
        products += [int(starts[customer]), PRODUCTS - 1, PRODUCTS - 1]
        kinds += [kind["view"], kind["view"], kind["feedback"]]
        values += [np.nan, np.nan, -1.0]
    ids = np.arange(100, 100 + CUSTOMERS, dtype=np.int64)
    return InteractionColumns(
        customers=np.asarray(customers, dtype=np.intp),
        products=np.asarray(products, dtype=np.intp),
        kinds=np.asarray(kinds, dtype=np.int8),
        values=np.asarray(values, dtype=np.float64),
        customer_ids=ids,
        customer_keys=ids.astype(np.str_),
        product_ids=np.arange(PRODUCTS, dtype=np.int64),
        skus=np.asarray([f"sku-{i:02d}" for i in range(PRODUCTS)], dtype=np.str_),
        newest_at=datetime(2026, 6, 1, tzinfo=timezone.utc),
        catalogue_size=PRODUCTS,
    )


def test_store_ranks_are_the_evaluations() -> None:
    """pair_recency_ranks on the store's columns equals the evaluation's pair_ranks + 1
    on the same rows, pair for pair (newest row of a pair, dropped pairs left out)."""
    columns = chain_columns()
    pairs = pair_rows(columns, store_confidence())
    ranks = pair_recency_ranks(columns, pairs).tocoo()
    served = {
        (pairs.users.id_at(int(u)), pairs.items.id_at(int(i))): r
        for u, i, r in zip(ranks.row, ranks.col, ranks.data, strict=True)
    }
    events = evaluation_data(columns, shop_positives)
    interactions = InteractionData.from_events(
        events.user_ids, events.item_ids, events.kinds, events.values, store_confidence()
    )
    user_rows = np.searchsorted(np.unique(interactions.user_ids), interactions.user_ids)
    evaluated = pair_ranks(events, interactions, user_rows) + 1.0
    expected = dict(
        zip(
            zip(interactions.user_ids.tolist(), interactions.item_ids.tolist(), strict=True),
            evaluated.tolist(),
            strict=True,
        )
    )
    assert served == expected
    # The re-viewed first product is the newest; the disliked one is no pair at all.
    first = (str(columns.customer_keys[0]), f"sku-{int(columns.products[0]):02d}")
    assert served[first] == 1.0
    assert (first[0], f"sku-{PRODUCTS - 1:02d}") not in served


def test_served_recency_blend_from_the_store_ranks_as_evaluated() -> None:
    """The blend training serves (pair_rows, pair_recency_ranks, EaseBlend.fit) gives
    the lists the evaluation's hybrid ranker gives on the same interactions."""
    columns = chain_columns()
    config = HybridConfig(
        RecommenderConfig(
            AlsParams(factors=4, regularization=1.0, iterations=5, alpha=1.0),
            store_confidence(),
        ),
        ease_l2=5.0,
        ease_weight=2.0,
        ease_recency=2.0,
    )
    pairs = pair_rows(columns, store_confidence())
    als = AlsRecommender.from_params(config.als.params).fit_rows(
        pairs.users, pairs.items, pairs.user_rows, pairs.item_rows, pairs.weights
    )
    blend = EaseBlend.fit(
        pairs.matrix(),
        l2=config.ease_l2,
        weight=config.ease_weight,
        recency=config.ease_recency,
        ranks=pair_recency_ranks(columns, pairs),
    )
    served = ServedModel(als, blend)
    events = evaluation_data(columns, shop_positives)
    # The same ALS on both sides: what is compared is the EASE half and the blend.
    parts = replace(_HybridParts.fit(events, config.als), als=als)
    ranker = parts.ranker(
        parts.ease(config.ease_l2, config.ease_weight, config.ease_recency), fallback=None
    )
    for customer in ("100", "131", "159"):
        seen = frozenset(events.item_ids[events.user_ids == customer].tolist())
        assert ranker(customer, 5, seen) == [
            s.item_id for s in served.recommend(customer, 5, exclude=seen)
        ]


def test_validation_names_pick_their_split() -> None:
    """'random' keeps the seeded random splits, 'time' is time_split; others are refused."""
    assert validation_split("random") is None
    assert validation_split("time") is time_split
    with pytest.raises(InvalidInputError, match="random, time"):
        validation_split("weekly")  # type: ignore[arg-type]
