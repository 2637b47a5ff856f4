"""Tuning at scale: the parameter search runs on a seeded sample of customers, and no
EASE blend is tried for catalogues too large for its dense inverse."""

from __future__ import annotations

import numpy as np

from rasa_personalize.recommend.als import AlsParams
from rasa_personalize.recommend.demo_data import tune_for_store, tuning_sample
from rasa_personalize.recommend.ease import MAX_EASE_ITEMS
from rasa_personalize.recommend.evaluation import EvaluationData


def _shop(customers: int, *, catalogue_size: int = 40) -> EvaluationData:
    """Each customer views four products of one of two blocks and buys two of them."""
    users, items, kinds = [], [], []
    for customer in range(customers):
        block = customer % 2
        for n in range(4):
            users.append(f"c{customer:05d}")
            items.append(f"p{block * 10 + (customer + n) % 10:02d}")
            kinds.append("purchase" if n < 2 else "view")
    kind_array = np.array(kinds)
    return EvaluationData.from_events(
        users,
        items,
        kind_array,
        np.full(len(users), np.nan),
        kind_array == "purchase",
        catalogue_size=catalogue_size,
    )


def test_sample_keeps_every_row_of_the_chosen_customers() -> None:
    """At most N customers, all of their rows, in the original order; the same sample
    for the same seed; the whole data when it has no more customers."""
    data = _shop(50)

    sample = tuning_sample(data, 20, seed=42)

    assert len(np.unique(sample.user_ids)) == 20
    assert len(sample) == 20 * 4
    rows = {(u, i) for u, i in zip(data.user_ids.tolist(), data.item_ids.tolist(), strict=True)}
    assert set(zip(sample.user_ids.tolist(), sample.item_ids.tolist(), strict=True)) <= rows
    positions = [
        next(
            n
            for n, (u, i) in enumerate(zip(data.user_ids, data.item_ids, strict=True))
            if (u, i) == pair
        )
        for pair in zip(sample.user_ids, sample.item_ids, strict=True)
    ]
    assert positions == sorted(positions)
    assert np.array_equal(tuning_sample(data, 20, seed=42).user_ids, sample.user_ids)
    assert not np.array_equal(tuning_sample(data, 20, seed=1).user_ids, sample.user_ids)
    assert tuning_sample(data, 50, seed=42) is data


def test_no_blend_is_tried_past_the_ease_limit() -> None:
    """A catalogue over MAX_EASE_ITEMS products: ALS alone, with the ALS figures."""
    grid = [AlsParams(factors=4, regularization=1.0, iterations=3, alpha=1.0, weighting="none")]
    data = _shop(400, catalogue_size=MAX_EASE_ITEMS + 1)

    tuning = tune_for_store(data, grid=grid)

    assert tuning.recommender == tuning.als
    assert len(tuning.blend_results) == 1
    assert tuning.blend_results[0].config.ease_weight == 0.0
    assert tuning.blend_results[0].metrics == tuning.als_results[0].metrics
