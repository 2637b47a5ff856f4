"""``PopularityRecommender``: the most interacted-with items, globally and per segment.

The last links of the fallback chain: customers in a known segment get what that
segment likes (ties broken by global popularity), everyone else what everyone likes.
Rankings are sorted once in ``fit``; a request only walks the sorted rows through the
filter mask and keeps the first ``n``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.errors import NotFittedError, UnknownIdError
from rasa_personalize.recommend.filters import Candidates, Scored, allowed_rows, check_n, to_scored
from rasa_personalize.recommend.ids import IdMap, as_str_array

if TYPE_CHECKING:
    from typing_extensions import Self


class PopularityRecommender:
    """Items ranked by summed interaction weight, globally and within each segment.

    Learned attributes:
        item_ids_: the id <-> row map of every item seen in ``fit``.
        scores_: summed weight per item.
        segment_scores_: per segment, summed weight per item of that segment's customers.
    """

    item_ids_: IdMap
    scores_: NDArray[np.float64]
    segment_scores_: Mapping[str, NDArray[np.float64]]

    def __init__(self) -> None:
        # Rows pre-sorted best first, per ranking; filled by fit.
        self._global_order: NDArray[np.intp] | None = None
        self._segment_orders: Mapping[str, NDArray[np.intp]] = MappingProxyType({})

    def fit(
        self,
        item_ids: Iterable[str] | NDArray[np.str_],
        weights: ArrayLike | None = None,
        segments: Iterable[str] | NDArray[np.str_] | None = None,
    ) -> Self:
        """Count popularity from interaction rows.

        Args:
            item_ids: the item of each interaction.
            weights: confidence of each interaction (>= 0), 1 when omitted.
            segments: the segment of the customer behind each interaction, for
                per-segment rankings.

        Raises:
            InvalidInputError: empty input, lengths differ, or a weight is negative.
        """
        items = as_str_array(item_ids, "item_ids")
        if len(items) == 0:
            raise InvalidInputError("item_ids are empty: there is nothing to count")
        weight_array = (
            np.ones(len(items)) if weights is None else np.asarray(weights, dtype=np.float64)
        )
        if weight_array.shape != items.shape:
            raise InvalidInputError(
                f"item_ids and weights must have the same length, got {len(items)} and "
                f"{weight_array.size}"
            )
        if not np.isfinite(weight_array).all() or (weight_array < 0).any():
            raise InvalidInputError("weights must be finite and >= 0")
        index = IdMap.from_ids(items)
        rows = np.searchsorted(index.ids, items)
        scores = np.bincount(rows, weights=weight_array, minlength=len(index)).astype(np.float64)
        segment_scores: dict[str, NDArray[np.float64]] = {}
        if segments is not None:
            segment_array = as_str_array(segments, "segments")
            if segment_array.shape != items.shape:
                raise InvalidInputError(
                    f"item_ids and segments must have the same length, got {len(items)} and "
                    f"{len(segment_array)}"
                )
            for segment in np.unique(segment_array).tolist():
                selected = segment_array == segment
                segment_scores[segment] = np.bincount(
                    rows[selected], weights=weight_array[selected], minlength=len(index)
                ).astype(np.float64)
        all_rows = np.arange(len(index))
        self._global_order = np.lexsort((all_rows, -scores))
        orders = {}
        for segment, segment_score in segment_scores.items():
            # Only items the segment interacted with: the rest is the global ranking's job.
            order = np.lexsort((all_rows, -scores, -segment_score))
            orders[segment] = order[segment_score[order] > 0]
            segment_score.setflags(write=False)
        self._segment_orders = MappingProxyType(orders)
        scores.setflags(write=False)
        self.item_ids_ = index
        self.segment_scores_ = MappingProxyType(segment_scores)
        self.scores_ = scores
        return self

    def _check_fitted(self) -> NDArray[np.intp]:
        """The global order; raises NotFittedError before fit."""
        if self._global_order is None:
            raise NotFittedError("this PopularityRecommender is not fitted yet: call fit() first")
        return self._global_order

    @property
    def segments(self) -> tuple[str, ...]:
        """The segments with a ranking of their own."""
        self._check_fitted()
        return tuple(sorted(self.segment_scores_))

    def has_segment(self, segment: str) -> bool:
        """Whether ``segment`` has a ranking of its own."""
        self._check_fitted()
        return segment in self.segment_scores_

    def recommend(
        self,
        n: int = 10,
        *,
        segment: str | None = None,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """The most popular allowed items, in the segment when one is given.

        A segment's list holds only items its customers interacted with, so it may be
        shorter than ``n``; top it up from the global list (``filters.merge_unique``).

        Raises:
            NotFittedError: the model is not fitted.
            UnknownIdError: the segment has no ranking (``has_segment`` is False).
        """
        order = self._check_fitted()
        check_n(n)
        scores = self.scores_
        if segment is not None:
            segment_order = self._segment_orders.get(segment)
            if segment_order is None:
                raise UnknownIdError(f"segment {segment!r} has no popularity ranking")
            order, scores = segment_order, self.segment_scores_[segment]
        mask = allowed_rows(self.item_ids_, exclude=exclude, candidates=candidates)
        if mask is not None:
            order = order[mask[order]]
        return to_scored(order[:n], scores, self.item_ids_)
