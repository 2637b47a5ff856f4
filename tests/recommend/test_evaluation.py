"""Metrics on hand-computed examples; the split and the protocol on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.evaluation import (
    UNTUNED_ALS_PARAMS,
    EvaluationData,
    EvaluationTask,
    RecommenderConfig,
    average_precision_at_k,
    catalogue_coverage,
    evaluate_models,
    ndcg_at_k,
    precision_at_k,
    random_split,
    score_rankings,
    tune_on_validation,
    uniform_confidence,
)
from tests.recommend.conftest import block_ratings

# Recommended a, b, c, d, e; relevant {a, c, x} (x is never recommended).
RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"a", "c", "x"}


def test_precision_at_k() -> None:
    """2 hits in the top 5 -> 2/5; in the top 2 -> 1/2; a short list still divides by k."""
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 5)
    assert precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 2)
    assert precision_at_k(["a"], RELEVANT, 10) == pytest.approx(1 / 10)


def test_average_precision_at_k() -> None:
    """Hits at 1 and 3: (1/1 + 2/3) / min(5, 3) = 5/9; at k=2: (1/1) / 2."""
    assert average_precision_at_k(RANKED, RELEVANT, 5) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 2)
    assert average_precision_at_k(RANKED, set(), 5) == 0.0


def test_ndcg_at_k() -> None:
    """DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal (3 relevant) = 1 + 1/log2(3) + 1/log2(4)."""
    ideal = 1 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(1.5 / ideal)
    assert ndcg_at_k(["a", "c"], {"a", "c"}, 5) == pytest.approx(1.0)
    assert ndcg_at_k(["b"], {"a"}, 5) == 0.0


def test_repeated_item_counts_once() -> None:
    """A list with the same hit twice is not rewarded twice."""
    assert precision_at_k(["a", "a"], {"a"}, 2) == pytest.approx(1 / 2)


def test_catalogue_coverage() -> None:
    """Distinct items over catalogue size: {a, b, c} of 10."""
    assert catalogue_coverage([["a", "b"], ["b", "c"], []], 10) == pytest.approx(0.3)
    with pytest.raises(InvalidInputError):
        catalogue_coverage([], 0)


def test_score_rankings_averages_over_users_with_relevant_items() -> None:
    """Users without relevant items are not counted; missing rankings count as empty."""
    metrics = score_rankings(
        {"u1": ["a", "b"], "u2": ["c", "d"]},
        {"u1": {"a"}, "u2": {"x"}, "u3": {"a"}, "u4": set()},
        k=2,
        catalogue_size=8,
    )
    assert metrics.users == 3
    assert metrics.precision == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert metrics.map == pytest.approx((1.0 + 0 + 0) / 3)
    assert metrics.coverage == pytest.approx(4 / 8)
    assert set(metrics.as_dict()) == {"precision", "map", "ndcg", "coverage"}


def test_random_split_is_seeded_and_sized() -> None:
    """Seed 42 gives the same 20% every time; train and test partition the rows."""
    first, second = random_split(1000), random_split(1000)
    assert first.test.tolist() == second.test.tolist()
    assert len(first.test) == 200
    assert sorted([*first.train.tolist(), *first.test.tolist()]) == list(range(1000))
    assert random_split(1000, seed=1).test.tolist() != first.test.tolist()


def test_task_excludes_nothing_from_test_and_keeps_train_seen() -> None:
    """Relevant items are test positives only, and never in the user's training items."""
    data = block_ratings()
    task = EvaluationTask.from_split(data, random_split(len(data)))
    for user, relevant in task.relevant.items():
        assert relevant
        assert not relevant & task.seen[user]
        assert all(item.startswith(user[0]) for item in relevant)


def test_evaluate_models_report_shape_and_values() -> None:
    """The report has the CLI's shape, and ALS finds the blocks (precision well above 0)."""
    config = RecommenderConfig(UNTUNED_ALS_PARAMS, uniform_confidence(block_ratings()))
    report = evaluate_models(block_ratings(), dataset="blocks", k=2, recommender=config)
    assert report["dataset"] == "blocks"
    assert report["k"] == 2
    assert set(report["results"]) == {"popularity", "als_untuned", "recommender"}
    for figures in report["results"].values():
        assert set(figures) == {"precision", "map", "ndcg", "coverage"}
        assert all(0.0 <= value <= 1.0 for value in figures.values())
    # Same config for both: the same figures, and a ratio of exactly 1.
    assert report["results"]["recommender"] == report["results"]["als_untuned"]
    assert report["ratios"]["precision_vs_als_untuned"] == pytest.approx(1.0)


def test_tuning_never_sees_the_test_rows() -> None:
    """tune_on_validation fits on rows of the training split only."""
    data = block_ratings()
    test_rows = set(random_split(len(data)).test.tolist())
    # Mark test rows with a kind the confidence weights do not know: touching one fails.
    kinds = np.array(["rating"] * len(data))
    kinds[list(test_rows)] = "test-only"
    marked = EvaluationData.from_events(
        data.user_ids, data.item_ids, kinds, data.values, data.positive, catalogue_size=20
    )
    results = tune_on_validation(
        marked,
        confidence=uniform_confidence(data),
        grid=[UNTUNED_ALS_PARAMS],
        k=2,
    )
    assert len(results) == 1
    assert results[0].metrics.users > 0
