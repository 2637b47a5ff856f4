"""``ServedModel``: the recommender ``personalize train`` chose, as one object.

Training picks, on validation carved from the shop's own data, either ALS alone or ALS
blended with EASE (:mod:`rasa_personalize.recommend.ease`), and writes both halves into
one artifact. The service recommends through this class, so it serves exactly what was
evaluated: the ALS scores (one matrix-vector product) and, for the blend, the EASE
scores of the customer's products, standardised over the allowed items and added.

ALS alone costs what ``AlsRecommender.recommend`` costs; the blend adds one sparse row
per product of the customer and two passes over the scores (see
``bench/recommend_latency.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import ArrayLike

from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.ease import EaseBlend, blend_select
from rasa_personalize.recommend.filters import Candidates, Scored, check_n


class ServedModel:
    """ALS, or ALS blended with EASE: what a trained artifact serves.

    Args:
        als: the fitted ALS model (its id maps are the blend's too).
        ease: the EASE half, or None for ALS alone.
    """

    def __init__(self, als: AlsRecommender, ease: EaseBlend | None = None) -> None:
        self.als = als
        self.ease = ease

    @property
    def kind(self) -> str:
        """``"als"`` or ``"als+ease"``."""
        return "als" if self.ease is None else "als+ease"

    def recommend(
        self,
        user_id: str,
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """The ``n`` best items for a customer in the model (``AlsRecommender.recommend``).

        Raises:
            UnknownIdError: the customer is not in the model.
        """
        if self.ease is None:
            return self.als.recommend(user_id, n, exclude=exclude, candidates=candidates)
        row = self.als.user_ids_.row(user_id)
        als_scores = self.als.item_factors_ @ self.als.user_factors_[row]
        return blend_select(
            als_scores,
            self.ease.scores_for_user(row),
            self.ease.weight,
            n,
            self.als.item_ids_,
            exclude=exclude,
            candidates=candidates,
        )

    def recommend_for_vector(
        self,
        vector: ArrayLike,
        n: int = 10,
        *,
        item_rows: ArrayLike | None = None,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """The ``n`` best items for a recalculated vector; ``item_rows`` are the model rows
        of the products it was solved from (the EASE input; without them, ALS alone)."""
        if self.ease is None or item_rows is None:
            return self.als.recommend_for_vector(vector, n, exclude=exclude, candidates=candidates)
        als_scores = self.als.item_factors_ @ np.asarray(vector, dtype=np.float32)
        return blend_select(
            als_scores,
            self.ease.scores_for_items(item_rows),
            self.ease.weight,
            n,
            self.als.item_ids_,
            exclude=exclude,
            candidates=candidates,
        )

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        *,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> list[list[Scored]]:
        """``recommend`` for many customers (precomputing every customer's list)."""
        if self.ease is None:
            return self.als.recommend_batch(user_ids, n, exclude=exclude)
        check_n(n)
        return [
            self.recommend(user_id, n, exclude=exclude[position] if exclude else ())
            for position, user_id in enumerate(user_ids)
        ]

    def top_batch(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        *,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> list[tuple[list[str], list[float]]]:
        """``recommend_batch``'s lists as (item ids, scores) per customer."""
        if self.ease is None:
            return self.als.top_batch(user_ids, n, exclude=exclude)
        return [
            ([s.item_id for s in scored], [s.score for s in scored])
            for scored in self.recommend_batch(user_ids, n, exclude=exclude)
        ]
