"""Trained ALS models on disk, and the holder a running server swaps them in with.

An ALS version (see :mod:`rasa_personalize.recommend.versions` for how versions are
written, listed and swapped)::

    models/personalize/als/
        CURRENT
        20260101T120000123456Z-1a2b3c4d/
            factors.npz                          factors, id maps, BM25 state (no pickle);
                                                 with the EASE blend also its sparse
                                                 weights and the customers' products
            metadata.json                        version, trained_at, data_cutoff, params,
                                                 blend, ...

``factors.npz`` is an uncompressed zip of ``.npy`` files, each aligned in the file
(:func:`~rasa_personalize.recommend.npz.write_npz`), so loading memory-maps the arrays
where they lie (:func:`~rasa_personalize.recommend.npz.map_npz`) instead of reading
them: a million customers' factors and keys (about 500 MB) cost a server only the pages
its requests touch, and the kernel shares them between workers.
"""

from __future__ import annotations

import json
import logging
import mmap
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import scipy.sparse

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.metrics import model_loaded
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.ease import EaseBlend
from rasa_personalize.recommend.errors import ArtifactError, NotFittedError
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.npz import map_npz, write_npz
from rasa_personalize.recommend.served import ServedModel
from rasa_personalize.recommend.versions import (
    CURRENT_FILE,
    METADATA_FILE,
    ArtifactHolder,
    als_dir,
    check_payload,
    content_dir,
    current_version,
    list_versions,
    prune_artifacts,
    set_current,
    write_version,
)

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT: Final = 1
FACTORS_FILE: Final = "factors.npz"


@dataclass(frozen=True)
class ArtifactMetadata:
    """What ``metadata.json`` holds.

    Attributes:
        version: the artifact's version id (also its directory name).
        trained_at: ISO 8601 UTC time of training.
        params: the model's ``AlsParams`` as a dict.
        counts: data counts (users, items, interactions, ...).
        metrics: evaluation figures, if the trainer computed any.
        factors_sha256: checksum of ``factors.npz``.
        format: the layout version of the artifact.
        data_cutoff: ISO 8601 UTC time of the newest interaction trained on; interactions
            after it are what a customer did since (empty in artifacts written before
            it was recorded: see ``trained_until``).
        blend: ``{"model": "als+ease", "ease_l2": ..., "ease_weight": ...,
            "ease_recency": ...}`` when the artifact serves ALS blended with EASE; empty
            for ALS alone (``ease_recency`` is absent from artifacts written before it).
    """

    version: str
    trained_at: str
    params: Mapping[str, Any]
    counts: Mapping[str, int]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    factors_sha256: str = ""
    format: int = ARTIFACT_FORMAT
    data_cutoff: str = ""
    blend: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def trained_until(self) -> datetime:
        """The training data cutoff; ``trained_at`` for artifacts that did not record one.

        Training reads every interaction stored when it starts, so an interaction after
        this time is new to the model. One stored later with an older time (a late
        import) is only seen by the next training.
        """
        when = datetime.fromisoformat(self.data_cutoff or self.trained_at)
        # Written by this module in UTC; a naive stamp (edited by hand) is read as UTC too.
        return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)

    def to_json(self) -> str:
        """The metadata as pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ArtifactMetadata:
        """Parse ``metadata.json``.

        Raises:
            ArtifactError: not JSON, fields missing, or a format this code cannot read.
        """
        try:
            document = json.loads(text)
            metadata = cls(
                version=str(document["version"]),
                trained_at=str(document["trained_at"]),
                params=dict(document["params"]),
                counts={str(k): int(v) for k, v in document["counts"].items()},
                metrics=dict(document.get("metrics", {})),
                factors_sha256=str(document.get("factors_sha256", "")),
                format=int(document["format"]),
                data_cutoff=str(document.get("data_cutoff") or ""),
                blend=dict(document.get("blend") or {}),
            )
            # Parsed once here, so a bad time fails the load rather than a later request.
            metadata.trained_until  # noqa: B018  # evaluated for its ValueError
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ArtifactError(f"invalid {METADATA_FILE}: {error!r}") from error
        if metadata.format != ARTIFACT_FORMAT:
            raise ArtifactError(
                f"artifact format {metadata.format} is not supported (this code reads "
                f"{ARTIFACT_FORMAT}); retrain with this version"
            )
        return metadata


@dataclass(frozen=True, eq=False)
class AlsArtifact:
    """A loaded artifact: the fitted ALS model, the EASE half of a blend, the metadata."""

    model: AlsRecommender
    metadata: ArtifactMetadata
    path: Path
    ease: EaseBlend | None = None

    @property
    def version(self) -> str:
        """The version id."""
        return self.metadata.version

    @cached_property
    def served(self) -> ServedModel:
        """What this artifact serves: ALS, or ALS blended with EASE."""
        return ServedModel(self.model, self.ease)


def save_artifact(
    model: AlsRecommender,
    model_dir: Path | str,
    *,
    metrics: Mapping[str, Any] | None = None,
    counts: Mapping[str, int] | None = None,
    trained_at: datetime | None = None,
    data_cutoff: datetime | None = None,
    make_current: bool = True,
    ease: EaseBlend | None = None,
) -> AlsArtifact:
    """Write a fitted model as a new version and (by default) point ``CURRENT`` at it.

    Args:
        model: a fitted model.
        model_dir: the directory holding every version (created if needed).
        metrics: evaluation figures to keep with the model.
        counts: data counts; users and items are always recorded.
        trained_at: aware datetime of training (default: now, UTC).
        data_cutoff: aware datetime of the newest interaction trained on (default:
            ``trained_at``).
        make_current: replace ``CURRENT`` (off: stage a version without serving it).
        ease: the EASE half when the model to serve is the blend (aligned with the ALS
            model's id maps).

    Raises:
        NotFittedError: the model is not fitted.
        ArtifactError: the version directory already exists.
    """
    if not model.is_fitted:
        raise NotFittedError("cannot save an AlsRecommender that is not fitted")
    when = (trained_at or datetime.now(timezone.utc)).astimezone(timezone.utc)

    def write_factors(handle: IO[bytes]) -> None:
        write_npz(
            handle,
            {
                "user_factors": model.user_factors_,
                "item_factors": model.item_factors_,
                "user_ids": model.user_ids_.ids,
                "item_ids": model.item_ids_.ids,
                "item_idf": model.item_idf_,
                "mean_user_weight": np.float64(model.mean_user_weight_),
                **_ease_arrays(ease),
            },
        )

    def describe(version: str, digest: str) -> ArtifactMetadata:
        return ArtifactMetadata(
            version=version,
            trained_at=when.isoformat(),
            params=model.get_params(),
            counts={"users": len(model.user_ids_), "items": len(model.item_ids_), **(counts or {})},
            metrics=dict(metrics or {}),
            factors_sha256=digest,
            data_cutoff=(data_cutoff or when).astimezone(timezone.utc).isoformat(),
            blend={}
            if ease is None
            else {
                "model": "als+ease",
                "ease_l2": ease.l2,
                "ease_weight": ease.weight,
                "ease_recency": ease.recency,
            },
        )

    metadata, final = write_version(
        model_dir,
        when,
        FACTORS_FILE,
        write_factors,
        describe,
        make_current=make_current,
    )
    logger.info(
        "saved ALS artifact %s (%d users, %d items)",
        metadata.version,
        len(model.user_ids_),
        len(model.item_ids_),
    )
    return AlsArtifact(model, metadata, final, ease)


def _ease_arrays(ease: EaseBlend | None) -> dict[str, Any]:
    """The EASE half as named arrays for ``factors.npz`` (none for ALS alone)."""
    if ease is None:
        return {}
    weights, users = ease.weights, ease.user_items
    return {
        "ease_data": weights.data.astype(np.float32),
        "ease_indices": weights.indices.astype(np.int64),
        "ease_indptr": weights.indptr.astype(np.int64),
        "user_items_indices": users.indices.astype(np.int64),
        "user_items_indptr": users.indptr.astype(np.int64),
        # How much each product counts (1, or its recency weight).
        "user_items_data": users.data.astype(np.float32),
    }


def _ease_from(
    arrays: Mapping[str, Any], metadata: ArtifactMetadata, users: int, items: int
) -> EaseBlend | None:
    """The EASE half of a blend artifact, or None for ALS alone."""
    if not metadata.blend:
        return None
    weights = scipy.sparse.csr_matrix(
        (arrays["ease_data"], arrays["ease_indices"], arrays["ease_indptr"]),
        shape=(items, items),
        dtype=np.float32,
    )
    user_items = scipy.sparse.csr_matrix(
        (
            # Artifacts written before recency weighting: every product counts 1.
            np.asarray(arrays["user_items_data"], dtype=np.float32)
            if "user_items_data" in arrays
            else np.ones(len(arrays["user_items_indices"]), dtype=np.float32),
            arrays["user_items_indices"],
            arrays["user_items_indptr"],
        ),
        shape=(users, items),
    )
    return EaseBlend(
        weights,
        user_items,
        weight=float(metadata.blend["ease_weight"]),
        l2=float(metadata.blend["ease_l2"]),
        recency=float(metadata.blend.get("ease_recency", 0.0)),
    )


def load_artifact(path: Path | str) -> AlsArtifact:
    """Load one artifact directory.

    Raises:
        ArtifactError: files missing, checksum wrong, or contents inconsistent.
    """
    directory = Path(path)
    try:
        metadata = ArtifactMetadata.from_json(
            (directory / METADATA_FILE).read_text(encoding="utf-8")
        )
        factors_path = directory / FACTORS_FILE
        check_payload(directory, FACTORS_FILE, metadata.factors_sha256)
        arrays, mapping = map_npz(factors_path)
    except OSError as error:
        raise ArtifactError(f"cannot read artifact {directory}: {error}") from error
    except ValueError as error:  # a corrupt .npz, or one that would need pickle
        raise ArtifactError(f"cannot read {directory / FACTORS_FILE}: {error}") from error
    try:
        params = AlsParams(**metadata.params)
        model = AlsRecommender.from_factors(
            params,
            # Saved from IdMaps: sorted and unique, and the checksum says unchanged.
            user_ids=IdMap.from_sorted(arrays["user_ids"]),
            item_ids=IdMap.from_sorted(arrays["item_ids"]),
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
            item_idf=arrays["item_idf"],
            mean_user_weight=float(arrays["mean_user_weight"]),
        )
        ease = _ease_from(arrays, metadata, len(model.user_ids_), len(model.item_ids_))
    except (KeyError, TypeError, ValueError, PersonalizeError) as error:
        raise ArtifactError(f"artifact {directory} is inconsistent: {error}") from error
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        # The checks above read every page; give them back: requests fault in what they use.
        mapping.madvise(mmap.MADV_DONTNEED)
    return AlsArtifact(model, metadata, directory, ease)


def load_latest(model_dir: Path | str) -> AlsArtifact:
    """The artifact ``CURRENT`` names, else the newest complete one.

    Raises:
        ArtifactError: there is no artifact, or it cannot be loaded.
    """
    directory = Path(model_dir)
    version = current_version(directory)
    if version is None:
        versions = list_versions(directory)
        if not versions:
            raise ArtifactError(f"no trained model in {directory}: run `personalize train`")
        version = versions[-1]
    return load_artifact(directory / version)


class ModelHolder(ArtifactHolder[AlsArtifact]):
    """Holds the serving ALS model (see :class:`ArtifactHolder`)."""

    def __init__(
        self,
        model_dir: Path | str,
        *,
        check_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            model_dir,
            load_artifact,
            check_interval_s=check_interval_s,
            clock=clock,
            on_load=_report_serving,
        )


def _report_serving(artifact: AlsArtifact) -> None:
    model_loaded(artifact.version, artifact.metadata.trained_at)


__all__ = [
    "ARTIFACT_FORMAT",
    "CURRENT_FILE",
    "FACTORS_FILE",
    "METADATA_FILE",
    "AlsArtifact",
    "ArtifactMetadata",
    "ModelHolder",
    "als_dir",
    "content_dir",
    "current_version",
    "list_versions",
    "load_artifact",
    "load_latest",
    "prune_artifacts",
    "save_artifact",
    "set_current",
]
