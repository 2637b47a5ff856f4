"""The propensity classifier: gradient boosting, then a calibration of its scores.

:class:`PropensityModel` fits scikit-learn's ``HistGradientBoostingClassifier`` on one
part of the training customers and calibrates its scores on another (isotonic
regression when the calibration part is large enough, Platt's logistic fit otherwise),
so that a score of 0.3 means that about 30 % of such customers buy. Why not LightGBM:
on these few dozen dense features and up to a few hundred thousand rows the histogram
booster of scikit-learn is as accurate and fast enough (``bench/propensity.py``), and it
needs no other dependency.

Like a scikit-learn estimator: ``__init__`` only stores the parameters, ``fit`` sets the
learned attributes (ending in ``_``) and returns ``self``, and using an unfitted model
raises :class:`~rasa_personalize.propensity.errors.NotFittedError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from rasa_personalize.propensity.errors import NotFittedError, PropensityInputError

Calibration = Literal["isotonic", "sigmoid"]

# Isotonic regression needs many rows per step to beat a two-parameter sigmoid.
ISOTONIC_MIN_ROWS: Final = 2_000
ISOTONIC_MIN_POSITIVES: Final = 100
# Keeps the logit of the booster's score finite for the sigmoid calibration.
_EPSILON: Final = 1e-6


@dataclass(frozen=True)
class PropensityParams:
    """How the classifier is fitted.

    Attributes:
        max_iter: boosting rounds at most (early stopping on an inner 10 % usually ends
            sooner).
        learning_rate: shrinkage of each tree.
        max_leaf_nodes: leaves per tree.
        min_samples_leaf: customers per leaf at least (small leaves overfit rare buyers).
        l2_regularization: L2 penalty on leaf values.
        seed: random seed: the same data and seed give the same model.
        n_threads: threads for the numeric libraries (None: their default, all cores).
    """

    max_iter: int = 300
    learning_rate: float = 0.08
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0
    n_threads: int | None = 1

    def problems(self) -> list[str]:
        """What is out of range, one sentence each (empty: all fine)."""
        found = []
        if self.max_iter < 1:
            found.append(f"max_iter must be at least 1, got {self.max_iter}")
        if not 0.0 < self.learning_rate <= 1.0:
            found.append(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if self.max_leaf_nodes < 2:
            found.append(f"max_leaf_nodes must be at least 2, got {self.max_leaf_nodes}")
        if self.min_samples_leaf < 1:
            found.append(f"min_samples_leaf must be at least 1, got {self.min_samples_leaf}")
        if self.l2_regularization < 0:
            found.append(f"l2_regularization must be >= 0, got {self.l2_regularization}")
        if self.seed < 0:
            found.append(f"seed must be >= 0, got {self.seed}")
        if self.n_threads is not None and self.n_threads < 1:
            found.append(f"n_threads must be at least 1 or None, got {self.n_threads}")
        return found


class PropensityModel:
    """A gradient-boosted classifier with calibrated probabilities."""

    def __init__(self, params: PropensityParams | None = None) -> None:
        self.params = params or PropensityParams()

    def fit(
        self,
        features: NDArray[np.float64],
        labels: NDArray[np.bool_],
        calibration_features: NDArray[np.float64],
        calibration_labels: NDArray[np.bool_],
    ) -> PropensityModel:
        """Fit the booster on one part and the calibration on another.

        Raises:
            PropensityInputError: bad parameters, mismatched shapes, or a part without
                both buyers and non-buyers.
        """
        problems = self.params.problems()
        if problems:
            raise PropensityInputError("propensity model: " + "; ".join(problems))
        for name, matrix, target in (
            ("training", features, labels),
            ("calibration", calibration_features, calibration_labels),
        ):
            if len(matrix) != len(target):
                raise PropensityInputError(
                    f"propensity model: {len(matrix)} {name} rows but {len(target)} labels"
                )
            if len(np.unique(target)) < 2:
                raise PropensityInputError(
                    f"propensity model: the {name} part needs buyers and non-buyers"
                )
        p = self.params
        booster = HistGradientBoostingClassifier(
            max_iter=p.max_iter,
            learning_rate=p.learning_rate,
            max_leaf_nodes=p.max_leaf_nodes,
            min_samples_leaf=p.min_samples_leaf,
            l2_regularization=p.l2_regularization,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=p.seed,
        )
        with threadpool_limits(limits=p.n_threads):
            booster.fit(features, labels)
            raw = booster.predict_proba(calibration_features)[:, 1]
        positives = int(calibration_labels.sum())
        method: Calibration = (
            "isotonic"
            if len(raw) >= ISOTONIC_MIN_ROWS and positives >= ISOTONIC_MIN_POSITIVES
            else "sigmoid"
        )
        if method == "isotonic":
            calibrator: IsotonicRegression | LogisticRegression = IsotonicRegression(
                y_min=0.0, y_max=1.0, out_of_bounds="clip"
            ).fit(raw, calibration_labels.astype(np.float64))
        else:
            calibrator = LogisticRegression().fit(_logit(raw), calibration_labels)
        self.booster_ = booster
        self.calibrator_ = calibrator
        self.calibration_: Calibration = method
        self.n_iter_ = int(booster.n_iter_)
        return self

    @classmethod
    def from_fitted(
        cls,
        params: PropensityParams,
        booster: HistGradientBoostingClassifier,
        calibrator: IsotonicRegression | LogisticRegression,
    ) -> PropensityModel:
        """A model as ``fit`` left it, from its fitted parts (a saved version's).

        Raises:
            PropensityInputError: a part is of another type, or the booster is unfitted.
        """
        if not isinstance(booster, HistGradientBoostingClassifier) or not hasattr(
            booster, "n_iter_"
        ):
            raise PropensityInputError(
                f"propensity model: the booster must be a fitted "
                f"HistGradientBoostingClassifier, got {type(booster).__name__}"
            )
        if not isinstance(calibrator, IsotonicRegression | LogisticRegression):
            raise PropensityInputError(
                f"propensity model: the calibrator must be an IsotonicRegression or a "
                f"LogisticRegression, got {type(calibrator).__name__}"
            )
        model = cls(params)
        model.booster_ = booster
        model.calibrator_ = calibrator
        model.calibration_ = "isotonic" if isinstance(calibrator, IsotonicRegression) else "sigmoid"
        model.n_iter_ = int(booster.n_iter_)
        return model

    def predict(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated probabilities of the positive class, one per row.

        Raises:
            NotFittedError: ``fit`` has not run.
        """
        if not hasattr(self, "booster_"):
            raise NotFittedError("propensity model: call fit before predict")
        if not len(features):
            return np.zeros(0, dtype=np.float64)
        with threadpool_limits(limits=self.params.n_threads):
            raw = self.booster_.predict_proba(features)[:, 1]
        if isinstance(self.calibrator_, IsotonicRegression):
            calibrated = self.calibrator_.predict(raw)
        else:
            calibrated = self.calibrator_.predict_proba(_logit(raw))[:, 1]
        return np.clip(np.asarray(calibrated, dtype=np.float64), 0.0, 1.0)

    def raw_scores(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """The booster's uncalibrated scores (for reports).

        Raises:
            NotFittedError: ``fit`` has not run.
        """
        if not hasattr(self, "booster_"):
            raise NotFittedError("propensity model: call fit before raw_scores")
        with threadpool_limits(limits=self.params.n_threads):
            return np.asarray(self.booster_.predict_proba(features)[:, 1], dtype=np.float64)


def _logit(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    clipped = np.clip(scores, _EPSILON, 1.0 - _EPSILON)
    return np.log(clipped / (1.0 - clipped)).reshape(-1, 1)
