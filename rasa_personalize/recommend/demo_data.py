"""The store's interactions as evaluation data, and our recommender tuned on them.

``personalize evaluate --dataset demo`` runs the protocol of
:mod:`rasa_personalize.recommend.evaluation` on whatever the store holds: the seeded demo shop,
or MovieLens after ``personalize import movielens``. For shop events:

- Rows: every interaction that names a product (a search without one is skipped), in
  insertion order (``interactions.id``), so the seed-42 split is the same on every run
  and on every backend.
- Positives: purchases, carts and positive feedback (value > 0); star ratings >= 4 when
  the store holds ratings. Views, searches, chat clicks and negative feedback are
  training signal only.
- Training weights: ``rasa_personalize.recommend.training.store_confidence()``, the weights
  ``personalize train`` uses (``ConfidenceWeights.ecommerce()`` plus star ratings), so
  the evaluation measures what training does.
- A test purchase of an item the customer already viewed in training is not counted:
  models never recommend seen items (``EvaluationTask.from_split``).
- Our recommender: ALS with parameters chosen by ``tune_on_validation`` over
  ``shop_grid()`` in the same run, then blended with EASE if and as much as
  ``tune_blend_on_validation`` finds it helps, both on a validation split carved from
  the training rows only (the test rows are never touched). Shop data differ from store
  to store, so a search in each run replaces MovieLens' fixed constants.
- Large stores: the search runs on the interactions of ``TUNING_CUSTOMERS`` customers
  drawn at random (seeded), which rank the grid as the whole store would at a fraction
  of the cost (13 ALS fits on a million customers would take most of an hour on two
  cores); the chosen parameters are then fitted on everyone. Past ``MAX_EASE_ITEMS``
  products no blend is tried: EASE's dense item x item inverse would not fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.errors import NotFoundError
from rasa_personalize.recommend.als import AlsParams, Weighting
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.ease import MAX_EASE_ITEMS
from rasa_personalize.recommend.evaluation import (
    BLEND_WEIGHT_GRID,
    DEFAULT_SEED,
    MOVIELENS_POSITIVE_RATING,
    BlendTuningResult,
    EvaluationData,
    EvaluationProgress,
    HybridConfig,
    ModelConfig,
    RecommenderConfig,
    TuningResult,
    tune_blend_on_validation,
    tune_on_validation,
)
from rasa_personalize.recommend.protocols import (
    TIME_EASE_WEIGHT_GRID,
    TIME_RECENCY_GRID,
    Validation,
    validation_split,
)
from rasa_personalize.recommend.store_columns import evaluation_data, sample_customers
from rasa_personalize.store.interaction_columns import InteractionColumns, read_interaction_columns
from rasa_personalize.store.types import Session

# What `personalize train` fits when the store has too little history to choose on
# validation (and the first point of ``shop_grid``): implicit signals of mixed strength,
# so BM25 evens out heavy and light users.
SHOP_ALS_PARAMS: Final = AlsParams(
    factors=64, regularization=1.0, iterations=15, alpha=2.0, weighting="bm25"
)
POSITIVE_KINDS: Final = ("purchase", "cart")
# EASE penalties for the shop blend: far fewer customers per product than MovieLens.
SHOP_EASE_L2_GRID: Final = (50.0, 200.0, 500.0)
# Customers whose interactions the parameter search runs on, at most (see the module
# docstring); the default demo shop (2,000) and MovieLens (943) are searched whole. The
# search ranks every validation customer 13 times: its cost follows this number.
TUNING_CUSTOMERS: Final = 5_000


class EmptyStoreError(NotFoundError):
    """The store has no interactions with products, so there is nothing to evaluate."""


async def load_store_events(session: Session) -> EvaluationData:
    """Every interaction with a product, as evaluation data with the shop's positives.

    Customers are identified by their row id (as a string), products by sku; the
    catalogue size is the number of products in the store.

    Raises:
        EmptyStoreError: no interaction names a product (an empty or unseeded store).
    """
    return store_events(await read_interaction_columns(session))


def store_events(
    columns: InteractionColumns, *, customers: int | None = None, seed: int = DEFAULT_SEED
) -> EvaluationData:
    """``load_store_events`` on interactions read already; with ``customers``, only the
    interactions of the customers ``tuning_sample(data, customers, seed=seed)`` would
    keep (the same rows; the whole data is never built).

    Raises:
        EmptyStoreError: no interaction names a product (an empty or unseeded store).
    """
    if not len(columns):
        raise EmptyStoreError(
            "the store has no interactions with products to evaluate on: run "
            "`personalize seed-demo` (or `personalize import movielens`) first"
        )
    # Rows come in insertion order: the order events were stored in, for time splits.
    return evaluation_data(
        columns, shop_positives, customers=sample_customers(columns, customers, seed=seed)
    )


def shop_positives(kinds: NDArray[np.str_], values: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which events count as "liked" when they land in the test set (see the module doc)."""
    # NaN compares False, so events without a value are never positive by value.
    with np.errstate(invalid="ignore"):
        positive: NDArray[np.bool_] = (
            np.isin(kinds, POSITIVE_KINDS)
            | ((kinds == "feedback") & (values > 0))
            | ((kinds == "rating") & (values >= MOVIELENS_POSITIVE_RATING))
        )
    return positive


def shop_grid() -> list[AlsParams]:
    """The ALS parameters the demo evaluation searches on validation.

    ``SHOP_ALS_PARAMS`` (``personalize train``'s fallback) and, for BM25 or no weighting,
    16 or 32 factors with light to strong regularization: 13 fits of a few hundred ms on
    the default demo shop. On it (seed 42) validation preferred BM25, 16 factors,
    regularization 10, alpha 2 (precision@10 0.040, against 0.021 for
    ``SHOP_ALS_PARAMS``); 64 factors were worse everywhere (a 300-product shop needs few).
    """
    grid = [SHOP_ALS_PARAMS]
    weightings: tuple[Weighting, ...] = ("bm25", "none")
    for weighting in weightings:
        for factors in (16, 32):
            for regularization, alpha in ((1.0, 1.0), (10.0, 2.0), (30.0, 2.0)):
                grid.append(
                    AlsParams(
                        factors=factors,
                        regularization=regularization,
                        iterations=15,
                        alpha=alpha,
                        weighting=weighting,
                        bm25_k1=1.2 if weighting == "bm25" else 100.0,
                    )
                )
    return grid


@dataclass(frozen=True)
class ShopTuning:
    """Our recommender for the store's data, and the validation figures behind it.

    Attributes:
        als: the ALS part chosen on validation.
        recommender: ``als`` alone, or ``als`` blended with EASE when the blend did
            better on validation.
        als_results: the ALS grid's validation figures, best first.
        blend_results: the blend grid's validation figures, best first.
    """

    als: RecommenderConfig
    recommender: ModelConfig
    als_results: tuple[TuningResult, ...]
    blend_results: tuple[BlendTuningResult, ...]


def tune_for_store(
    data: EvaluationData,
    *,
    k: int = 10,
    seed: int = DEFAULT_SEED,
    grid: Sequence[AlsParams] | None = None,
    blend_l2_grid: Sequence[float] = SHOP_EASE_L2_GRID,
    progress: EvaluationProgress | None = None,
    validation: Validation = "random",
) -> ShopTuning:
    """Pick our recommender for the store's data on validation carved from training.

    First the ALS parameters (``tune_on_validation`` over ``grid``), then whether and how
    much EASE to blend in (``tune_blend_on_validation``; a weight of 0, ALS alone, wins
    ties). Neither step sees the test rows of the ``seed`` split.

    Stores with more than ``TUNING_CUSTOMERS`` customers are searched on a sample of
    them (:func:`tuning_sample`); past ``MAX_EASE_ITEMS`` products the blend is not
    tried, and its results hold ALS alone (weight 0) with the ALS figures.

    Args:
        data: from ``load_store_events``.
        k: list length.
        seed: the outer split's seed; its test rows are dropped before tuning.
        grid: ALS parameters to try (default ``shop_grid()``).
        blend_l2_grid: EASE penalties to try in the blend.
        progress: told ``("tuning", done, total)`` after each ALS grid point and
            ``("blending", 0, 1)`` / ``("blending", 1, 1)`` around the blend search.
        validation: "random" (the ``seed`` split's training rows, split again 80/20)
            or "time" (``protocols.time_split`` twice: each customer's newest rows, in
            the order they were stored, validate; the blend search then also tries
            EASE's recency and larger weights, ``protocols.TIME_RECENCY_GRID`` and
            ``TIME_EASE_WEIGHT_GRID``).
    """
    confidence = store_confidence()
    split = validation_split(validation)
    whole = data
    data = tuning_sample(data, TUNING_CUSTOMERS, seed=seed)
    als_results = tune_on_validation(
        data,
        confidence=confidence,
        grid=list(grid) if grid is not None else shop_grid(),
        k=k,
        seed=seed,
        progress=progress,
        split=split,
    )
    als = RecommenderConfig(als_results[0].params, confidence)
    notify = progress or (lambda _name, _done, _total: None)
    notify("blending", 0, 1)
    if whole.catalogue_size > MAX_EASE_ITEMS:
        alone = HybridConfig(als, blend_l2_grid[0], 0.0)
        blend_results = [BlendTuningResult(alone, als_results[0].metrics)]
    else:
        blend_results = tune_blend_on_validation(
            data,
            als=als,
            l2_grid=blend_l2_grid,
            # A time split also tries recency, and the larger weights it calls for.
            weight_grid=BLEND_WEIGHT_GRID if split is None else TIME_EASE_WEIGHT_GRID,
            recency_grid=(0.0,) if split is None else TIME_RECENCY_GRID,
            k=k,
            seed=seed,
            split=split,
        )
    notify("blending", 1, 1)
    best = blend_results[0].config
    recommender: ModelConfig = best if best.ease_weight > 0 else als
    return ShopTuning(als, recommender, tuple(als_results), tuple(blend_results))


def tuning_sample(data: EvaluationData, customers: int, *, seed: int) -> EvaluationData:
    """Every interaction of at most ``customers`` customers drawn at random with ``seed``
    (in their original order); ``data`` itself when it has no more customers."""
    users, owner = np.unique(data.user_ids, return_inverse=True)
    if len(users) <= customers:
        return data
    chosen = np.zeros(len(users), dtype=bool)
    chosen[np.random.default_rng(seed).choice(len(users), size=customers, replace=False)] = True
    return data.subset(np.flatnonzero(chosen[owner]))
