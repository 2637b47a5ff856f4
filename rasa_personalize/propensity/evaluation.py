"""How good a propensity is: ranking, precision, calibration, against two baselines.

- :func:`score`: ROC AUC (does a buyer rank above a non-buyer?), PR AUC (average
  precision: is the top of the list full of buyers?) and the Brier score (mean squared
  error of the probability: calibration and sharpness in one number, lower is better);
- :func:`calibration_bins`: predicted against observed purchase rate in equal-sized
  groups of customers, for the calibration picture;
- :class:`RecencyBaseline`: a logistic regression on the days since the last purchase
  alone, the classic "recency is everything" model;
- :class:`SegmentRuleBaseline`: each customer gets the purchase rate of their archetype
  segment (:func:`~rasa_personalize.segments.archetypes.archetype_for`, as of the cut-off),
  what a shop without a model would do with its segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from rasa_personalize.propensity.errors import NotFittedError, PropensityInputError
from rasa_personalize.propensity.features import PropensityFeatures
from rasa_personalize.segments.archetypes import archetype_for
from rasa_personalize.slots import LOYALTY_TIERS
from rasa_personalize.store.records import ProfileMetrics

CALIBRATION_BINS: Final = 10


@dataclass(frozen=True)
class Scores:
    """ROC AUC, PR AUC (average precision) and Brier score of probabilities on labels."""

    auc: float
    pr_auc: float
    brier: float


@dataclass(frozen=True)
class CalibrationBin:
    """One group of customers with similar scores."""

    mean_score: float
    observed_rate: float
    customers: int


def score(labels: NDArray[np.bool_], probabilities: NDArray[np.float64]) -> Scores:
    """The three figures of ``probabilities`` against ``labels``.

    Raises:
        PropensityInputError: lengths differ, or the labels lack buyers or non-buyers.
    """
    if len(labels) != len(probabilities):
        raise PropensityInputError(
            f"evaluation: {len(labels)} labels but {len(probabilities)} probabilities"
        )
    if len(np.unique(labels)) < 2:
        raise PropensityInputError("evaluation: the labels need buyers and non-buyers")
    return Scores(
        auc=round(float(roc_auc_score(labels, probabilities)), 4),
        pr_auc=round(float(average_precision_score(labels, probabilities)), 4),
        brier=round(float(brier_score_loss(labels, probabilities)), 4),
    )


def calibration_bins(
    labels: NDArray[np.bool_], probabilities: NDArray[np.float64], bins: int = CALIBRATION_BINS
) -> tuple[CalibrationBin, ...]:
    """Customers sorted by score and cut into ``bins`` groups of (nearly) equal size;
    per group, the mean score and the share that bought. Empty groups are left out."""
    order = np.argsort(probabilities, kind="stable")
    groups = np.array_split(order, min(bins, max(len(order), 1)))
    return tuple(
        CalibrationBin(
            mean_score=round(float(probabilities[group].mean()), 4),
            observed_rate=round(float(labels[group].mean()), 4),
            customers=len(group),
        )
        for group in groups
        if len(group)
    )


class RecencyBaseline:
    """Logistic regression on ``log(1 + recency_days)`` alone."""

    def fit(self, recency_days: NDArray[np.float64], labels: NDArray[np.bool_]) -> RecencyBaseline:
        """Fit on the training customers' recency."""
        self.model_ = LogisticRegression().fit(np.log1p(recency_days).reshape(-1, 1), labels)
        return self

    def predict(self, recency_days: NDArray[np.float64]) -> NDArray[np.float64]:
        """Probabilities for these recencies.

        Raises:
            NotFittedError: ``fit`` has not run.
        """
        if not hasattr(self, "model_"):
            raise NotFittedError("recency baseline: call fit before predict")
        features = np.log1p(recency_days).reshape(-1, 1)
        return np.asarray(self.model_.predict_proba(features)[:, 1], dtype=np.float64)


class SegmentRuleBaseline:
    """Each segment's purchase rate among the training customers."""

    def fit(self, segments: Sequence[str], labels: NDArray[np.bool_]) -> SegmentRuleBaseline:
        """Learn the rate per segment (and overall, for segments not seen here)."""
        keys = np.array(segments, dtype=object)
        self.overall_ = float(labels.mean()) if len(labels) else 0.0
        self.rates_ = {str(s): float(labels[keys == s].mean()) for s in sorted(set(segments))}
        return self

    def predict(self, segments: Sequence[str]) -> NDArray[np.float64]:
        """The rate of each customer's segment.

        Raises:
            NotFittedError: ``fit`` has not run.
        """
        if not hasattr(self, "rates_"):
            raise NotFittedError("segment rule baseline: call fit before predict")
        return np.array([self.rates_.get(s, self.overall_) for s in segments], dtype=np.float64)


def archetypes(features: PropensityFeatures) -> list[str]:
    """Each customer's archetype segment as of ``features.as_of``, by the built-in rule."""
    as_of = features.as_of
    interactions = features.column("interactions").tolist()
    purchases = features.column("frequency").tolist()
    recency = features.column("recency_days").tolist()
    discount = features.column("discount_share").tolist()
    tiers = features.column("loyalty_tier").astype(np.int64).tolist()
    found = []
    for count, bought, days, share, tier in zip(
        interactions, purchases, recency, discount, tiers, strict=True
    ):
        metrics = ProfileMetrics(
            interaction_count=int(count),
            purchase_count=int(bought),
            last_purchase_at=as_of - timedelta(days=days) if bought > 0 else None,
            discounted_purchase_share=share,
        )
        tier_name = LOYALTY_TIERS[tier] if 0 <= tier < len(LOYALTY_TIERS) else "none"
        found.append(archetype_for(metrics, tier_name, as_of))
    return found
