"""More evaluation protocols and metrics, next to :mod:`~rasa_personalize.recommend.evaluation`.

Splits (each gives a :class:`~rasa_personalize.recommend.evaluation.Split` that
``EvaluationTask.from_split`` turns into a task):

- ``time_split``: per customer, the last ``test_fraction`` of their interactions (by
  ``EvaluationData.times``; at least one when they have two or more) are held out, the
  rest trains: the model predicts what each customer did next, not a random sample of it.
- ``leave_last_out``: per customer, their single last interaction is held out; it counts
  when it is a positive (hit rate@k is then the share of customers whose held-out product
  is in their top k).

Metrics (per customer, then averaged over customers with a relevant product), besides
precision, MAP and NDCG of ``evaluation``:

- recall@k: hits / relevant products;
- MRR@k: 1 / the rank of the first hit (0 without one);
- hit rate@k: 1 when at least one hit;
- novelty@k: the mean self-information of the recommended products,
  ``-log2(share of training customers who have the product)``: higher means less
  obvious picks (a product nobody has in training counts as one customer's);
- catalogue coverage: distinct recommended products / catalogue.

Offline only: nothing here runs on the request path.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.evaluation import (
    DEFAULT_TEST_FRACTION,
    BlendTuningResult,
    EvaluationData,
    EvaluationTask,
    Ranker,
    RecommenderConfig,
    Split,
    average_precision_at_k,
    catalogue_coverage,
    ndcg_at_k,
    precision_at_k,
    tune_blend_on_validation,
    tune_on_validation,
)
from rasa_personalize.recommend.interactions import ConfidenceWeights

# How validation (and, in ``personalize evaluate``, the test rows) are carved from the
# interactions: "random", seeded 80/20 splits of the rows; "time", each customer's
# newest 20% of rows (``time_split``).
Validation = Literal["random", "time"]
VALIDATIONS: Final[tuple[Validation, ...]] = ("random", "time")


def validation_split(validation: Validation) -> Callable[[EvaluationData], Split] | None:
    """The split a protocol carves with: None for "random" (the seeded splits of
    ``evaluation``, the default of every function that takes ``split``), ``time_split``
    for "time".

    Raises:
        InvalidInputError: an unknown protocol name.
    """
    if validation == "random":
        return None
    if validation == "time":
        return time_split
    raise InvalidInputError(
        f"validation must be one of {', '.join(VALIDATIONS)}, got {validation!r}"
    )


def _ordered_rows(data: EvaluationData) -> list[NDArray[np.intp]]:
    """Each customer's row indices, oldest first (ties: row order)."""
    if data.times is None:
        raise InvalidInputError("a time-based split needs EvaluationData.times")
    order = np.lexsort((np.arange(len(data)), data.times, data.user_ids))
    users = data.user_ids[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return np.split(order, starts[1:])


def time_split(data: EvaluationData, *, test_fraction: float = DEFAULT_TEST_FRACTION) -> Split:
    """Per customer, the newest ``test_fraction`` of their rows go to the test set.

    ``round(test_fraction * n)`` rows, at least one when a customer has two or more,
    none when they have one (nothing would be left to learn from).
    """
    if not 0 < test_fraction < 1:
        raise InvalidInputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    train: list[NDArray[np.intp]] = []
    test: list[NDArray[np.intp]] = []
    for rows in _ordered_rows(data):
        held = 0 if len(rows) < 2 else max(1, round(test_fraction * len(rows)))
        train.append(rows[: len(rows) - held])
        test.append(rows[len(rows) - held :])
    return Split(np.sort(np.concatenate(train)), np.sort(np.concatenate(test)))


def leave_last_out(data: EvaluationData) -> Split:
    """Per customer with two or more rows, their newest row is the test set."""
    train: list[NDArray[np.intp]] = []
    test: list[NDArray[np.intp]] = []
    for rows in _ordered_rows(data):
        held = 1 if len(rows) >= 2 else 0
        train.append(rows[: len(rows) - held])
        test.append(rows[len(rows) - held :])
    return Split(np.sort(np.concatenate(train)), np.sort(np.concatenate(test)))


def recall_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Relevant products among the first ``k``, divided by the number relevant (0 if none)."""
    if not relevant:
        return 0.0
    return len(set(recommended[:k]) & set(relevant)) / len(relevant)


def reciprocal_rank_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 / the position of the first relevant product within the first ``k`` (0 if none)."""
    for position, item in enumerate(recommended[:k], start=1):
        if item in relevant:
            return 1.0 / position
    return 0.0


def hit_at_k(recommended: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 when a relevant product is among the first ``k``, else 0."""
    return 1.0 if set(recommended[:k]) & set(relevant) else 0.0


def item_popularity(train: EvaluationData) -> dict[str, float]:
    """Per product, the share of training customers who have it (novelty's base)."""
    pairs = set(zip(train.user_ids.tolist(), train.item_ids.tolist(), strict=True))
    customers = len({user for user, _ in pairs})
    counts = Counter(item for _, item in pairs)
    return {item: count / customers for item, count in counts.items()}


def novelty(
    recommendations: Iterable[Sequence[str]], popularity: Mapping[str, float], customers: int
) -> float:
    """Mean ``-log2(popularity)`` of every recommended product (unseen: one customer's)."""
    floor = 1.0 / max(customers, 1)
    values = [
        -math.log2(popularity.get(item, floor)) for items in recommendations for item in items
    ]
    return float(np.mean(values)) if values else 0.0


@dataclass(frozen=True)
class FullMetrics:
    """Every metric of one model on one task, averaged over the evaluated customers."""

    precision: float
    recall: float
    map: float
    ndcg: float
    mrr: float
    hit_rate: float
    coverage: float
    novelty: float
    users: int

    def as_dict(self) -> dict[str, float]:
        """The metrics as a dict (``users`` included)."""
        return asdict(self)


def score_all(
    rankings: Mapping[str, Sequence[str]],
    task: EvaluationTask,
    *,
    k: int,
    popularity: Mapping[str, float],
) -> FullMetrics:
    """Every metric over the task's customers with a relevant product."""
    users = [user for user in task.users if task.relevant.get(user)]
    if not users:
        raise InvalidInputError("no user has a relevant item: nothing to evaluate")
    totals = dict.fromkeys(("precision", "recall", "map", "ndcg", "mrr", "hit_rate"), 0.0)
    for user in users:
        ranked, relevant = list(rankings.get(user, ()))[:k], task.relevant[user]
        totals["precision"] += precision_at_k(ranked, relevant, k)
        totals["recall"] += recall_at_k(ranked, relevant, k)
        totals["map"] += average_precision_at_k(ranked, relevant, k)
        totals["ndcg"] += ndcg_at_k(ranked, relevant, k)
        totals["mrr"] += reciprocal_rank_at_k(ranked, relevant, k)
        totals["hit_rate"] += hit_at_k(ranked, relevant, k)
    lists = [list(rankings.get(user, ()))[:k] for user in users]
    customers = len(set(task.train.user_ids.tolist()))
    return FullMetrics(
        **{name: value / len(users) for name, value in totals.items()},
        coverage=catalogue_coverage(lists, task.catalogue_size),
        novelty=novelty(lists, popularity, customers),
        users=len(users),
    )


def evaluate_all(ranker: Ranker, task: EvaluationTask, k: int) -> FullMetrics:
    """Rank for every customer of the task and score every metric."""
    rankings = {user: ranker(user, k, task.seen.get(user, frozenset())) for user in task.users}
    return score_all(rankings, task, k=k, popularity=item_popularity(task.train))


# The blend grid searched on a time-based validation split (``tune_for_time_split``):
# with recency, EASE carries most of the list, so the weights go further than the
# random split's.
TIME_EASE_L2_GRID: Final = (300.0, 500.0, 1000.0)
TIME_EASE_WEIGHT_GRID: Final = (0.0, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
TIME_RECENCY_GRID: Final = (0.0, 5.0, 10.0, 20.0)


def tune_for_time_split(
    data: EvaluationData, *, confidence: ConfidenceWeights, k: int = 10
) -> list[BlendTuningResult]:
    """Our recommender for the time-based protocol, chosen on its own validation.

    ``time_split`` carves the protocol's training rows, and again those rows into inner
    training and validation (each customer's newest 20% of their training rows): the
    test rows are never seen. First the ALS parameters (``tune_on_validation`` over
    ``default_grid()``), then the blend: ``TIME_EASE_L2_GRID`` x
    ``TIME_EASE_WEIGHT_GRID`` x ``TIME_RECENCY_GRID``. Sorted best validation
    precision first; each result's config holds the chosen ALS.

    On MovieLens-100k with ``TUNED_RATING_WEIGHTS`` validation picked ALS without
    weighting, regularization 20, alpha 1 (precision@10 0.111; the random split's choice
    0.106), then EASE l2 500, weight 2, recency 5 (0.1349; weight 5 ties, and ties go to
    the earlier grid point; that ALS alone 0.111): on the time split, a customer's last
    products say most about the next. ``ease.RECENCY_FLOOR`` (0.05) was chosen on the
    same validation (0.25 before: best blend 0.1251, recency 10, weight 5, l2 300).
    Also tried on this validation and not kept: the ALS part's confidence weighted by
    recency too (ALS alone 0.119, but no better blend), the ALS parameters and the blend
    chosen jointly (the same choice), a validation of the newest 10% and one on two
    halves of the customers in turn (the same choice).
    """
    als_results = tune_on_validation(data, confidence=confidence, k=k, split=time_split)
    return tune_blend_on_validation(
        data,
        als=RecommenderConfig(als_results[0].params, confidence),
        l2_grid=TIME_EASE_L2_GRID,
        weight_grid=TIME_EASE_WEIGHT_GRID,
        recency_grid=TIME_RECENCY_GRID,
        k=k,
        split=time_split,
    )
