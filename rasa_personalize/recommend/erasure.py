"""Erasure in trained models: customers taken out of every ALS artifact on disk.

An ALS artifact holds one factor row per customer key it was trained on (the user id
map beside the factors). Erasing a customer removes their key and their row from every
version that holds them. A version is never edited in place, because a running server
would not notice: the cleaned copy is written as a new version (atomically, as training
writes one, under the old version's time so versions keep their order), ``CURRENT`` is
moved to it if it named the old one, and the old directory is deleted. Servers load the
copy at their next model check (``PERSONALIZE_MODEL_CHECK_EVERY_S``) and stop serving the
customer's vector.

Content models hold product ids and texts only, and segment models hold cluster centres,
scaling and anonymous feature rows: no customer key, nothing to remove.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import shutil
import zipfile
from collections.abc import Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

import numpy as np

from rasa_personalize.recommend.artifacts import FACTORS_FILE, ArtifactMetadata
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.npz import write_npz
from rasa_personalize.recommend.versions import (
    METADATA_FILE,
    als_dir,
    current_version,
    list_versions,
    set_current,
    write_version,
)

logger = logging.getLogger(__name__)

_VERSION_TIME = "%Y%m%dT%H%M%S%fZ"


@dataclasses.dataclass(frozen=True)
class CleanedArtifact:
    """One ALS version rewritten without some customers."""

    old_version: str
    new_version: str
    users_removed: int
    was_current: bool


def _version_time(version: str, metadata: ArtifactMetadata) -> datetime:
    """The time a version id starts with (so the copy sorts where the original did)."""
    try:
        return datetime.strptime(version.split("-", 1)[0], _VERSION_TIME).replace(
            tzinfo=timezone.utc
        )
    except ValueError:
        return datetime.fromisoformat(metadata.trained_at).astimezone(timezone.utc)


def _holds_any(factors: Path, keys: Collection[str]) -> bool:
    # Only the (small) id array is read: most versions hold none of the keys.
    with np.load(factors, allow_pickle=False) as stored:
        user_ids = stored["user_ids"]
    return bool(np.isin(user_ids, list(keys)).any())


def _clean_version(directory: Path, version: str, keys: Collection[str]) -> CleanedArtifact | None:
    source = directory / version
    factors = source / FACTORS_FILE
    if not _holds_any(factors, keys):
        return None
    metadata = ArtifactMetadata.from_json((source / METADATA_FILE).read_text(encoding="utf-8"))
    with np.load(factors, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    keep = ~np.isin(arrays["user_ids"], list(keys))
    removed = int((~keep).sum())
    arrays["user_ids"] = arrays["user_ids"][keep]
    arrays["user_factors"] = arrays["user_factors"][keep]
    buffer = io.BytesIO()
    # The same arrays, names and dtypes the loader reads, aligned for its memory map.
    write_npz(buffer, arrays)
    payload = buffer.getvalue()

    def write_payload(handle: IO[bytes]) -> None:
        handle.write(payload)

    def describe(new_version: str, digest: str) -> ArtifactMetadata:
        counts = {**metadata.counts, "users": len(arrays["user_ids"])}
        return dataclasses.replace(
            metadata, version=new_version, factors_sha256=digest, counts=counts
        )

    when = _version_time(version, metadata)
    expected = f"{when:{_VERSION_TIME}}-{hashlib.sha256(payload).hexdigest()[:8]}"
    if not (directory / expected / METADATA_FILE).is_file():
        # Else an earlier erasure wrote this copy and stopped before deleting the
        # original: finish its work.
        write_version(directory, when, FACTORS_FILE, write_payload, describe, make_current=False)
    was_current = current_version(directory) == version
    if was_current:
        set_current(directory, expected)
    shutil.rmtree(source)
    logger.info("Model %s rewritten as %s without %d customer(s).", version, expected, removed)
    return CleanedArtifact(version, expected, removed, was_current)


def erase_from_models(model_dir: Path, customer_keys: Collection[str]) -> list[CleanedArtifact]:
    """Remove these customers from every ALS version under ``model_dir``.

    Returns:
        One entry per version rewritten (none when no version holds the keys).

    Raises:
        ArtifactError: a version holding the keys cannot be read or rewritten.
        OSError: the model directory cannot be read or written.
    """
    keys = frozenset(customer_keys)
    directory = als_dir(Path(model_dir))
    if not keys or not directory.is_dir():
        return []
    cleaned: list[CleanedArtifact] = []
    for version in list_versions(directory):
        try:
            result = _clean_version(directory, version, keys)
        # A damaged .npz (truncated: BadZipFile, EOFError) or metadata (ValueError, KeyError,
        # TypeError): reported as ArtifactError, so the erasure still ends with its receipt
        # and audit row.
        except (ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
            raise ArtifactError(f"cannot clean model {version}: {type(error).__name__}") from None
        if result is not None:
            cleaned.append(result)
    return cleaned
