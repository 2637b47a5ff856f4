"""Time-based splits, leave-last-one-out, the extra metrics and the baselines, on tiny data."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.baselines import bpr_ranker, ease_ranker, item_knn_ranker
from rasa_personalize.recommend.evaluation import EvaluationData, EvaluationTask, Ranker, Split
from rasa_personalize.recommend.protocols import (
    evaluate_all,
    hit_at_k,
    item_popularity,
    leave_last_out,
    novelty,
    recall_at_k,
    reciprocal_rank_at_k,
    score_all,
    time_split,
)
from tests.recommend.conftest import block_ratings


def timed() -> EvaluationData:
    """u1 rates a..j at times 10..1 (newest first in the rows), u2 rates x once."""
    items = list("abcdefghij")
    users = ["u1"] * 10 + ["u2"]
    times = [10.0 - n for n in range(10)] + [5.0]
    return EvaluationData.from_events(
        users,
        [*items, "x"],
        ["rating"] * 11,
        [5.0] * 11,
        [True] * 11,
        catalogue_size=11,
        times=times,
    )


def test_time_split_holds_out_each_customers_newest_fifth() -> None:
    """u1's two newest ratings (a, b) are the test set; u2's only rating trains."""
    data = timed()
    split = time_split(data)
    assert data.item_ids[split.test].tolist() == ["a", "b"]
    assert sorted(data.item_ids[split.train].tolist()) == [*"cdefghij", "x"]
    with pytest.raises(InvalidInputError):
        time_split(
            EvaluationData.from_events(["u"], ["a"], ["rating"], [5.0], [True], catalogue_size=1)
        )


def test_leave_last_out_holds_out_the_newest_rating() -> None:
    """One row per customer with two or more: u1's newest (a)."""
    data = timed()
    split = leave_last_out(data)
    assert data.item_ids[split.test].tolist() == ["a"]
    assert len(split.train) == 10


def test_metrics_on_a_known_list() -> None:
    """Relevant b and d; recommended a, b, c, d: recall 1, first hit at 2, a hit."""
    ranked, relevant = ["a", "b", "c", "d"], {"b", "d"}
    assert recall_at_k(ranked, relevant, 4) == 1.0
    assert recall_at_k(ranked, relevant, 2) == 0.5
    assert reciprocal_rank_at_k(ranked, relevant, 4) == 0.5
    assert reciprocal_rank_at_k(ranked, {"z"}, 4) == 0.0
    assert hit_at_k(ranked, relevant, 1) == 0.0
    assert hit_at_k(ranked, relevant, 2) == 1.0
    # Half the customers have "a", a quarter "b": -log2 of each, averaged.
    popularity = {"a": 0.5, "b": 0.25}
    assert novelty([["a", "b"]], popularity, 4) == pytest.approx((1 + 2) / 2)
    # A product nobody has counts as one customer's of four.
    assert novelty([["new"]], popularity, 4) == pytest.approx(math.log2(4))


def test_score_all_averages_over_customers_with_a_relevant_product() -> None:
    """A perfect list for u1, nothing for u2: halves of recall, MRR and hit rate; a
    customer with nothing relevant is not counted."""
    task = EvaluationTask(
        train=timed(),
        relevant={"u1": frozenset({"b", "d"}), "u2": frozenset({"z"}), "u3": frozenset()},
        seen={},
        catalogue_size=11,
        users=("u1", "u2", "u3"),
    )
    rankings = {"u1": ["b", "d"], "u2": [], "u3": ["a"]}
    metrics = score_all(rankings, task, k=2, popularity=item_popularity(task.train))
    assert metrics.users == 2
    assert (metrics.precision, metrics.recall) == (0.5, 0.5)
    assert (metrics.mrr, metrics.hit_rate) == (0.5, 0.5)
    assert metrics.coverage == pytest.approx(2 / 11)
    # Half of the two training customers have b and d.
    assert metrics.novelty == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("fit", "least_precision"),
    [
        (lambda train: ease_ranker(train, l2=1.0), 0.5),
        (lambda train: item_knn_ranker(train, kind="cosine"), 0.5),
        (lambda train: item_knn_ranker(train, kind="bm25"), 0.5),
        # BPR samples pairs: on twenty customers it learns less, but well above chance.
        (bpr_ranker, 0.4),
    ],
    ids=["ease", "item_knn_cosine", "item_knn_bm25", "bpr"],
)
def test_baselines_find_the_held_out_block_items(
    fit: Callable[[EvaluationData], Ranker], least_precision: float
) -> None:
    """On two blocks of users, each baseline recommends the user's own block items."""
    data = block_ratings()
    # User i of a block holds out their block's items i, i+1 and i+2 (mod 10).
    user_index = np.array([int(user[-2:]) for user in data.user_ids.tolist()])
    item_index = np.array([int(item[-2:]) for item in data.item_ids.tolist()])
    same_block = np.array([u[0] == i[0] for u, i in zip(data.user_ids, data.item_ids, strict=True)])
    held = same_block & ((item_index - user_index) % 10 < 3)
    task = EvaluationTask.from_split(data, Split(np.flatnonzero(~held), np.flatnonzero(held)))
    ranker = fit(task.train)
    metrics = evaluate_all(ranker, task, 3)
    # Ten unseen products each (3 of their block, 7 of the other): chance is 0.3.
    assert metrics.precision >= least_precision
