"""EASE, the item-item linear model blended with ALS, as trained and as served.

EASE (Steck, 2019) learns item-item weights ``B`` in closed form from the (user, item)
pairs; a customer's scores are the sum of the rows of ``B`` of the products they have.
``personalize evaluate`` found that blending it with ALS helps on validation (see
:mod:`rasa_personalize.recommend.evaluation`); ``personalize train`` serves the blend
whenever validation on the shop's own data picks it (:mod:`~rasa_personalize.recommend.training`).

The blend, per customer: each model's scores are standardised (z-scores) over the items
the customer may still get, then added, ``z(ALS) + weight * z(EASE)``; standardising
makes the weight mean the same for every customer, whatever the scale of either model.

Serving keeps ``B`` as sparse rows: every weight up to ``MAX_DENSE_ITEMS`` items (the
exact model, as evaluated), beyond that the ``PRUNED_PARTNERS`` largest of each row, so
that 10,000 products need megabytes, not a 400 MB dense matrix, and a customer with
``h`` products costs ``h`` short rows. The artifact also keeps each trained customer's
products (their EASE input), next to the ALS factors.

Recency (``EaseBlend.recency``, chosen on validation like the weight): a customer's
products can count by how recent they are among the customer's own, newest first: the
product at position ``r`` (0 = newest) weighs ``RECENCY_FLOOR + (1 - RECENCY_FLOOR) *
exp(-r / recency)``, so the last few products steer the list and old ones still count
a little. 0 means every product counts 1. On MovieLens-100k's time split (each
customer's newest ratings held out), validation picks it and precision@10 rises by
about a tenth; on the random split, where held-out ratings are as old as the rest, it
picks 0 (see :func:`rasa_personalize.recommend.evaluation.tune_blend_on_validation`).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.filters import (
    Candidates,
    Scored,
    allowed_rows,
    check_n,
    to_scored,
    top_n,
)
from rasa_personalize.recommend.ids import IdMap

# EASE inverts an items x items matrix: fine for shop catalogues, not for 100k skus.
MAX_EASE_ITEMS: Final = 20_000
MAX_DENSE_ITEMS: Final = 2_000
PRUNED_PARTNERS: Final = 256
# What a customer's oldest products still count with recency on (the newest count 1).
# Chosen on MovieLens-100k's time-split validation (each customer's newest 20% of their
# training ratings; never the test rows), best over EASE l2, weight and recency for
# each floor (precision@10): 0 0.1335, 0.05 0.1349, 0.1 0.1333, 0.25 0.1251.
RECENCY_FLOOR: Final = 0.05


def ease_item_weights(pairs: scipy.sparse.csr_matrix, l2: float) -> NDArray[np.float64]:
    """EASE item-item weights ``B`` with a zero diagonal; scores are ``x @ B``.

    The closed form: ``P = (X^T X + l2 I)^-1``, ``B = -P / diag(P)`` column-wise.

    Args:
        pairs: users x items, 1 where the user has the item (values are used as given).
        l2: the L2 penalty; larger means smoother, more popularity-like weights.

    Raises:
        InvalidInputError: too many items for a dense inverse, or ``l2`` not > 0.
    """
    items = pairs.shape[1]
    if items > MAX_EASE_ITEMS:
        raise InvalidInputError(
            f"EASE needs a dense {items} x {items} inverse; at most {MAX_EASE_ITEMS} items"
        )
    if not (math.isfinite(l2) and l2 > 0):
        raise InvalidInputError(f"l2 must be finite and > 0, got {l2!r}")
    gram = np.asarray((pairs.T @ pairs).toarray(), dtype=np.float64)
    gram[np.diag_indices(items)] += l2
    inverse = np.linalg.inv(gram)
    weights = -inverse / np.diag(inverse)
    weights[np.diag_indices(items)] = 0.0
    return weights


def sparse_weights(
    weights: NDArray[np.floating], partners: int | None = None
) -> scipy.sparse.csr_matrix:
    """``B`` as sparse rows: all of it up to ``MAX_DENSE_ITEMS`` items, else each row's
    ``partners`` (default ``PRUNED_PARTNERS``) largest weights by magnitude."""
    items = weights.shape[0]
    keep = items if items <= MAX_DENSE_ITEMS and partners is None else (partners or PRUNED_PARTNERS)
    if keep >= items:
        matrix = scipy.sparse.csr_matrix(weights.astype(np.float32))
        matrix.eliminate_zeros()
        return matrix
    columns = np.argpartition(-np.abs(weights), keep - 1, axis=1)[:, :keep]
    rows = np.repeat(np.arange(items), keep)
    values = np.take_along_axis(weights, columns, axis=1).ravel()
    matrix = scipy.sparse.csr_matrix(
        (values.astype(np.float32), (rows, columns.ravel())), shape=(items, items)
    )
    matrix.eliminate_zeros()
    return matrix


def recency_weights(ranks: ArrayLike, recency: float) -> NDArray[np.float32]:
    """How much a product counts at position ``ranks`` among a customer's products
    (0 = newest): ``RECENCY_FLOOR + (1 - RECENCY_FLOOR) * exp(-rank / recency)``, or 1
    everywhere when ``recency`` is 0.

    Raises:
        InvalidInputError: ``recency`` is not finite and >= 0.
    """
    if not (math.isfinite(recency) and recency >= 0):
        raise InvalidInputError(f"recency must be finite and >= 0, got {recency!r}")
    positions = np.asarray(ranks, dtype=np.float64)
    if recency == 0:
        return np.ones(positions.shape, dtype=np.float32)
    weights = RECENCY_FLOOR + (1.0 - RECENCY_FLOOR) * np.exp(-positions / recency)
    return weights.astype(np.float32)


def standardized(
    scores: NDArray[np.float64], allowed: NDArray[np.bool_] | None
) -> NDArray[np.float64]:
    """z-scores against the allowed items' mean and spread (0 where they are all equal)."""
    reference = scores if allowed is None else scores[allowed]
    if not len(reference):
        return np.zeros_like(scores)
    spread = float(reference.std())
    if spread <= 0:
        return np.zeros_like(scores)
    centred: NDArray[np.float64] = (scores - float(reference.mean())) / spread
    return centred


@dataclass(frozen=True, eq=False)
class EaseBlend:
    """The EASE half of the served blend, aligned with an ALS model's id maps.

    Attributes:
        weights: CSR items x items, ``B`` (rows follow the ALS item ids).
        user_items: CSR users x items, how much each product of a trained customer counts
            in their EASE input (1, or its ``recency_weights``; rows follow the ALS user ids).
        weight: how much EASE counts next to ALS in the blend.
        l2: the L2 penalty it was fitted with (for the record).
        recency: the recency scale ``user_items`` was weighted with (0: none).
    """

    weights: scipy.sparse.csr_matrix
    user_items: scipy.sparse.csr_matrix
    weight: float
    l2: float
    recency: float = 0.0

    def __post_init__(self) -> None:
        items = self.weights.shape[0]
        if self.weights.shape != (items, items) or self.user_items.shape[1] != items:
            raise InvalidInputError(
                f"EASE weights must be items x items and user items users x items, got "
                f"{self.weights.shape} and {self.user_items.shape}"
            )
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise InvalidInputError(f"the EASE weight must be finite and >= 0, got {self.weight}")
        if not (math.isfinite(self.recency) and self.recency >= 0):
            raise InvalidInputError(f"recency must be finite and >= 0, got {self.recency!r}")

    @classmethod
    def fit(
        cls,
        pairs: scipy.sparse.csr_matrix,
        *,
        l2: float,
        weight: float,
        recency: float = 0.0,
        ranks: scipy.sparse.csr_matrix | None = None,
    ) -> EaseBlend:
        """EASE on ``pairs`` (users x items, aligned with the ALS model), ready to serve.

        ``B`` is always fitted on the pairs as 0/1. With ``recency`` > 0, ``ranks`` (the
        same users x items, each stored entry the product's position among the customer's
        products plus one: 1 = newest) weighs each customer's input by ``recency_weights``.

        Raises:
            InvalidInputError: ``recency`` > 0 without ``ranks`` (the blend would not be
                the one validated), or ``ranks`` not on the same pairs.
        """
        if recency > 0 and ranks is None:
            raise InvalidInputError("recency needs each pair's rank among its customer's")
        binary = scipy.sparse.csr_matrix(pairs, dtype=np.float32, copy=True)
        binary.sum_duplicates()
        binary.data[:] = 1.0
        weights = sparse_weights(ease_item_weights(binary, l2))
        return cls(weights, recency_input(binary, ranks, recency), weight, l2, recency)

    def scores_for_user(self, user_row: int) -> NDArray[np.float64]:
        """EASE scores of a trained customer (by their row in the ALS model)."""
        start, end = self.user_items.indptr[user_row], self.user_items.indptr[user_row + 1]
        # Without recency every product counts 1: the plain sum of rows is cheaper.
        counts = self.user_items.data[start:end] if self.recency > 0 else None
        return self.scores_for_items(self.user_items.indices[start:end], counts)

    def scores_for_items(
        self, item_rows: ArrayLike, counts: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """EASE scores of a customer who has the products at ``item_rows``; ``counts``
        says how much each counts (default 1: new interactions are the newest)."""
        scores = np.zeros(self.weights.shape[0], dtype=np.float64)
        weights = self.weights
        if counts is None:
            for row in np.unique(np.asarray(item_rows, dtype=np.intp)).tolist():
                start, end = weights.indptr[row], weights.indptr[row + 1]
                # A row holds each column once, so a fancy-indexed += adds every entry.
                scores[weights.indices[start:end]] += weights.data[start:end]
            return scores
        rows = np.asarray(item_rows, dtype=np.intp).tolist()
        amounts = np.asarray(counts, dtype=np.float64).tolist()
        for row, amount in zip(rows, amounts, strict=True):
            start, end = weights.indptr[row], weights.indptr[row + 1]
            scores[weights.indices[start:end]] += amount * weights.data[start:end]
        return scores


def recency_input(
    binary: scipy.sparse.csr_matrix, ranks: scipy.sparse.csr_matrix | None, recency: float
) -> scipy.sparse.csr_matrix:
    """Each customer's EASE input: ``binary`` (0/1) weighted by ``recency_weights`` of
    ``ranks`` (stored entries: position + 1, 1 = newest); ``binary`` when either is off."""
    if ranks is None or recency == 0:
        recency_weights(np.zeros(0), recency)  # checks the value
        return binary
    positions = scipy.sparse.csr_matrix(ranks, dtype=np.float64, copy=True)
    positions.sum_duplicates()
    if positions.shape != binary.shape or positions.nnz != binary.nnz:
        raise InvalidInputError("ranks must have an entry for every pair, and only those")
    positions.sort_indices()
    weighted = scipy.sparse.csr_matrix(binary, dtype=np.float32, copy=True)
    weighted.sort_indices()
    if not (
        np.array_equal(positions.indices, weighted.indices)
        and np.array_equal(positions.indptr, weighted.indptr)
    ):
        raise InvalidInputError("ranks must have an entry for every pair, and only those")
    weighted.data = recency_weights(positions.data - 1.0, recency)
    return weighted


def blend_select(
    als_scores: NDArray[np.floating],
    ease_scores: NDArray[np.float64],
    weight: float,
    n: int,
    item_ids: IdMap,
    *,
    exclude: Collection[str] = (),
    candidates: Candidates | None = None,
) -> list[Scored]:
    """The ``n`` best allowed items by ``z(ALS) + weight * z(EASE)`` (z over the allowed)."""
    check_n(n)
    allowed = allowed_rows(item_ids, exclude=exclude, candidates=candidates)
    blended = blended_scores(als_scores, ease_scores, weight, allowed)
    return to_scored(top_n(blended, n, allowed), blended, item_ids)


def blended_scores(
    als_scores: NDArray[np.floating],
    ease_scores: NDArray[np.float64],
    weight: float,
    allowed: NDArray[np.bool_] | None,
) -> NDArray[np.float64]:
    """``z(ALS) + weight * z(EASE)``, z-scores over the ``allowed`` items (None: all)."""
    return standardized(als_scores.astype(np.float64), allowed) + weight * standardized(
        ease_scores, allowed
    )
