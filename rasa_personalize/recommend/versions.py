"""Versioned model directories: written atomically, listed, pruned, hot-swapped.

Every trained model lives in its own directory under the model directory (``als/`` for
ALS, ``content/`` for the content model: :func:`als_dir`, :func:`content_dir`), and each
of those holds versions the same way::

    models/personalize/als/
        CURRENT                                  the version readers should load
        HISTORY                                  the versions that served, oldest first
        20260101T120000123456Z-1a2b3c4d/         one artifact per version
            factors.npz                          the payload (no pickle)
            metadata.json                        version, trained_at, params, checksum, ...

Writing (:func:`write_version`): everything goes into a hidden temporary sibling
directory, is flushed to disk, and the directory is renamed to its version (a rename is
atomic on one filesystem); only then is ``CURRENT`` replaced, also by rename. A reader
therefore sees either the old version or the complete new one, never a half-written
artifact.

The version id is the training time (UTC, microseconds, so ids sort by age) plus the
first 8 hex digits of the SHA-256 of the payload, which is also stored in the metadata
and checked on load.

Serving history (:func:`set_current`, :func:`serving_history`, :func:`roll_back`): each
change of ``CURRENT`` is appended to ``HISTORY``, so the version served before the
current one is known: a rollback returns to it (and drops the current one from the
history, so a second rollback goes one further back), and pruning never deletes it.
A version written but never made current is a candidate (``personalize models``).

Reading on the hot path (:class:`ArtifactHolder`): the current model is one object
reference. At most every ``check_interval_s`` one caller reads ``CURRENT`` (a few
bytes); when it names a new version, that caller loads it and swaps the reference.
Other requests keep using the old model meanwhile, and if loading fails the old model
stays and the reason is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Final, Generic, Protocol, TypeVar

from rasa_personalize.recommend.errors import ArtifactError

logger = logging.getLogger(__name__)

CURRENT_FILE: Final = "CURRENT"
HISTORY_FILE: Final = "HISTORY"
METADATA_FILE: Final = "metadata.json"
_TEMPORARY_PREFIX: Final = ".tmp-"
# Serving changes remembered per model directory: far more than anyone rolls back.
HISTORY_LENGTH: Final = 50


def als_dir(model_dir: Path) -> Path:
    """Where ALS artifacts live under the model directory."""
    return model_dir / "als"


def content_dir(model_dir: Path) -> Path:
    """Where content-model artifacts live under the model directory."""
    return model_dir / "content"


class Versioned(Protocol):
    """A loaded artifact: anything with the version id it was saved under."""

    @property
    def version(self) -> str:
        """The version id (also the artifact's directory name)."""
        ...


A = TypeVar("A", bound=Versioned)


class VersionMetadata(Protocol):
    """Metadata of a version: its id and how to write it as ``metadata.json``."""

    @property
    def version(self) -> str:
        """The version id."""
        ...

    def to_json(self) -> str:
        """The metadata as JSON text."""
        ...


M = TypeVar("M", bound=VersionMetadata)


def write_version(
    model_dir: Path | str,
    when: datetime,
    payload_name: str,
    write_payload: Callable[[IO[bytes]], None],
    describe: Callable[[str, str], M],
    *,
    make_current: bool = True,
    extra_files: Mapping[str, bytes] | None = None,
) -> tuple[M, Path]:
    """Write one version atomically: payload and metadata in a scratch directory, renamed.

    The version id is ``when`` (UTC, microseconds) plus the first 8 hex digits of the
    payload's SHA-256.

    Args:
        model_dir: the directory holding every version (created if needed).
        when: aware datetime of training.
        payload_name: the payload's file name in the version directory.
        write_payload: writes the payload to an open binary file.
        describe: ``(version, payload sha256) -> metadata`` for ``metadata.json``.
        make_current: replace ``CURRENT`` (off: stage a version without serving it).
        extra_files: more files of the version, by name (their checksums, if wanted,
            belong in the payload: only the payload's names the version).

    Returns:
        The metadata and the version's directory.

    Raises:
        ArtifactError: the version directory already exists.
    """
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=_TEMPORARY_PREFIX, dir=directory))
    try:
        payload_path = scratch / payload_name
        with payload_path.open("wb") as handle:
            write_payload(handle)
            handle.flush()
            os.fsync(handle.fileno())
        for name, content in (extra_files or {}).items():
            with (scratch / name).open("wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
        digest = _sha256(payload_path)
        version = f"{when.astimezone(timezone.utc):%Y%m%dT%H%M%S%fZ}-{digest[:8]}"
        metadata = describe(version, digest)
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
    return metadata, final


def check_payload(directory: Path, payload_name: str, sha256: str) -> None:
    """Compare a version's payload with the checksum in its metadata.

    Raises:
        ArtifactError: they differ.
        OSError: the payload cannot be read.
    """
    payload = directory / payload_name
    if sha256 and _sha256(payload) != sha256:
        raise ArtifactError(f"{payload} does not match its checksum in {METADATA_FILE}")


def set_current(model_dir: Path | str, version: str) -> None:
    """Point ``CURRENT`` at an existing version (atomically: write, flush, rename) and
    append it to ``HISTORY``.

    Raises:
        ArtifactError: the version does not exist in ``model_dir``.
    """
    directory = Path(model_dir)
    if not (directory / version / METADATA_FILE).is_file():
        raise ArtifactError(f"no complete artifact {version!r} in {directory}")
    entries = _read_history(directory)
    if not entries:
        # The first change recorded: the version serving until now (written before
        # there was a history) is where a rollback goes back to.
        serving = current_version(directory)
        entries = [serving] if serving is not None else []
    if not entries or entries[-1] != version:
        entries.append(version)
    _replace_text(directory, CURRENT_FILE, version + "\n")
    _replace_text(
        directory, HISTORY_FILE, "".join(f"{entry}\n" for entry in entries[-HISTORY_LENGTH:])
    )


def serving_history(model_dir: Path | str) -> list[str]:
    """The versions that served, oldest first, as far as they are still on disk.

    A version that an erasure rewrote (same time, new checksum: see
    ``recommend.erasure``) is found under its new id; repeats in a row count once, and
    the current version is always last (also when ``CURRENT`` was written by hand).
    """
    directory = Path(model_dir)
    present = list_versions(directory)
    by_time = {version.split("-", 1)[0]: version for version in present}
    resolved: list[str] = []
    for entry in _read_history(directory):
        version = entry if entry in present else by_time.get(entry.split("-", 1)[0])
        if version is not None and (not resolved or resolved[-1] != version):
            resolved.append(version)
    current = current_version(directory)
    if current is not None and current in present and (not resolved or resolved[-1] != current):
        resolved.append(current)
    return resolved


def rollback_target(model_dir: Path | str) -> str | None:
    """The version that served before the current one (still on disk), or None."""
    history = serving_history(model_dir)
    current = current_version(model_dir)
    earlier = [version for version in history if version != current]
    return earlier[-1] if earlier else None


def rollback_plan(model_dir: Path | str) -> tuple[str, str]:
    """What :func:`roll_back` would do, without doing it (for a caller that has work to
    do before the switch, such as rescoring customers).

    Returns:
        ``(version serving now, version a rollback serves)``.

    Raises:
        ArtifactError: no version serves, or none served before it.
    """
    directory = Path(model_dir)
    current = current_version(directory)
    if current is None:
        raise ArtifactError(f"no version serves in {directory}: nothing to roll back")
    target = rollback_target(directory)
    if target is None:
        raise ArtifactError(
            f"nothing to roll back to in {directory}: no other version of it served "
            f"before {current} (or it was deleted)"
        )
    return current, target


def roll_back(model_dir: Path | str) -> tuple[str, str]:
    """Serve the version that served before the current one again.

    The current version leaves the history (it becomes a candidate), so a second
    rollback goes one version further back.

    Returns:
        ``(version rolled back from, version serving now)``.

    Raises:
        ArtifactError: no version serves, or none served before it.
    """
    directory = Path(model_dir)
    current, target = rollback_plan(directory)
    history = serving_history(directory)
    kept = history[: len(history) - history[::-1].index(target)]
    _replace_text(directory, CURRENT_FILE, target + "\n")
    _replace_text(directory, HISTORY_FILE, "".join(f"{entry}\n" for entry in kept))
    return current, target


def _read_history(directory: Path) -> list[str]:
    try:
        text = (directory / HISTORY_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _replace_text(directory: Path, name: str, text: str) -> None:
    """Replace a small file atomically: write a temporary sibling, flush, rename."""
    handle, temporary = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX, dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, directory / name)
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


def prune_artifacts(model_dir: Path | str, *, keep: int = 3) -> list[str]:
    """Delete all but the newest ``keep`` versions (never the current one, nor the one
    served before it: the rollback target); returns deleted."""
    if keep < 1:
        raise ArtifactError(f"keep must be >= 1, got {keep}")
    directory = Path(model_dir)
    spared = {current_version(directory), rollback_target(directory)}
    versions = list_versions(directory)
    doomed = [version for version in versions[:-keep] if version not in spared]
    for version in doomed:
        shutil.rmtree(directory / version, ignore_errors=True)
    return doomed


class ArtifactHolder(Generic[A]):
    """Holds the serving version of a model and swaps in new ones without a restart.

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
        load: Callable[[Path], A],
        *,
        check_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_load: Callable[[A], None] | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.check_interval_s = check_interval_s
        self._load = load
        # Told about each artifact swapped in (metrics); it must not raise.
        self._on_load = on_load
        self._clock = clock
        self._current: A | None = None
        self._next_check = -float("inf")
        self._failed_version: str | None = None
        self._lock = threading.Lock()

    @property
    def artifact(self) -> A | None:
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

    def get(self) -> A | None:
        """The current artifact, after a (rate-limited) check for a newer one. Never raises."""
        if self._should_refresh():
            self._refresh_safely()
        return self._current

    async def get_async(self) -> A | None:
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
            artifact = self._load(self.model_dir / version)
        except ArtifactError as error:
            log = logger.warning if version != self._failed_version else logger.debug
            log("cannot load model %s, keeping %s: %s", version, self.version, error)
            self._failed_version = version
            return False
        previous = self.version
        self._current = artifact
        self._failed_version = None
        if self._on_load is not None:
            self._on_load(artifact)
        logger.info("serving model %s from %s (was %s)", artifact.version, self.model_dir, previous)
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
