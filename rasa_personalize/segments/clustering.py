"""Clustering customers into segments: K-Means, Gaussian mixture or DBSCAN, named, stable.

Pipeline of :meth:`CustomerSegmenter.fit`:

1. **Scale** the clustering columns (:data:`CLUSTER_FEATURES`): ``log1p`` on counts, money
   and recency, then z-scores (:class:`~rasa_personalize.segments.model.FeatureScaler`). The
   engagement ratios, demographics and category affinities are computed but not clustered
   on by default: they describe taste and style, not where a customer is in their life
   with the shop, and on the demo data adding them lowers the agreement with the true
   groups (adjusted Rand index) markedly.
2. **Choose k and fit**, deterministic for ``random_state``:

   - ``kmeans``: k in ``k_range`` with the best silhouette on a random sample of at
     most ``sample_size`` customers; the final K-Means runs on everyone, started from
     the sample's centres.
   - ``gmm``: full-covariance Gaussian mixture, k in ``k_range`` with the lowest BIC on
     the sample; the final fit on everyone starts from the sample's mixture.
   - ``dbscan``: on a sample (duplicates merged with weights, so 100k identical new
     visitors are one weighted point), ``min_samples`` (default twice the number of
     columns) and ``eps`` = the ``eps_quantile`` quantile of each point's distance to its
     ``min_samples``-th neighbour. Everyone is then assigned to the cluster of the
     nearest core sample within ``eps``; farther points are **noise**, which goes to
     ``noise_segment`` (default ``browser``: the archetype rule's catch-all for customers
     without a clear pattern) or, with ``noise_segment=None``, stays unassigned (the
     engine then falls back to the archetype rule).

3. **Keep labels stable** when a ``previous`` model of the same method and columns is
   given: k stays the previous k unless another k is better by more than
   ``stability_margin`` (silhouette: absolute; BIC: relative); K-Means and the mixture
   start from the previous centres; then the new clusters are matched one-to-one to the
   previous ones by centroid distance (Hungarian algorithm, in the new scaled space).
   A match closer than ``match_distance`` keeps the previous cluster id and archetype
   (unless that archetype's prototype score has dropped to 0), so a customer whose
   behaviour did not change keeps their segment.
4. **Name** the other clusters with :func:`rasa_personalize.segments.naming.name_clusters`.

Scores stored per customer: K-Means ``1 - d1/d2`` (distance to own vs. second nearest
centre: 1 at the centre, 0 on the border); mixture: the posterior probability of the
chosen component; DBSCAN: ``1 - d/eps`` to the nearest core sample, 0 for noise.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import solve_triangular
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from sklearn.cluster import DBSCAN, KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from rasa_personalize.clock import utc_now
from rasa_personalize.segments.errors import NotFittedError, SegmentationError
from rasa_personalize.segments.features import CustomerFeatures
from rasa_personalize.segments.model import METHODS, NOISE_CLUSTER, FeatureScaler, SegmentModel
from rasa_personalize.segments.naming import archetype_scores, name_clusters
from rasa_personalize.slots import CUSTOMER_SEGMENTS

logger = logging.getLogger(__name__)

CLUSTER_FEATURES: Final = (
    "recency_days",
    "frequency",
    "monetary",
    "sessions",
    "discount_share",
    "relative_price",
    "loyalty_tier",
)
LOG_FEATURES: Final = frozenset(
    {"recency_days", "frequency", "monetary", "sessions", "views_per_session"}
)
DEFAULT_K_RANGE: Final = (4, 10)
DEFAULT_SAMPLE_SIZE: Final = 5_000
DBSCAN_SAMPLE_SIZE: Final = 10_000
# On z-scores, 1e-3 is negligible next to unit variance and keeps a component that holds
# identical customers (every new visitor is the same point) from going singular.
GMM_REG_COVAR: Final = 1e-3
KMEANS_N_INIT: Final = 4
# Rows per block when assigning: bounds the (rows x clusters) temporaries.
ASSIGN_CHUNK: Final = 100_000


@dataclass(frozen=True, eq=False)
class Segmentation:
    """Where each customer landed. Arrays are aligned with ``customer_ids``.

    Attributes:
        customer_ids: store ids.
        clusters: stable cluster id per customer, ``NOISE_CLUSTER`` (-1) for DBSCAN noise.
        segment_codes: index into ``CUSTOMER_SEGMENTS`` per customer; -1: unassigned.
        scores: confidence in [0, 1] per customer (see the module docstring).
        model_version: the version of the model that assigned them.
        method: the model's method.
    """

    customer_ids: NDArray[np.int64]
    clusters: NDArray[np.int64]
    segment_codes: NDArray[np.int64]
    scores: NDArray[np.float64]
    model_version: str
    method: str

    def __len__(self) -> int:
        return len(self.customer_ids)

    def segments(self) -> list[str | None]:
        """The segment name per customer (None: unassigned)."""
        return [CUSTOMER_SEGMENTS[c] if c >= 0 else None for c in self.segment_codes.tolist()]

    def sizes(self) -> dict[str, int]:
        """Customers per segment, in contract order, plus ``unassigned`` when there are any."""
        counts = np.bincount(self.segment_codes + 1, minlength=len(CUSTOMER_SEGMENTS) + 1)
        sizes = {name: int(counts[i + 1]) for i, name in enumerate(CUSTOMER_SEGMENTS)}
        if counts[0]:
            sizes["unassigned"] = int(counts[0])
        return sizes


class CustomerSegmenter:
    """Cluster customers and name the clusters after the contract's archetypes.

    A scikit-learn style estimator: ``__init__`` only stores parameters, :meth:`fit`
    learns ``model_`` and ``segmentation_`` and returns ``self``, :meth:`predict` assigns
    customers with the fitted model. See the module docstring for the pipeline.

    Args:
        method: ``kmeans``, ``gmm`` or ``dbscan``.
        random_state: seed of every random choice (samples, initializations).
        k_range: smallest and largest k tried (K-Means, mixture).
        sample_size: customers in the sample that chooses k.
        features: the clustering columns.
        log_features: the columns that get ``log1p`` before scaling.
        min_samples: DBSCAN core-point threshold (default: twice the columns).
        eps_quantile: DBSCAN radius as this quantile of the ``min_samples`` distances.
        noise_segment: DBSCAN noise goes here; None leaves it unassigned.
        stability_margin: how much better another k must be to replace the previous k.
        match_distance: largest centroid distance (scaled units) that counts as the
            same cluster as in the previous model.
        n_threads: threads for the numeric libraries (None: their default, all cores).
            One by default: the job shares its machine with the action server, and
            OpenMP threads that busy-wait for a busy core measured 3 to 17 times slower
            than one thread on a loaded 2-core machine.
    """

    def __init__(
        self,
        method: str = "kmeans",
        *,
        random_state: int = 0,
        k_range: tuple[int, int] = DEFAULT_K_RANGE,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        features: Sequence[str] = CLUSTER_FEATURES,
        log_features: Sequence[str] = tuple(sorted(LOG_FEATURES)),
        min_samples: int | None = None,
        eps_quantile: float = 0.5,
        noise_segment: str | None = "browser",
        stability_margin: float = 0.02,
        match_distance: float = 1.0,
        n_threads: int | None = 1,
    ) -> None:
        self.method = method
        self.random_state = random_state
        self.k_range = k_range
        self.sample_size = sample_size
        self.features = features
        self.log_features = log_features
        self.min_samples = min_samples
        self.eps_quantile = eps_quantile
        self.noise_segment = noise_segment
        self.stability_margin = stability_margin
        self.match_distance = match_distance
        self.n_threads = n_threads

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (as scikit-learn's ``get_params``)."""
        return {
            "method": self.method,
            "random_state": self.random_state,
            "k_range": tuple(self.k_range),
            "sample_size": self.sample_size,
            "features": tuple(self.features),
            "log_features": tuple(self.log_features),
            "min_samples": self.min_samples,
            "eps_quantile": self.eps_quantile,
            "noise_segment": self.noise_segment,
            "stability_margin": self.stability_margin,
            "match_distance": self.match_distance,
            "n_threads": self.n_threads,
        }

    # -- public API ----------------------------------------------------------------------

    def fit(
        self, features: CustomerFeatures, previous: SegmentModel | None = None
    ) -> CustomerSegmenter:
        """Learn clusters and their archetypes from ``features``.

        Args:
            features: every customer to learn from (and to assign).
            previous: the last model of this method; keeps ids and names stable. Ignored
                (with a log line) if its method or columns differ.

        Raises:
            SegmentationError: bad parameters, or no customers.
            FeatureMismatchError: ``features`` lacks a clustering column.
        """
        self._check_params()
        if len(features) == 0:
            raise SegmentationError("segmentation: there are no customers to segment")
        with threadpool_limits(limits=self.n_threads):
            self._fit(features, self._usable(previous))
        return self

    def _fit(self, features: CustomerFeatures, previous: SegmentModel | None) -> None:
        scaler = FeatureScaler.fit(features, tuple(self.features), tuple(self.log_features))
        scaled = scaler.transform(features)
        rng = np.random.default_rng(self.random_state)
        sample = scaled[_sample_rows(len(scaled), self.sample_size, rng)]
        prior = _previous_in(previous, scaler) if previous is not None else None
        if self.method == "kmeans":
            draft, metrics = self._fit_kmeans(scaled, sample, previous, prior)
        elif self.method == "gmm":
            draft, metrics = self._fit_gmm(scaled, sample, previous, prior, scaler.scale_array)
        else:
            draft, metrics = self._fit_dbscan(scaled, rng)
        model = self._finish(
            features,
            scaled=scaled,
            scaler=scaler,
            draft=draft,
            metrics=metrics,
            previous=previous,
            prior=prior,
        )
        self.model_ = model
        self.segmentation_ = assign(model, features)

    def predict(self, features: CustomerFeatures) -> Segmentation:
        """Assign customers with the fitted model.

        Raises:
            NotFittedError: :meth:`fit` was not called.
            FeatureMismatchError: ``features`` lacks a column the model needs.
        """
        model: SegmentModel | None = getattr(self, "model_", None)
        if model is None:
            raise NotFittedError(
                "this CustomerSegmenter is not fitted yet: call fit(features) first"
            )
        with threadpool_limits(limits=self.n_threads):
            return assign(model, features)

    # -- checks --------------------------------------------------------------------------

    def _check_params(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        low, high = self.k_range
        if not 1 <= low <= high:
            problems.append(f"k_range must be (low, high), 1 <= low <= high, got {self.k_range}")
        if self.sample_size < 2:
            problems.append(f"sample_size must be at least 2, got {self.sample_size}")
        if not self.features or len(set(self.features)) != len(self.features):
            problems.append("features must be a non-empty list of distinct column names")
        if not 0.0 < self.eps_quantile <= 1.0:
            problems.append(f"eps_quantile must be in (0, 1], got {self.eps_quantile}")
        if self.min_samples is not None and self.min_samples < 1:
            problems.append(f"min_samples must be at least 1, got {self.min_samples}")
        if self.noise_segment is not None and self.noise_segment not in CUSTOMER_SEGMENTS:
            problems.append(
                f"noise_segment must be a contract segment or None, got {self.noise_segment!r}"
            )
        if self.n_threads is not None and self.n_threads < 1:
            problems.append(f"n_threads must be at least 1 or None, got {self.n_threads}")
        if self.match_distance < 0 or self.stability_margin < 0:
            problems.append("match_distance and stability_margin must not be negative")
        if problems:
            raise SegmentationError("segmentation: " + "; ".join(problems))

    def _usable(self, previous: SegmentModel | None) -> SegmentModel | None:
        if previous is None:
            return None
        if previous.method != self.method:
            logger.info("previous model is %s, not %s: ignored", previous.method, self.method)
            return None
        same_columns = previous.scaler.features == tuple(self.features) and set(
            previous.scaler.log_features
        ) == {c for c in self.features if c in set(self.log_features)}
        if not same_columns:
            logger.info("previous segment model %s has other columns: ignored", previous.version)
            return None
        return previous

    # -- methods -------------------------------------------------------------------------

    def _k_candidates(self, sample: NDArray[np.float64]) -> list[int]:
        # More clusters than distinct points cannot be fitted (nor scored by silhouette).
        distinct = len(np.unique(sample, axis=0))
        low, high = self.k_range
        return [k for k in range(low, high + 1) if k < distinct] or [max(1, min(low, distinct))]

    def _choose_k(
        self,
        figures: Mapping[int, float],
        previous: SegmentModel | None,
        *,
        higher_is_better: bool,
    ) -> int:
        sign = 1.0 if higher_is_better else -1.0
        best = max(figures, key=lambda k: (sign * figures[k], -k))
        if previous is None:
            return best
        previous_k = len(previous.cluster_ids)
        if previous_k not in figures or previous_k == best:
            return best
        gain = sign * (figures[best] - figures[previous_k])
        if not higher_is_better:
            gain /= max(abs(figures[best]), 1e-12)  # BIC: relative
        return previous_k if gain <= self.stability_margin else best

    def _fit_kmeans(
        self,
        scaled: NDArray[np.float64],
        sample: NDArray[np.float64],
        previous: SegmentModel | None,
        prior: NDArray[np.float64] | None,
    ) -> tuple[_Draft, dict[str, Any]]:
        candidates = self._k_candidates(sample)
        fitted: dict[int, KMeans] = {}
        silhouettes: dict[int, float] = {}
        with warnings.catch_warnings():
            # Few distinct points make K-Means warn; k is capped below their number.
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in candidates:
                model = KMeans(k, n_init=KMEANS_N_INIT, random_state=self.random_state)
                fitted[k] = model.fit(sample)
                silhouettes[k] = _silhouette(sample, fitted[k].labels_, self.random_state)
            k = self._choose_k(silhouettes, previous, higher_is_better=True)
            init = prior if prior is not None and len(prior) == k else fitted[k].cluster_centers_
            final = KMeans(k, init=init, n_init=1, random_state=self.random_state).fit(scaled)
        metrics: dict[str, Any] = {
            "k": k,
            "criterion": "silhouette",
            "k_candidates": {str(c): round(v, 6) for c, v in silhouettes.items()},
            "silhouette": round(silhouettes[k], 6),
            "inertia": float(final.inertia_),
        }
        return _Draft(centroids=np.asarray(final.cluster_centers_, dtype=np.float64)), metrics

    def _fit_gmm(
        self,
        scaled: NDArray[np.float64],
        sample: NDArray[np.float64],
        previous: SegmentModel | None,
        prior: NDArray[np.float64] | None,
        scale: NDArray[np.float64],
    ) -> tuple[_Draft, dict[str, Any]]:
        if len(scaled) < 2:
            # A mixture needs two points to fit: one customer is one unit-variance cluster.
            one = _Draft(
                centroids=scaled[:1].copy(),
                covariances=np.eye(scaled.shape[1])[np.newaxis],
                weights=np.ones(1),
            )
            return one, {"k": 1, "criterion": "bic", "k_candidates": {}, "converged": True}
        candidates = self._k_candidates(sample)
        fitted: dict[int, GaussianMixture] = {}
        bics: dict[int, float] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for k in candidates:
                mixture = GaussianMixture(
                    k, reg_covar=GMM_REG_COVAR, random_state=self.random_state, max_iter=200
                )
                fitted[k] = mixture.fit(sample)
                bics[k] = float(fitted[k].bic(sample))
            k = self._choose_k(bics, previous, higher_is_better=False)
            start = fitted[k]
            means, covariances, weights = start.means_, start.covariances_, start.weights_
            if previous is not None and prior is not None and len(prior) == k:
                means = prior
                covariances = _previous_covariances(previous, scale)
                weights = np.array(previous.weights) / np.sum(previous.weights)
            final = GaussianMixture(
                k,
                reg_covar=GMM_REG_COVAR,
                random_state=self.random_state,
                max_iter=200,
                weights_init=weights,
                means_init=means,
                precisions_init=np.linalg.inv(covariances),
            ).fit(scaled)
        metrics: dict[str, Any] = {
            "k": k,
            "criterion": "bic",
            "k_candidates": {str(c): round(v, 3) for c, v in bics.items()},
            "bic": round(float(final.bic(scaled)), 3),
            "converged": bool(final.converged_),
        }
        draft = _Draft(
            centroids=np.asarray(final.means_, dtype=np.float64),
            covariances=np.asarray(final.covariances_, dtype=np.float64),
            weights=np.asarray(final.weights_, dtype=np.float64),
        )
        return draft, metrics

    def _fit_dbscan(
        self, scaled: NDArray[np.float64], rng: np.random.Generator
    ) -> tuple[_Draft, dict[str, Any]]:
        sample = scaled[_sample_rows(len(scaled), max(self.sample_size, DBSCAN_SAMPLE_SIZE), rng)]
        points, inverse, counts = np.unique(sample, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        min_samples = self.min_samples or 2 * scaled.shape[1]
        neighbours = min(min_samples, len(points))
        distances, _ = NearestNeighbors(n_neighbors=neighbours).fit(points).kneighbors(points)
        eps = float(np.quantile(distances[:, -1], self.eps_quantile))
        eps = eps if eps > 0 else 1e-6  # all points identical: any radius joins them
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit(points, sample_weight=counts).labels_
        clusters = [c for c in np.unique(labels) if c >= 0]
        member_labels = labels[inverse]
        centroids = np.array(
            [sample[member_labels == c].mean(axis=0) for c in clusters], dtype=np.float64
        ).reshape(len(clusters), scaled.shape[1])
        core = _dbscan_core(points, labels, counts, eps, min_samples)
        metrics: dict[str, Any] = {
            "k": len(clusters),
            "criterion": "density",
            "eps": round(eps, 6),
            "min_samples": min_samples,
            "sample_noise_share": round(float(np.mean(member_labels < 0)), 6),
            "silhouette": (
                round(_silhouette(sample, member_labels, self.random_state), 6)
                if len(clusters) >= 2
                else None
            ),
        }
        # Core points keep their draft cluster index; it is remapped to stable ids later.
        draft = _Draft(
            centroids=centroids,
            core_samples=points[core],
            core_clusters=np.searchsorted(clusters, labels[core]).astype(np.int64),
            eps=eps,
        )
        return draft, metrics

    # -- naming, stability, the model ----------------------------------------------------

    def _finish(
        self,
        features: CustomerFeatures,
        *,
        scaled: NDArray[np.float64],
        scaler: FeatureScaler,
        draft: _Draft,
        metrics: dict[str, Any],
        previous: SegmentModel | None,
        prior: NDArray[np.float64] | None,
    ) -> SegmentModel:
        labels, _ = _assign_rows(draft, scaled, self.method)
        # Drop clusters nobody ended up in (K-Means can leave one empty on the full data).
        kept = [c for c in range(len(draft.centroids)) if (labels == c).any()]
        draft = draft.keep(kept)
        labels, _ = _assign_rows(draft, scaled, self.method)
        counts = np.bincount(labels[labels >= 0], minlength=len(kept))
        profiles = [_profile(features, labels == c, counts[c]) for c in range(len(draft.centroids))]
        ids, names, matched = self._stable_labels(draft, profiles, previous, prior)
        if self.method == "dbscan":
            metrics["noise_share"] = round(float(np.mean(labels < 0)), 6)
        metrics.update(
            customers=len(features),
            sample_size=min(len(features), self.sample_size),
            matched_previous=matched,
            previous_version=previous.version if previous is not None else None,
        )
        trained_at = utc_now()
        body = repr((self.method, ids, names, np.round(draft.centroids, 6).tolist()))
        digest = hashlib.sha256(body.encode()).hexdigest()[:8]
        return SegmentModel(
            version=f"{self.method}-{trained_at:%Y%m%dT%H%M%S%fZ}-{digest}",
            method=self.method,
            trained_at=trained_at.isoformat(),
            seed=self.random_state,
            scaler=scaler,
            cluster_ids=tuple(ids),
            centroids=tuple(tuple(map(float, row)) for row in draft.centroids),
            profiles=tuple(profiles),
            archetypes=tuple(names),
            counts=tuple(int(c) for c in counts),
            covariances=tuple(
                tuple(tuple(map(float, row)) for row in c) for c in draft.covariances
            ),
            weights=tuple(map(float, draft.weights)),
            core_samples=tuple(tuple(map(float, p)) for p in draft.core_samples),
            core_clusters=tuple(ids[c] for c in draft.core_clusters.tolist()),
            eps=draft.eps,
            noise_segment=self.noise_segment if self.method == "dbscan" else None,
            metrics=metrics,
        )

    def _stable_labels(
        self,
        draft: _Draft,
        profiles: Sequence[Mapping[str, float]],
        previous: SegmentModel | None,
        prior: NDArray[np.float64] | None,
    ) -> tuple[list[int], list[str], int]:
        """Cluster ids and archetype names; matched to ``previous`` where close enough."""
        k = len(draft.centroids)
        ids: list[int | None] = [None] * k
        names: list[str | None] = [None] * k
        matched = 0
        if previous is not None and prior is not None and k and len(prior):
            distances = cdist(draft.centroids, prior)
            rows, columns = linear_sum_assignment(distances)
            for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
                if distances[row, column] > self.match_distance:
                    continue
                ids[row] = previous.cluster_ids[column]
                inherited = previous.archetypes[column]
                # Keep the old name unless the cluster plainly no longer fits it.
                if archetype_scores(profiles[row])[inherited] > 0.0:
                    names[row] = inherited
                matched += 1
        unnamed = [i for i in range(k) if names[i] is None]
        for index, name in zip(unnamed, name_clusters([profiles[i] for i in unnamed]), strict=True):
            names[index] = name
        # New clusters: ids after the previous model's, so an old id never changes meaning;
        # ordered by archetype, then biggest first.
        next_id = max(previous.cluster_ids, default=-1) + 1 if previous is not None else 0
        order = sorted(
            (i for i in range(k) if ids[i] is None),
            key=lambda i: (CUSTOMER_SEGMENTS.index(str(names[i])), -profiles[i]["size"], i),
        )
        for offset, index in enumerate(order):
            ids[index] = next_id + offset
        return [int(i) for i in ids if i is not None], [str(n) for n in names], matched


@dataclass(frozen=True, eq=False)
class _Draft:
    """Clusters before ids and names: indices 0..k-1 and what assigning needs."""

    centroids: NDArray[np.float64]
    covariances: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0, 0)))
    weights: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    core_samples: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    core_clusters: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    eps: float | None = None

    def keep(self, clusters: Sequence[int]) -> _Draft:
        """Only these clusters, renumbered 0..len-1 in the given order."""
        index = np.array(clusters, dtype=np.int64)
        renumber = np.full(len(self.centroids), -1, dtype=np.int64)
        renumber[index] = np.arange(len(index))
        core_keep = np.isin(self.core_clusters, index)
        weights = self.weights[index] if len(self.weights) else self.weights
        return _Draft(
            centroids=self.centroids[index].reshape(len(index), self.centroids.shape[1]),
            covariances=self.covariances[index] if len(self.covariances) else self.covariances,
            weights=weights / weights.sum() if len(weights) else weights,
            core_samples=(
                self.core_samples[core_keep] if len(self.core_samples) else self.core_samples
            ),
            core_clusters=renumber[self.core_clusters[core_keep]],
            eps=self.eps,
        )


def assign(model: SegmentModel, features: CustomerFeatures) -> Segmentation:
    """Assign customers to the clusters of a (stored) model.

    Raises:
        FeatureMismatchError: ``features`` lacks a column the model needs.
    """
    model.check_features(features)
    scaled = model.scaler.transform(features)
    k = len(model.cluster_ids)
    id_index = {cluster_id: i for i, cluster_id in enumerate(model.cluster_ids)}
    draft = _Draft(
        centroids=model.centroid_array,
        covariances=np.array(model.covariances, dtype=np.float64).reshape(
            (len(model.covariances), scaled.shape[1], scaled.shape[1])
        ),
        weights=np.array(model.weights, dtype=np.float64),
        core_samples=np.array(model.core_samples, dtype=np.float64).reshape(
            len(model.core_samples), scaled.shape[1]
        ),
        core_clusters=np.array([id_index[c] for c in model.core_clusters], dtype=np.int64),
        eps=model.eps,
    )
    rows, scores = _assign_rows(draft, scaled, model.method)
    ids = np.array(model.cluster_ids, dtype=np.int64)
    codes = np.array([CUSTOMER_SEGMENTS.index(a) for a in model.archetypes], dtype=np.int64)
    noise_code = (
        CUSTOMER_SEGMENTS.index(model.noise_segment) if model.noise_segment is not None else -1
    )
    assigned = rows >= 0
    clusters = np.where(assigned, ids[np.where(assigned, rows, 0)] if k else 0, NOISE_CLUSTER)
    segment_codes = np.where(assigned, codes[np.where(assigned, rows, 0)] if k else 0, noise_code)
    return Segmentation(
        customer_ids=np.array(features.customer_ids, dtype=np.int64),
        clusters=clusters.astype(np.int64),
        segment_codes=segment_codes.astype(np.int64),
        scores=np.where(assigned, scores, 0.0).astype(np.float64),
        model_version=model.version,
        method=model.method,
    )


def _assign_rows(
    draft: _Draft, scaled: NDArray[np.float64], kind: str
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Cluster index (-1: noise) and score per row, in blocks of ``ASSIGN_CHUNK`` rows."""
    labels = np.full(len(scaled), -1, dtype=np.int64)
    scores = np.zeros(len(scaled), dtype=np.float64)
    if kind == "dbscan":
        if len(draft.core_samples) == 0 or draft.eps is None:
            return labels, scores
        index = NearestNeighbors(n_neighbors=1).fit(draft.core_samples)
    for start in range(0, len(scaled), ASSIGN_CHUNK):
        block = scaled[start : start + ASSIGN_CHUNK]
        part = slice(start, start + len(block))
        if kind == "kmeans":
            labels[part], scores[part] = _nearest_centre(block, draft.centroids)
        elif kind == "gmm":
            labels[part], scores[part] = _mixture_posterior(block, draft)
        else:
            distance, nearest = index.kneighbors(block)
            inside = distance[:, 0] <= float(draft.eps or 0.0)
            labels[part] = np.where(inside, draft.core_clusters[nearest[:, 0]], -1)
            scores[part] = np.where(inside, 1.0 - distance[:, 0] / float(draft.eps or 1.0), 0.0)
    return labels, np.clip(scores, 0.0, 1.0)


def _nearest_centre(
    block: NDArray[np.float64], centres: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    squared = (
        (block**2).sum(axis=1)[:, None] - 2.0 * block @ centres.T + (centres**2).sum(axis=1)[None]
    )
    distance = np.sqrt(np.maximum(squared, 0.0))
    order = np.argsort(distance, axis=1, kind="stable")
    nearest = order[:, 0]
    rows = np.arange(len(block))
    if centres.shape[0] < 2:
        return nearest.astype(np.int64), np.ones(len(block))
    d1, d2 = distance[rows, nearest], distance[rows, order[:, 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence = np.where(d2 > 0, 1.0 - d1 / d2, 0.0)
    return nearest.astype(np.int64), confidence


def _mixture_posterior(
    block: NDArray[np.float64], draft: _Draft
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Most probable component and its posterior, from means, covariances and weights."""
    dims = block.shape[1]
    log_density = np.empty((len(block), len(draft.centroids)))
    for j, (mean, covariance) in enumerate(zip(draft.centroids, draft.covariances, strict=True)):
        factor = np.linalg.cholesky(covariance)
        solved = solve_triangular(factor, (block - mean).T, lower=True)
        log_det = 2.0 * np.log(np.diag(factor)).sum()
        log_density[:, j] = -0.5 * (dims * np.log(2 * np.pi) + log_det + (solved**2).sum(axis=0))
    with np.errstate(divide="ignore"):
        weighted = log_density + np.log(draft.weights)
    posterior = np.exp(weighted - logsumexp(weighted, axis=1, keepdims=True))
    best = np.argmax(posterior, axis=1)
    return best.astype(np.int64), posterior[np.arange(len(block)), best]


def _dbscan_core(
    points: NDArray[np.float64],
    labels: NDArray[np.int64],
    counts: NDArray[np.int64],
    eps: float,
    min_samples: int,
) -> NDArray[np.bool_]:
    """Which (deduplicated, weighted) points are DBSCAN core points."""
    neighbourhoods = (
        NearestNeighbors(radius=eps).fit(points).radius_neighbors(points, return_distance=False)
    )
    weight = np.array([counts[n].sum() for n in neighbourhoods])
    return np.asarray((weight >= min_samples) & (labels >= 0), dtype=np.bool_)


def _profile(features: CustomerFeatures, members: NDArray[np.bool_], size: int) -> dict[str, float]:
    """Mean of every feature over the members, in original units, plus ``size``."""
    means = features.matrix[members].mean(axis=0) if size else np.zeros(len(features.names))
    profile = {name: round(float(v), 6) for name, v in zip(features.names, means, strict=True)}
    profile["size"] = float(size)
    return profile


def _previous_in(previous: SegmentModel, scaler: FeatureScaler) -> NDArray[np.float64]:
    """The previous model's centroids in this run's scaled space."""
    return scaler.from_log_space(previous.scaler.to_log_space(previous.centroid_array))


def _previous_covariances(
    previous: SegmentModel, scale: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The previous mixture's covariances in this run's scaled space (``scale``: this
    run's per-column scale)."""
    ratio = previous.scaler.scale_array / scale
    d = len(scale)
    covariances = np.array(previous.covariances, dtype=np.float64).reshape(
        len(previous.cluster_ids), d, d
    )
    scaled_cov = covariances * ratio[None, :, None] * ratio[None, None, :]
    # A valid precision needs a positive-definite covariance; regularize like the fit.
    return np.asarray(scaled_cov + GMM_REG_COVAR * np.eye(d)[None], dtype=np.float64)


def _sample_rows(n: int, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Sorted row indices of a sample of at most ``size`` rows (all rows if fewer)."""
    if n <= size:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def _silhouette(points: NDArray[np.float64], labels: NDArray[np.int64], seed: int) -> float:
    present = np.unique(labels[labels >= 0])
    keep = labels >= 0
    if not 2 <= len(present) <= keep.sum() - 1:
        return -1.0
    return float(silhouette_score(points[keep], labels[keep], random_state=seed))
