"""Fitted product associations on disk: what "bought together" and "new arrivals" need.

``personalize train`` fits :class:`~rasa_personalize.recommend.associations.ItemAssociations`
from the store's purchases and saves it here; a server loads it with numpy and scipy.
Versions are written, listed and swapped as every model's are
(:mod:`rasa_personalize.recommend.versions`)::

    models/personalize/associations/
        CURRENT
        20260101T120000123456Z-1a2b3c4d/
            associations.npz   product ids, pair scores (sparse rows), first-seen times
            metadata.json      version, trained_at, counts, parameters, checksum
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import scipy.sparse

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.recommend.associations import ItemAssociations
from rasa_personalize.recommend.errors import ArtifactError, NotFittedError
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.versions import (
    METADATA_FILE,
    ArtifactHolder,
    check_payload,
    write_version,
)

logger = logging.getLogger(__name__)

ASSOCIATIONS_FORMAT: Final = 1
ASSOCIATIONS_FILE: Final = "associations.npz"


def associations_dir(model_dir: Path) -> Path:
    """Where association artifacts live under the model directory."""
    return model_dir / "associations"


@dataclass(frozen=True)
class AssociationMetadata:
    """What ``metadata.json`` of an association model holds."""

    version: str
    trained_at: str
    counts: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    payload_sha256: str = ""
    format: int = ASSOCIATIONS_FORMAT

    def to_json(self) -> str:
        """The metadata as pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AssociationMetadata:
        """Parse ``metadata.json``.

        Raises:
            ArtifactError: not JSON, fields missing, or a format this code cannot read.
        """
        try:
            document = json.loads(text)
            metadata = cls(
                version=str(document["version"]),
                trained_at=str(document["trained_at"]),
                counts={str(k): int(v) for k, v in document.get("counts", {}).items()},
                params=dict(document.get("params", {})),
                payload_sha256=str(document.get("payload_sha256", "")),
                format=int(document["format"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ArtifactError(f"invalid {METADATA_FILE}: {error!r}") from error
        if metadata.format != ASSOCIATIONS_FORMAT:
            raise ArtifactError(
                f"association artifact format {metadata.format} is not supported (this code "
                f"reads {ASSOCIATIONS_FORMAT}); retrain with this version"
            )
        return metadata


@dataclass(frozen=True, eq=False)
class AssociationArtifact:
    """A loaded association model and its metadata."""

    model: ItemAssociations
    metadata: AssociationMetadata
    path: Path

    @property
    def version(self) -> str:
        """The version id."""
        return self.metadata.version

    @cached_property
    def arrivals(self) -> dict[str, float]:
        """Product -> first-seen time, computed once per loaded artifact (read per request)."""
        return self.model.arrivals()


def save_association_artifact(
    model: ItemAssociations,
    model_dir: Path | str,
    *,
    trained_at: datetime | None = None,
    make_current: bool = True,
) -> AssociationArtifact:
    """Write a fitted association model as a new version and (by default) serve it.

    Raises:
        NotFittedError: the model is not fitted.
        ArtifactError: the version directory already exists.
    """
    if not hasattr(model, "item_ids_"):
        raise NotFittedError("cannot save ItemAssociations that are not fitted")
    when = (trained_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    related = scipy.sparse.csr_matrix(model.related_, dtype=np.float32)

    def write_payload(handle: IO[bytes]) -> None:
        np.savez(
            handle,
            item_ids=model.item_ids_.ids,
            related_data=related.data,
            related_indices=related.indices.astype(np.int64),
            related_indptr=related.indptr.astype(np.int64),
            first_seen=model.first_seen_,
            baskets=np.int64(model.baskets_),
        )

    def describe(version: str, digest: str) -> AssociationMetadata:
        return AssociationMetadata(
            version=version,
            trained_at=when.isoformat(),
            counts={
                "items": len(model.item_ids_),
                "pairs": int(related.nnz),
                "baskets": model.baskets_,
            },
            params={
                "min_together": model.min_together,
                "shrink": model.shrink,
                "max_related": model.max_related,
            },
            payload_sha256=digest,
        )

    metadata, final = write_version(
        model_dir, when, ASSOCIATIONS_FILE, write_payload, describe, make_current=make_current
    )
    logger.info(
        "saved association artifact %s (%d products, %d pairs)",
        metadata.version,
        len(model.item_ids_),
        related.nnz,
    )
    return AssociationArtifact(model, metadata, final)


def load_association_artifact(path: Path | str) -> AssociationArtifact:
    """Load one association artifact directory (numpy and scipy only).

    Raises:
        ArtifactError: files missing, checksum wrong, or contents inconsistent.
    """
    directory = Path(path)
    try:
        metadata = AssociationMetadata.from_json(
            (directory / METADATA_FILE).read_text(encoding="utf-8")
        )
        check_payload(directory, ASSOCIATIONS_FILE, metadata.payload_sha256)
        with np.load(directory / ASSOCIATIONS_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except OSError as error:
        raise ArtifactError(f"cannot read artifact {directory}: {error}") from error
    except ValueError as error:  # a corrupt .npz, or one that would need pickle
        raise ArtifactError(f"cannot read {directory / ASSOCIATIONS_FILE}: {error}") from error
    try:
        item_ids = IdMap.from_ids(arrays["item_ids"], unique=True)
        related = scipy.sparse.csr_matrix(
            (arrays["related_data"], arrays["related_indices"], arrays["related_indptr"]),
            shape=(len(item_ids), len(item_ids)),
            dtype=np.float32,
        )
        params = metadata.params
        model = ItemAssociations.from_fitted(
            item_ids=item_ids,
            related=related,
            first_seen=arrays["first_seen"],
            baskets=int(arrays["baskets"]),
        )
        model.min_together = int(params.get("min_together", model.min_together))
        model.shrink = float(params.get("shrink", model.shrink))
        model.max_related = int(params.get("max_related", model.max_related))
    except (KeyError, TypeError, ValueError, PersonalizeError) as error:
        raise ArtifactError(f"artifact {directory} is inconsistent: {error}") from error
    return AssociationArtifact(model, metadata, directory)


class AssociationHolder(ArtifactHolder[AssociationArtifact]):
    """Holds the serving association model (see :class:`ArtifactHolder`)."""

    def __init__(self, model_dir: Path | str, *, check_interval_s: float = 30.0) -> None:
        super().__init__(model_dir, load_association_artifact, check_interval_s=check_interval_s)
