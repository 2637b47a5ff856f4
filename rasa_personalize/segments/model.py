"""The segment model as data: scaler, clusters and their archetypes, stored as JSON.

A model is one JSON file per method under ``<model_dir>/segments/`` (``kmeans.json``,
``gmm.json``, ``dbscan.json``): plain numbers and names, no pickle, so any version of
the code (or a person) can read it. :func:`save_model` writes a temporary sibling,
flushes it to disk and renames it over the old file (atomic on one filesystem), so a
reader sees the old model or the new one, never half of one.

Everything that assigning a customer needs is in the model: the scaling of the feature
columns, the cluster centres in scaled space (plus covariances for a Gaussian mixture and
core samples for DBSCAN), the stable cluster ids and each cluster's archetype. The next
training run reads it back to keep cluster ids and names stable (see
:mod:`rasa_personalize.segments.clustering`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.segments.errors import FeatureMismatchError, SegmentModelError
from rasa_personalize.segments.features import CustomerFeatures
from rasa_personalize.slots import CUSTOMER_SEGMENTS

logger = logging.getLogger(__name__)

MODEL_FORMAT: Final = 1
SEGMENTS_DIRECTORY: Final = "segments"
METHODS: Final = ("kmeans", "gmm", "dbscan")
NOISE_CLUSTER: Final = -1


@dataclass(frozen=True)
class FeatureScaler:
    """log1p on the skewed columns, then centre and scale every column (z-scores).

    Attributes:
        features: the columns used, in order.
        log_features: the subset that gets ``log1p`` first (counts and money are skewed:
            1 vs 5 purchases matters more than 41 vs 45).
        center: per column mean after the log step.
        scale: per column standard deviation after the log step (1 where constant).
    """

    features: tuple[str, ...]
    log_features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(
        cls, features: CustomerFeatures, columns: Sequence[str], log_columns: Sequence[str]
    ) -> FeatureScaler:
        """Learn centre and scale of ``columns`` of ``features``.

        Raises:
            FeatureMismatchError: a column is missing, or a log column has negative values.
        """
        logged = _log_step(features.columns(columns), columns, log_columns)
        center = logged.mean(axis=0) if len(logged) else np.zeros(len(columns))
        scale = logged.std(axis=0) if len(logged) else np.ones(len(columns))
        # A constant column carries no information; scale 1 keeps it at zero, not NaN.
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(
            features=tuple(columns),
            log_features=tuple(c for c in columns if c in set(log_columns)),
            center=tuple(float(v) for v in center),
            scale=tuple(float(v) for v in scale),
        )

    def transform(self, features: CustomerFeatures) -> NDArray[np.float64]:
        """Scaled matrix ``(n, len(self.features))`` of these customers."""
        logged = _log_step(features.columns(self.features), self.features, self.log_features)
        return np.asarray((logged - self.center_array) / self.scale_array, dtype=np.float64)

    def to_log_space(self, scaled: NDArray[np.float64]) -> NDArray[np.float64]:
        """Undo the centring and scaling (but not the log): the space two scalers share."""
        return np.asarray(scaled * self.scale_array + self.center_array, dtype=np.float64)

    def from_log_space(self, logged: NDArray[np.float64]) -> NDArray[np.float64]:
        """Centre and scale values that already had the log step."""
        return np.asarray((logged - self.center_array) / self.scale_array, dtype=np.float64)

    @property
    def center_array(self) -> NDArray[np.float64]:
        """``center`` as an array."""
        return np.array(self.center, dtype=np.float64)

    @property
    def scale_array(self) -> NDArray[np.float64]:
        """``scale`` as an array."""
        return np.array(self.scale, dtype=np.float64)


def _log_step(
    matrix: NDArray[np.float64], columns: Sequence[str], log_columns: Sequence[str]
) -> NDArray[np.float64]:
    logged = np.array(matrix, dtype=np.float64)
    wanted = set(log_columns)
    for index, name in enumerate(columns):
        if name in wanted:
            if (logged[:, index] < 0).any():
                raise FeatureMismatchError(
                    f"features: column {name!r} has negative values; it cannot be log-scaled"
                )
            logged[:, index] = np.log1p(logged[:, index])
    return logged


@dataclass(frozen=True)
class SegmentModel:
    """A trained segmentation: how to scale, where the clusters are, what they are called.

    Attributes:
        version: unique id, ``<method>-<UTC time>-<hash>``; stored with every assignment.
        method: ``kmeans``, ``gmm`` or ``dbscan``.
        trained_at: ISO 8601 UTC time of training.
        seed: the random seed used.
        scaler: the feature scaling.
        cluster_ids: stable ids of the clusters (kept across re-runs), one per centroid.
        centroids: cluster centres in scaled space, ``(k, d)``.
        profiles: per cluster, the mean of every feature in original units (what the
            archetype naming and the report read).
        archetypes: per cluster, the contract segment it maps to.
        counts: per cluster, customers assigned at training time.
        covariances: Gaussian mixture only: ``(k, d, d)`` covariances in scaled space.
        weights: Gaussian mixture only: mixture weights.
        core_samples: DBSCAN only: core points in scaled space, ``(m, d)``.
        core_clusters: DBSCAN only: the cluster id of each core point.
        eps: DBSCAN only: the neighbourhood radius in scaled space.
        noise_segment: DBSCAN only: the segment of noise points (None: left unassigned).
        metrics: figures of the fit (chosen k, silhouette or BIC per candidate, ...).
        format: layout version of the JSON.
    """

    version: str
    method: str
    trained_at: str
    seed: int
    scaler: FeatureScaler
    cluster_ids: tuple[int, ...]
    centroids: tuple[tuple[float, ...], ...]
    profiles: tuple[Mapping[str, float], ...]
    archetypes: tuple[str, ...]
    counts: tuple[int, ...]
    covariances: tuple[tuple[tuple[float, ...], ...], ...] = ()
    weights: tuple[float, ...] = ()
    core_samples: tuple[tuple[float, ...], ...] = ()
    core_clusters: tuple[int, ...] = ()
    eps: float | None = None
    noise_segment: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    format: int = MODEL_FORMAT

    def __post_init__(self) -> None:
        k = len(self.cluster_ids)
        lengths = {len(self.centroids), len(self.profiles), len(self.archetypes), len(self.counts)}
        if lengths != {k}:
            raise SegmentModelError("segment model: one centroid, profile, name, count per id")
        if len(set(self.cluster_ids)) != k or NOISE_CLUSTER in self.cluster_ids:
            raise SegmentModelError("segment model: cluster ids must be unique and not -1")
        unknown = sorted(set(self.archetypes) - set(CUSTOMER_SEGMENTS))
        if unknown:
            raise SegmentModelError(f"segment model: not contract segments: {unknown}")
        if self.method not in METHODS:
            raise SegmentModelError(f"segment model: unknown method {self.method!r}")

    @property
    def centroid_array(self) -> NDArray[np.float64]:
        """``centroids`` as a ``(k, d)`` array."""
        return np.array(self.centroids, dtype=np.float64).reshape(
            len(self.cluster_ids), len(self.scaler.features)
        )

    def archetype_of(self, cluster_id: int) -> str | None:
        """The segment of a cluster id (``NOISE_CLUSTER``: the noise segment)."""
        if cluster_id == NOISE_CLUSTER:
            return self.noise_segment
        return self.archetypes[self.cluster_ids.index(cluster_id)]

    def check_features(self, features: CustomerFeatures) -> None:
        """Raise if ``features`` lacks a column this model was trained on.

        Raises:
            FeatureMismatchError: naming the missing columns.
        """
        missing = [name for name in self.scaler.features if name not in features.names]
        if missing:
            raise FeatureMismatchError(
                f"segment model {self.version}: features lack {', '.join(missing)}"
            )

    def to_json(self) -> str:
        """The JSON document of this model."""
        document = {
            "format": self.format,
            "version": self.version,
            "method": self.method,
            "trained_at": self.trained_at,
            "seed": self.seed,
            "scaler": {
                "features": list(self.scaler.features),
                "log_features": list(self.scaler.log_features),
                "center": list(self.scaler.center),
                "scale": list(self.scaler.scale),
            },
            "clusters": [
                {
                    "id": cluster_id,
                    "archetype": archetype,
                    "count": count,
                    "centroid": list(centroid),
                    "profile": dict(profile),
                }
                for cluster_id, archetype, count, centroid, profile in zip(
                    self.cluster_ids,
                    self.archetypes,
                    self.counts,
                    self.centroids,
                    self.profiles,
                    strict=True,
                )
            ],
            "gmm": {
                "weights": list(self.weights),
                "covariances": [[list(row) for row in c] for c in self.covariances],
            },
            "dbscan": {
                "eps": self.eps,
                "noise_segment": self.noise_segment,
                "core_clusters": list(self.core_clusters),
                "core_samples": [list(point) for point in self.core_samples],
            },
            "metrics": dict(self.metrics),
        }
        return json.dumps(document, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> SegmentModel:
        """Read a model written by :meth:`to_json`.

        Raises:
            SegmentModelError: not JSON, another format, or fields missing or malformed.
        """
        try:
            document = json.loads(text)
            if document.get("format") != MODEL_FORMAT:
                raise SegmentModelError(
                    f"{source}: segment model format {document.get('format')!r}, "
                    f"this code reads format {MODEL_FORMAT}; retrain with `personalize segment`"
                )
            scaler = document["scaler"]
            clusters = document["clusters"]
            gmm, dbscan = document["gmm"], document["dbscan"]
            return cls(
                version=str(document["version"]),
                method=str(document["method"]),
                trained_at=str(document["trained_at"]),
                seed=int(document["seed"]),
                scaler=FeatureScaler(
                    features=tuple(map(str, scaler["features"])),
                    log_features=tuple(map(str, scaler["log_features"])),
                    center=tuple(map(float, scaler["center"])),
                    scale=tuple(map(float, scaler["scale"])),
                ),
                cluster_ids=tuple(int(c["id"]) for c in clusters),
                centroids=tuple(tuple(map(float, c["centroid"])) for c in clusters),
                profiles=tuple(
                    {str(k): float(v) for k, v in c["profile"].items()} for c in clusters
                ),
                archetypes=tuple(str(c["archetype"]) for c in clusters),
                counts=tuple(int(c["count"]) for c in clusters),
                covariances=tuple(
                    tuple(tuple(map(float, row)) for row in c) for c in gmm["covariances"]
                ),
                weights=tuple(map(float, gmm["weights"])),
                core_samples=tuple(tuple(map(float, p)) for p in dbscan["core_samples"]),
                core_clusters=tuple(map(int, dbscan["core_clusters"])),
                eps=None if dbscan["eps"] is None else float(dbscan["eps"]),
                noise_segment=dbscan["noise_segment"],
                metrics=dict(document.get("metrics") or {}),
            )
        except SegmentModelError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SegmentModelError(
                f"{source}: not a readable segment model ({type(error).__name__}: {error})"
            ) from None


def model_path(model_dir: Path, method: str) -> Path:
    """Where the current model of ``method`` lives under ``model_dir``."""
    return Path(model_dir) / SEGMENTS_DIRECTORY / f"{method}.json"


def save_model(model: SegmentModel, model_dir: Path) -> Path:
    """Write ``model`` atomically to :func:`model_path`; return that path.

    Raises:
        SegmentModelError: the directory cannot be created or written.
    """
    path = model_path(model_dir, model.method)
    text = model.to_json()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
                stream.flush()
                os.fsync(stream.fileno())
            # mkstemp makes the file private; servers running as another user read it.
            Path(temporary).chmod(0o644)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)
    except OSError as error:
        raise SegmentModelError(f"cannot write segment model {path}: {error.strerror}") from None
    logger.info("saved segment model %s to %s", model.version, path)
    return path


def load_model(path: Path) -> SegmentModel:
    """Read the model at ``path``.

    Raises:
        SegmentModelError: missing, unreadable or malformed.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SegmentModelError(f"no segment model at {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SegmentModelError(f"cannot read segment model {path}: {error}") from None
    return SegmentModel.from_json(text, str(path))


def load_previous(model_dir: Path, method: str) -> SegmentModel | None:
    """The current model of ``method``, or None if there is none or it cannot be read.

    A broken previous model must not stop retraining: it is logged and ignored.
    """
    path = model_path(model_dir, method)
    if not path.exists():
        return None
    try:
        return load_model(path)
    except SegmentModelError as error:
        logger.warning("ignoring the previous segment model: %s", error)
        return None


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
