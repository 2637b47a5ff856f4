"""Trained ALS models on disk, written atomically, and hot-swapped by a running server.

Layout of a model directory::

    models/personalize/
        CURRENT                                  the version readers should load
        20260101T120000123456Z-1a2b3c4d/         one artifact per version
            factors.npz                          factors, id maps, BM25 state (no pickle)
            metadata.json                        version, trained_at, data_cutoff, params, ...

Writing (``save_artifact``): everything goes into a hidden temporary sibling directory,
is flushed to disk, and the directory is renamed to its version (a rename is atomic on
one filesystem); only then is ``CURRENT`` replaced, also by rename. A reader therefore
sees either the old version or the complete new one, never a half-written artifact.

The version id is the training time (UTC, microseconds, so ids sort by age) plus the
first 8 hex digits of the SHA-256 of ``factors.npz``, which is also stored in the
metadata and checked on load.

Reading on the hot path (``ModelHolder``): the current model is one object reference.
At most every ``check_interval_s`` one caller reads ``CURRENT`` (a few bytes); when it
names a new version, that caller loads it and swaps the reference. Other requests keep
using the old model meanwhile, and if loading fails the old model stays and the reason
is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import numpy as np

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.errors import ArtifactError, NotFittedError
from rasa_personalize.recommend.ids import IdMap

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT: Final = 1
CURRENT_FILE: Final = "CURRENT"
FACTORS_FILE: Final = "factors.npz"
METADATA_FILE: Final = "metadata.json"
_TEMPORARY_PREFIX: Final = ".tmp-"


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
    """

    version: str
    trained_at: str
    params: Mapping[str, Any]
    counts: Mapping[str, int]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    factors_sha256: str = ""
    format: int = ARTIFACT_FORMAT
    data_cutoff: str = ""

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
    """A loaded artifact: the fitted model and its metadata."""

    model: AlsRecommender
    metadata: ArtifactMetadata
    path: Path

    @property
    def version(self) -> str:
        """The version id."""
        return self.metadata.version


def save_artifact(
    model: AlsRecommender,
    model_dir: Path | str,
    *,
    metrics: Mapping[str, Any] | None = None,
    counts: Mapping[str, int] | None = None,
    trained_at: datetime | None = None,
    data_cutoff: datetime | None = None,
    make_current: bool = True,
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

    Raises:
        NotFittedError: the model is not fitted.
        ArtifactError: the version directory already exists.
    """
    if not model.is_fitted:
        raise NotFittedError("cannot save an AlsRecommender that is not fitted")
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    when = (trained_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    scratch = Path(tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX, dir=directory))
    try:
        factors_path = scratch / FACTORS_FILE
        with factors_path.open("wb") as handle:
            np.savez(
                handle,
                user_factors=model.user_factors_,
                item_factors=model.item_factors_,
                user_ids=model.user_ids_.ids,
                item_ids=model.item_ids_.ids,
                item_idf=model.item_idf_,
                mean_user_weight=np.float64(model.mean_user_weight_),
            )
            handle.flush()
            os.fsync(handle.fileno())
        digest = _sha256(factors_path)
        version = f"{when:%Y%m%dT%H%M%S%fZ}-{digest[:8]}"
        metadata = ArtifactMetadata(
            version=version,
            trained_at=when.isoformat(),
            params=model.get_params(),
            counts={"users": len(model.user_ids_), "items": len(model.item_ids_), **(counts or {})},
            metrics=dict(metrics or {}),
            factors_sha256=digest,
            data_cutoff=(data_cutoff or when).astimezone(timezone.utc).isoformat(),
        )
        _write_durably(scratch / METADATA_FILE, metadata.to_json())
        _fsync_directory(scratch)
        final = directory / version
        if final.exists():
            raise ArtifactError(f"artifact {final} already exists")
        os.replace(scratch, final)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    _fsync_directory(directory)
    if make_current:
        set_current(directory, version)
    logger.info(
        "saved ALS artifact %s (%d users, %d items)",
        version,
        len(model.user_ids_),
        len(model.item_ids_),
    )
    return AlsArtifact(model, metadata, final)


def set_current(model_dir: Path | str, version: str) -> None:
    """Point ``CURRENT`` at an existing version (atomically: write, flush, rename).

    Raises:
        ArtifactError: the version does not exist in ``model_dir``.
    """
    directory = Path(model_dir)
    if not (directory / version / METADATA_FILE).is_file():
        raise ArtifactError(f"no complete artifact {version!r} in {directory}")
    handle, temporary = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX, dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(version + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, directory / CURRENT_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def current_version(model_dir: Path | str) -> str | None:
    """The version ``CURRENT`` names, or None when there is none yet (cheap: one small read)."""
    try:
        text = (Path(model_dir) / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def list_versions(model_dir: Path | str) -> list[str]:
    """Complete artifacts in ``model_dir``, oldest first."""
    directory = Path(model_dir)
    if not directory.is_dir():
        return []
    return sorted(
        entry.name
        for entry in directory.iterdir()
        if not entry.name.startswith(".") and (entry / METADATA_FILE).is_file()
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
        if metadata.factors_sha256 and _sha256(factors_path) != metadata.factors_sha256:
            raise ArtifactError(f"{factors_path} does not match its checksum in {METADATA_FILE}")
        with np.load(factors_path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except OSError as error:
        raise ArtifactError(f"cannot read artifact {directory}: {error}") from error
    except ValueError as error:  # a corrupt .npz, or one that would need pickle
        raise ArtifactError(f"cannot read {directory / FACTORS_FILE}: {error}") from error
    try:
        params = AlsParams(**metadata.params)
        model = AlsRecommender.from_factors(
            params,
            user_ids=IdMap.from_ids(arrays["user_ids"], unique=True),
            item_ids=IdMap.from_ids(arrays["item_ids"], unique=True),
            user_factors=arrays["user_factors"],
            item_factors=arrays["item_factors"],
            item_idf=arrays["item_idf"],
            mean_user_weight=float(arrays["mean_user_weight"]),
        )
    except (KeyError, TypeError, ValueError, PersonalizeError) as error:
        raise ArtifactError(f"artifact {directory} is inconsistent: {error}") from error
    return AlsArtifact(model, metadata, directory)


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


def prune_artifacts(model_dir: Path | str, *, keep: int = 3) -> list[str]:
    """Delete all but the newest ``keep`` versions (never the current one); returns deleted."""
    if keep < 1:
        raise ArtifactError(f"keep must be >= 1, got {keep}")
    directory = Path(model_dir)
    current = current_version(directory)
    versions = list_versions(directory)
    doomed = [version for version in versions[:-keep] if version != current]
    for version in doomed:
        shutil.rmtree(directory / version, ignore_errors=True)
    return doomed


class ModelHolder:
    """Holds the serving ALS model and swaps in new artifacts without a restart.

    ``get()`` is what a request calls: it returns the current artifact (None until a
    model exists) and, at most every ``check_interval_s``, checks ``CURRENT`` first.
    Only one caller checks or loads at a time; the others do not wait and keep the
    model they have (before the first model, they wait for the first load). The swap
    is a single reference assignment, so a request works with one consistent model
    from start to end. A load failure keeps the old model and logs why (once per
    broken version).
    """

    def __init__(
        self,
        model_dir: Path | str,
        *,
        check_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.check_interval_s = check_interval_s
        self._clock = clock
        self._current: AlsArtifact | None = None
        self._next_check = -float("inf")
        self._failed_version: str | None = None
        self._lock = threading.Lock()

    @property
    def artifact(self) -> AlsArtifact | None:
        """The artifact in use, without any check (no I/O)."""
        return self._current

    @property
    def version(self) -> str | None:
        """The version in use, or None."""
        current = self._current
        return None if current is None else current.version

    def refresh_due(self) -> bool:
        """Whether the next ``get`` would look for a new artifact."""
        return self._clock() >= self._next_check

    def get(self) -> AlsArtifact | None:
        """The current artifact, after a (rate-limited) check for a newer one. Never raises."""
        if self._should_refresh():
            self._refresh_safely()
        return self._current

    async def get_async(self) -> AlsArtifact | None:
        """``get`` for the event loop: a due check (and load) runs in a worker thread."""
        if self._should_refresh():
            await asyncio.to_thread(self._refresh_safely)
        return self._current

    def _should_refresh(self) -> bool:
        # Also while the very first load runs in another thread: there is nothing to
        # serve yet, so waiting for it beats answering without a model.
        return self.refresh_due() or (self._current is None and self._lock.locked())

    def _refresh_safely(self) -> None:
        try:
            # With no model yet there is nothing to serve meanwhile: wait for the first load.
            self.refresh(wait=self._current is None)
        except Exception:
            # A request must not fail because of a model swap; the bug is logged in full.
            logger.exception("model refresh failed unexpectedly, keeping %s", self.version)

    def refresh(self, *, wait: bool = False) -> bool:
        """Check ``CURRENT`` now and load a new version; True when the model changed.

        Args:
            wait: wait for a check already running in another thread instead of
                returning at once (for startup and tests).
        """
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            self._next_check = self._clock() + self.check_interval_s
            return self._load_if_new()
        finally:
            self._lock.release()

    def _load_if_new(self) -> bool:
        try:
            version = current_version(self.model_dir)
            if version is None:
                versions = list_versions(self.model_dir)
                version = versions[-1] if versions else None
        except OSError as error:
            logger.warning(
                "cannot read %s, keeping model %s: %s", self.model_dir, self.version, error
            )
            return False
        if version is None or version == self.version:
            return False
        try:
            artifact = load_artifact(self.model_dir / version)
        except ArtifactError as error:
            log = logger.warning if version != self._failed_version else logger.debug
            log("cannot load model %s, keeping %s: %s", version, self.version, error)
            self._failed_version = version
            return False
        previous = self.version
        self._current = artifact
        self._failed_version = None
        logger.info("serving model %s (was %s)", artifact.version, previous)
        return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_durably(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    """Persist a directory's entries (renames) where the platform allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(descriptor)
