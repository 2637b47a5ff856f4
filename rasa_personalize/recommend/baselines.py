"""Baselines to measure the recommender against: EASE alone, item-kNN and BPR (implicit).

Each is fitted on the training rows as "the customer has the product" (every training
pair counts 1, as for the untuned ALS), with the parameters their authors or implicit
default to, and is wrapped as a :data:`~rasa_personalize.recommend.evaluation.Ranker`
that never recommends a product the customer already has; customers missing from the
model go to the fallback (popularity), as in the live chain.

- ``ease``: EASE (Steck, 2019) with an L2 penalty of 500;
- ``item_knn_cosine`` / ``item_knn_bm25``: implicit's item-item nearest neighbours
  (cosine, BM25 with K1 1.2 and B 0.75), 100 neighbours;
- ``bpr``: implicit's Bayesian Personalized Ranking, 64 factors, 100 epochs.

Offline only (``bench/evaluation_report.py``); implicit is imported when fitting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import scipy.sparse
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

from rasa_personalize.recommend.ease import ease_item_weights
from rasa_personalize.recommend.evaluation import EvaluationData, Ranker
from rasa_personalize.recommend.filters import allowed_rows, top_n
from rasa_personalize.recommend.ids import IdMap

EASE_BASELINE_L2: Final = 500.0
KNN_NEIGHBOURS: Final = 100
BPR_FACTORS: Final = 64
BPR_ITERATIONS: Final = 100


def _pairs(train: EvaluationData) -> tuple[IdMap, IdMap, scipy.sparse.csr_matrix]:
    users, items = IdMap.from_ids(train.user_ids), IdMap.from_ids(train.item_ids)
    matrix = scipy.sparse.csr_matrix(
        (
            np.ones(len(train), dtype=np.float32),
            (
                np.searchsorted(users.ids, train.user_ids),
                np.searchsorted(items.ids, train.item_ids),
            ),
        ),
        shape=(len(users), len(items)),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return users, items, matrix


def _ranker(
    users: IdMap,
    items: IdMap,
    scores_of: Callable[[int], NDArray[np.floating]],
    fallback: Ranker | None,
) -> Ranker:
    def rank(user: str, k: int, seen: frozenset[str]) -> list[str]:
        row = users.get(user)
        if row is None:
            return fallback(user, k, seen) if fallback is not None else []
        allowed = allowed_rows(items, exclude=seen)
        return [items.id_at(int(item)) for item in top_n(scores_of(row), k, allowed)]

    return rank


def ease_ranker(
    train: EvaluationData, *, l2: float = EASE_BASELINE_L2, fallback: Ranker | None = None
) -> Ranker:
    """EASE alone on the training pairs."""
    users, items, matrix = _pairs(train)
    scores = np.asarray(matrix @ ease_item_weights(matrix, l2))
    return _ranker(users, items, lambda row: scores[row], fallback)


def item_knn_ranker(
    train: EvaluationData, *, kind: str = "cosine", fallback: Ranker | None = None
) -> Ranker:
    """implicit's item-item nearest neighbours (``kind``: "cosine" or "bm25")."""
    from implicit.nearest_neighbours import (  # noqa: PLC0415  # offline, heavy import
        BM25Recommender,
        CosineRecommender,
    )

    users, items, matrix = _pairs(train)
    model = (
        BM25Recommender(K=KNN_NEIGHBOURS, K1=1.2, B=0.75)
        if kind == "bm25"
        else CosineRecommender(K=KNN_NEIGHBOURS)
    )
    model.fit(matrix, show_progress=False)
    # Scores of a customer: their products' rows of the (sparse) similarity matrix.
    similarity = scipy.sparse.csr_matrix(model.similarity)
    scores = np.asarray((matrix @ similarity).toarray())
    return _ranker(users, items, lambda row: scores[row], fallback)


def bpr_ranker(train: EvaluationData, *, seed: int = 42, fallback: Ranker | None = None) -> Ranker:
    """implicit's BPR with its default learning rate and regularization."""
    from implicit.cpu.bpr import BayesianPersonalizedRanking  # noqa: PLC0415

    users, items, matrix = _pairs(train)
    with threadpool_limits(limits=1, user_api="blas"):
        model = BayesianPersonalizedRanking(
            factors=BPR_FACTORS, iterations=BPR_ITERATIONS, random_state=seed, num_threads=1
        )
        model.fit(matrix, show_progress=False)
    user_factors = np.asarray(model.user_factors)
    item_factors = np.asarray(model.item_factors)
    return _ranker(users, items, lambda row: item_factors @ user_factors[row], fallback)
