"""``ItemAssociations``: products bought together (association rules with lift), and when
each product was first seen.

A basket is one customer's purchases: every product they bought, once. For products
``a`` and ``b`` over ``N`` baskets, ``together(a, b)`` baskets hold both, ``support(a)``
hold ``a``, and

    lift(a, b) = together(a, b) * N / (support(a) * support(b))

is how much more often they are bought together than if purchases were independent. A
pair counts only when at least ``min_together`` customers bought both and its lift is
above 1; its score shrinks the lift of rare pairs, ``lift * together / (together +
shrink)``, so that two customers buying a pair do not outrank fifty. Each product keeps
its ``max_related`` best partners (a sparse row), so serving sums a few short rows.

The same fit records when each product was first seen in the interactions (its
arrival, for the ``new_arrivals`` strategy): products are not dated in the catalogue,
and a product nobody has touched yet counts as newer than any.

Fitted by ``personalize train``, stored by
:mod:`~rasa_personalize.recommend.association_artifacts`; scoring is numpy only.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.errors import NotFittedError
from rasa_personalize.recommend.filters import Candidates, Scored, check_n, select
from rasa_personalize.recommend.ids import IdMap, as_str_array

if TYPE_CHECKING:
    from typing_extensions import Self

MIN_TOGETHER: Final = 2
SHRINK: Final = 3.0
MAX_RELATED: Final = 50
# A customer's newest purchases the bought-together strategy starts from; the newest
# counts most (weight 1 / (1 + position)).
ANCHOR_PURCHASES: Final = 5


class ItemAssociations:
    """Products bought together, per product; and each product's first-seen time.

    Learned attributes:
        item_ids_: every product bought at least once, or seen at least once.
        related_: CSR matrix (items x items) of pair scores; row ``a`` holds ``a``'s
            best partners, never ``a`` itself.
        first_seen_: per item, when it was first seen (seconds since the epoch; NaN
            when only the baskets were given).
        baskets_: how many baskets the fit saw.
    """

    item_ids_: IdMap
    related_: scipy.sparse.csr_matrix
    first_seen_: NDArray[np.float64]
    baskets_: int

    def __init__(
        self,
        *,
        min_together: int = MIN_TOGETHER,
        shrink: float = SHRINK,
        max_related: int = MAX_RELATED,
    ) -> None:
        self.min_together = min_together
        self.shrink = shrink
        self.max_related = max_related

    def _check_params(self) -> None:
        problems = []
        for name in ("min_together", "max_related"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an int >= 1, got {value!r}")
        if not (np.isfinite(self.shrink) and self.shrink >= 0):
            problems.append(f"shrink must be finite and >= 0, got {self.shrink!r}")
        if problems:
            raise InvalidInputError("invalid association parameters: " + "; ".join(problems))

    def fit(
        self,
        customers: Iterable[str] | NDArray[np.str_],
        items: Iterable[str] | NDArray[np.str_],
        *,
        first_seen: Mapping[str, float] | None = None,
    ) -> Self:
        """Learn pair scores from purchases.

        Args:
            customers: the customer of each purchase (one basket per customer).
            items: the product of each purchase; a repeated (customer, product) counts once.
            first_seen: product -> seconds since the epoch of its first interaction;
                products only here are kept (with no partners).

        Raises:
            InvalidInputError: bad parameters, or lengths differ.
        """
        self._check_params()
        customer_array = as_str_array(customers, "customers")
        item_array = as_str_array(items, "items")
        if customer_array.shape != item_array.shape:
            raise InvalidInputError(
                f"customers and items must have the same length, got {len(customer_array)} "
                f"and {len(item_array)}"
            )
        seen = first_seen or {}
        index = IdMap.from_ids(np.concatenate([item_array, as_str_array(list(seen), "items")]))
        baskets = IdMap.from_ids(customer_array)
        matrix = scipy.sparse.csr_matrix(
            (
                np.ones(len(item_array), dtype=np.float64),
                (np.searchsorted(baskets.ids, customer_array), index.rows(item_array.tolist())),
            ),
            shape=(len(baskets), len(index)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0  # a basket holds a product once
        self.related_ = self._pair_scores(matrix)
        self.first_seen_ = np.array(
            [seen.get(item, np.nan) for item in index.ids.tolist()], dtype=np.float64
        )
        self.baskets_ = len(baskets)
        self.item_ids_ = index
        return self

    def _pair_scores(self, baskets: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
        items = baskets.shape[1]
        together = (baskets.T @ baskets).tocoo()
        support = np.asarray(baskets.sum(axis=0)).ravel()
        keep = (together.row != together.col) & (together.data >= self.min_together)
        rows, columns, counts = together.row[keep], together.col[keep], together.data[keep]
        lift = counts * baskets.shape[0] / (support[rows] * support[columns])
        useful = lift > 1.0
        rows, columns, counts, lift = rows[useful], columns[useful], counts[useful], lift[useful]
        scores = lift * counts / (counts + self.shrink)
        # Per row, the best max_related partners (ties: lower column first).
        order = np.lexsort((columns, -scores, rows))
        rows, columns, scores = rows[order], columns[order], scores[order]
        starts = np.searchsorted(rows, np.arange(items))
        position = np.arange(len(rows)) - starts[rows]
        best = position < self.max_related
        return scipy.sparse.csr_matrix(
            (scores[best].astype(np.float32), (rows[best], columns[best])),
            shape=(items, items),
        )

    @classmethod
    def from_fitted(
        cls,
        *,
        item_ids: IdMap,
        related: scipy.sparse.csr_matrix,
        first_seen: ArrayLike,
        baskets: int,
    ) -> ItemAssociations:
        """A fitted model from stored state (an artifact).

        Raises:
            InvalidInputError: shapes do not match the id map.
        """
        first = np.asarray(first_seen, dtype=np.float64)
        if related.shape != (len(item_ids), len(item_ids)) or first.shape != (len(item_ids),):
            raise InvalidInputError(
                f"related must be {len(item_ids)} x {len(item_ids)} and first_seen "
                f"{len(item_ids)} long, got {related.shape} and {first.shape}"
            )
        model = cls()
        model.related_ = scipy.sparse.csr_matrix(related, dtype=np.float32)
        model.first_seen_ = first
        model.baskets_ = int(baskets)
        model.item_ids_ = item_ids
        return model

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_ids_"):
            raise NotFittedError("these ItemAssociations are not fitted yet: call fit() first")

    def partners(self, item_id: str) -> list[Scored]:
        """The products bought with ``item_id``, best first (empty when unknown)."""
        self._check_fitted()
        row = self.item_ids_.get(item_id)
        if row is None:
            return []
        start, end = self.related_.indptr[row], self.related_.indptr[row + 1]
        ids = self.item_ids_.ids
        pairs = zip(
            self.related_.indices[start:end].tolist(),
            self.related_.data[start:end].tolist(),
            strict=True,
        )
        return sorted(
            (Scored(str(ids[column]), float(score)) for column, score in pairs),
            key=lambda scored: -scored.score,
        )

    def score(self, item_id: str, other: str) -> float:
        """The pair score of ``item_id`` -> ``other`` (0 when not kept)."""
        self._check_fitted()
        row, column = self.item_ids_.get(item_id), self.item_ids_.get(other)
        if row is None or column is None:
            return 0.0
        return float(self.related_[row, column])

    def recommend(
        self,
        anchors: Sequence[str],
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """Products bought with ``anchors`` (newest first), anchor ``i`` weighing 1 / (1 + i).

        Only products with a positive score come back; anchors are never returned.
        """
        self._check_fitted()
        check_n(n)
        rows = [row for row in map(self.item_ids_.get, anchors) if row is not None]
        if not rows or n == 0:
            return []
        related = self.related_
        scores = np.zeros(len(self.item_ids_), dtype=np.float64)
        for position, row in enumerate(rows):
            start, end = related.indptr[row], related.indptr[row + 1]
            # A row holds each partner once, so a fancy-indexed += adds every entry.
            scores[related.indices[start:end]] += related.data[start:end] / (1 + position)
        scores[scores <= 0] = -np.inf
        return select(
            scores, n, self.item_ids_, exclude={*exclude, *anchors}, candidates=candidates
        )

    def arrivals(self) -> dict[str, float]:
        """Product -> first-seen time (seconds since the epoch), for products with one."""
        self._check_fitted()
        known = ~np.isnan(self.first_seen_)
        return dict(
            zip(
                self.item_ids_.ids[known].tolist(),
                self.first_seen_[known].tolist(),
                strict=True,
            )
        )
