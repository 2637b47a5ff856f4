"""Scoring every customer with a propensity model, and storing the scores: one code path
for the run that trains a model and for ``personalize models promote`` / ``rollback``.

:func:`score_customers` computes each customer's features as of a moment with the
model's own feature layout (:mod:`.features`), its calibrated probability and its band;
:func:`store_scores` writes them with the model version
(:func:`~rasa_personalize.store.propensity.write_propensity_scores`: the
``propensity_scores`` rows and the profile documents the action server reads, whose
versions it bumps). :func:`rescore` does both for a saved version
(:mod:`.artifacts`). The caller commits, then outdates cached profile snapshots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.propensity.artifacts import SavedPropensityModel
from rasa_personalize.propensity.bands import BANDS, BandCutoffs
from rasa_personalize.propensity.errors import PropensityInputError
from rasa_personalize.propensity.features import FeatureLayout, compute_features
from rasa_personalize.propensity.model import PropensityModel
from rasa_personalize.store.features import count_customers
from rasa_personalize.store.propensity import write_propensity_scores
from rasa_personalize.store.types import Session

ProgressCallback = Callable[[str, int, int], None]

SCORING_STAGE = "scoring"
STORING_STAGE = "storing"


@dataclass(frozen=True, eq=False)
class CustomerScores:
    """Every customer's score and band as of one moment.

    Attributes:
        customer_ids: ascending store ids.
        scores: calibrated probabilities, one per customer.
        bands: ``low``, ``medium`` or ``high``, one per customer.
        as_of: the moment the features end (stored as ``scored_at``).
    """

    customer_ids: NDArray[np.int64]
    scores: NDArray[np.float64]
    bands: tuple[str, ...]
    as_of: datetime

    def __len__(self) -> int:
        return len(self.customer_ids)

    def band_counts(self) -> dict[str, int]:
        """Customers per band, every band named."""
        return {band: self.bands.count(band) for band in BANDS}


async def score_customers(
    session: Session,
    model: PropensityModel,
    layout: FeatureLayout,
    cutoffs: BandCutoffs,
    *,
    as_of: datetime,
    progress: ProgressCallback | None = None,
    expected: int | None = None,
) -> CustomerScores:
    """Score every customer created by ``as_of`` on their history before it.

    Args:
        session: an open session; only reads.
        model: a fitted model that reads ``layout``'s columns.
        expected: customers in the store, for the progress bar (None: counted here).

    Raises:
        PropensityInputError: ``as_of`` is naive.
        NotFittedError: the model is not fitted.
    """
    if as_of.tzinfo is None:
        raise PropensityInputError("propensity scoring: as_of must be timezone-aware (UTC)")
    total = await count_customers(session) if expected is None else expected
    features = await compute_features(
        session, layout, as_of=as_of, stage=SCORING_STAGE, progress=progress, expected=total
    )
    # The booster's threads would otherwise hold the event loop.
    scores = await asyncio.to_thread(model.predict, features.matrix)
    return CustomerScores(features.customer_ids, scores, tuple(cutoffs.bands(scores)), as_of)


async def store_scores(
    session: Session,
    scored: CustomerScores,
    *,
    target: str,
    model_version: str,
    progress: ProgressCallback | None = None,
) -> int:
    """Store the scores with the version that made them; returns customers written.

    Nothing is committed here; after the commit, cached profile snapshots are outdated
    by version (each changed profile's) and the caller bumps the cache's generation.
    """
    total = len(scored)
    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    notify(STORING_STAGE, 0, total)
    return await write_propensity_scores(
        session,
        target=target,
        model_version=model_version,
        customer_ids=scored.customer_ids.tolist(),
        scores=[round(value, 6) for value in scored.scores.tolist()],
        bands=list(scored.bands),
        scored_at=scored.as_of,
        on_written=lambda done: notify(STORING_STAGE, done, total),
    )


async def rescore(
    session: Session,
    saved: SavedPropensityModel,
    *,
    as_of: datetime,
    progress: ProgressCallback | None = None,
) -> CustomerScores:
    """Score every customer with a saved version and store the scores under its id.

    Raises:
        PropensityInputError: ``as_of`` is naive.
    """
    scored = await score_customers(
        session, saved.model, saved.layout, saved.cutoffs, as_of=as_of, progress=progress
    )
    await store_scores(
        session, scored, target=saved.target, model_version=saved.version, progress=progress
    )
    return scored
