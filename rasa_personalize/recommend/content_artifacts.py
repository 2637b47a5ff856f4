"""Fitted content models on disk: what a server needs to recommend by text, precomputed.

``personalize train`` fits the TF-IDF model with scikit-learn and saves what it learned
here; a server loads it with numpy only and vectorises new or changed products and
customers' words itself (:class:`~rasa_personalize.recommend.content.TextVectorizer`).
Versions are written, listed and swapped as every model's are
(:mod:`rasa_personalize.recommend.versions`)::

    models/personalize/content/
        CURRENT
        20260101T120000123456Z-1a2b3c4d/
            content.npz        product ids, text digests and vectors; terms, idf, stop words;
                               popularity counts (optional, see below)
            metadata.json      version, trained_at, counts, checksum

Training also stores the popularity counts of the interactions it read (sku, the
customer's segment, kind, count: what ``store.catalogue.read_popularity_rows`` counts),
so that a server builds its popularity rankings from them instead of grouping every
interaction in the store at warm-up (15 s at ten million rows, past the hot path's
statement limit). Artifacts written before hold none (:meth:`ContentArtifact.popularity`
is None): the store is read then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.recommend.content import ContentRecommender, TextVectorizer
from rasa_personalize.recommend.errors import ArtifactError, NotFittedError
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.versions import (
    METADATA_FILE,
    ArtifactHolder,
    check_payload,
    write_version,
)

logger = logging.getLogger(__name__)

CONTENT_FORMAT: Final = 1
CONTENT_FILE: Final = "content.npz"


@dataclass(frozen=True)
class ContentMetadata:
    """What ``metadata.json`` of a content model holds.

    Attributes:
        version: the artifact's version id (also its directory name).
        trained_at: ISO 8601 UTC time of training.
        counts: products and terms.
        payload_sha256: checksum of ``content.npz``.
        format: the layout version of the artifact.
    """

    version: str
    trained_at: str
    counts: dict[str, int] = field(default_factory=dict)
    payload_sha256: str = ""
    format: int = CONTENT_FORMAT

    def to_json(self) -> str:
        """The metadata as pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ContentMetadata:
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
                payload_sha256=str(document.get("payload_sha256", "")),
                format=int(document["format"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ArtifactError(f"invalid {METADATA_FILE}: {error!r}") from error
        if metadata.format != CONTENT_FORMAT:
            raise ArtifactError(
                f"content artifact format {metadata.format} is not supported (this code "
                f"reads {CONTENT_FORMAT}); retrain with this version"
            )
        return metadata


@dataclass(frozen=True, eq=False)
class ContentArtifact:
    """A loaded content model and its metadata."""

    model: ContentRecommender
    metadata: ContentMetadata
    path: Path

    @property
    def version(self) -> str:
        """The version id."""
        return self.metadata.version

    def popularity(self) -> tuple[tuple[str, str | None, str, int], ...] | None:
        """The popularity counts stored with the model: (sku, segment or None, kind,
        count) at training time; None when it holds none (or its file is gone).

        Read from disk at each call, never kept: a million customers' counts are 800,000
        rows, hundreds of MB as Python tuples, that a server needs only while it builds
        its resources.
        """
        try:
            with np.load(self.path / CONTENT_FILE, allow_pickle=False) as stored:
                if "popularity_counts" not in stored.files:
                    return None
                return _popularity_rows({name: stored[name] for name in _POPULARITY_ARRAYS})
        except (OSError, ValueError, KeyError):
            return None


def save_content_artifact(
    model: ContentRecommender,
    model_dir: Path | str,
    *,
    trained_at: datetime | None = None,
    make_current: bool = True,
    popularity: Sequence[tuple[str, str | None, str, int]] | None = None,
) -> ContentArtifact:
    """Write a fitted content model as a new version and (by default) serve it, with
    the ``popularity`` counts when given (see the module docstring).

    Raises:
        NotFittedError: the model is not fitted.
        ArtifactError: the version directory already exists.
    """
    if not hasattr(model, "item_vectors_"):
        raise NotFittedError("cannot save a ContentRecommender that is not fitted")
    when = (trained_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    vectors = scipy.sparse.csr_matrix(model.item_vectors_, dtype=np.float32)
    vectorizer = model.vectorizer_
    terms = sorted(vectorizer.vocabulary, key=vectorizer.vocabulary.__getitem__)

    def write_payload(handle: IO[bytes]) -> None:
        np.savez(
            handle,
            item_ids=model.item_ids_.ids,
            item_digests=model.item_digests_,
            vectors_data=vectors.data,
            vectors_indices=vectors.indices.astype(np.int64),
            vectors_indptr=vectors.indptr.astype(np.int64),
            vectors_shape=np.asarray(vectors.shape, dtype=np.int64),
            terms=np.asarray(terms, dtype=np.str_),
            idf=vectorizer.idf,
            stop_words=np.asarray(sorted(vectorizer.stop_words), dtype=np.str_),
            ngram_range=np.asarray(vectorizer.ngram_range, dtype=np.int64),
            sublinear_tf=np.bool_(vectorizer.sublinear_tf),
            **_popularity_arrays(popularity),
        )

    def describe(version: str, digest: str) -> ContentMetadata:
        return ContentMetadata(
            version=version,
            trained_at=when.isoformat(),
            counts={"items": len(model.item_ids_), "terms": len(terms)},
            payload_sha256=digest,
        )

    metadata, final = write_version(
        model_dir, when, CONTENT_FILE, write_payload, describe, make_current=make_current
    )
    logger.info(
        "saved content artifact %s (%d products, %d terms)",
        metadata.version,
        len(model.item_ids_),
        len(terms),
    )
    return ContentArtifact(model, metadata, final)


def _popularity_arrays(
    rows: Sequence[tuple[str, str | None, str, int]] | None,
) -> dict[str, Any]:
    if rows is None:
        return {}
    skus, segments, kinds, counts = zip(*rows, strict=True) if rows else ((), (), (), ())
    return {
        "popularity_skus": np.asarray(skus, dtype=np.str_),
        # No segment is stored as "": serving counts a customer without one under "".
        "popularity_segments": np.asarray([s or "" for s in segments], dtype=np.str_),
        "popularity_kinds": np.asarray(kinds, dtype=np.str_),
        "popularity_counts": np.asarray(counts, dtype=np.int64),
    }


_POPULARITY_ARRAYS: Final = (
    "popularity_skus",
    "popularity_segments",
    "popularity_kinds",
    "popularity_counts",
)


def _popularity_rows(
    arrays: dict[str, NDArray[Any]],
) -> tuple[tuple[str, str | None, str, int], ...]:
    return tuple(
        (sku, segment or None, kind, count)
        for sku, segment, kind, count in zip(
            arrays["popularity_skus"].tolist(),
            arrays["popularity_segments"].tolist(),
            arrays["popularity_kinds"].tolist(),
            arrays["popularity_counts"].tolist(),
            strict=True,
        )
    )


def load_content_artifact(path: Path | str) -> ContentArtifact:
    """Load one content artifact directory (numpy and scipy only).

    Raises:
        ArtifactError: files missing, checksum wrong, or contents inconsistent.
    """
    directory = Path(path)
    try:
        metadata = ContentMetadata.from_json(
            (directory / METADATA_FILE).read_text(encoding="utf-8")
        )
        check_payload(directory, CONTENT_FILE, metadata.payload_sha256)
        with np.load(directory / CONTENT_FILE, allow_pickle=False) as stored:
            # The popularity counts stay on disk: ContentArtifact.popularity reads them.
            arrays = {name: stored[name] for name in stored.files if name not in _POPULARITY_ARRAYS}
    except OSError as error:
        raise ArtifactError(f"cannot read artifact {directory}: {error}") from error
    except ValueError as error:  # a corrupt .npz, or one that would need pickle
        raise ArtifactError(f"cannot read {directory / CONTENT_FILE}: {error}") from error
    try:
        low, high = (int(n) for n in arrays["ngram_range"])
        vectorizer = TextVectorizer(
            vocabulary={term: column for column, term in enumerate(arrays["terms"].tolist())},
            idf=np.asarray(arrays["idf"], dtype=np.float32),
            stop_words=frozenset(arrays["stop_words"].tolist()),
            ngram_range=(low, high),
            sublinear_tf=bool(arrays["sublinear_tf"]),
        )
        rows, columns = (int(n) for n in arrays["vectors_shape"])
        vectors = scipy.sparse.csr_matrix(
            (arrays["vectors_data"], arrays["vectors_indices"], arrays["vectors_indptr"]),
            shape=(rows, columns),
            dtype=np.float32,
        )
        model = ContentRecommender.from_fitted(
            item_ids=IdMap.from_ids(arrays["item_ids"], unique=True),
            item_vectors=vectors,
            item_digests=arrays["item_digests"],
            vectorizer=vectorizer,
        )
    except (KeyError, TypeError, ValueError, PersonalizeError) as error:
        raise ArtifactError(f"artifact {directory} is inconsistent: {error}") from error
    return ContentArtifact(model, metadata, directory)


class ContentHolder(ArtifactHolder[ContentArtifact]):
    """Holds the serving content model (see :class:`ArtifactHolder`)."""

    def __init__(self, model_dir: Path | str, *, check_interval_s: float = 30.0) -> None:
        super().__init__(model_dir, load_content_artifact, check_interval_s=check_interval_s)
