"""HISTORY next to CURRENT: what served before, rollback, and pruning that spares it."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO

import pytest

from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.artifacts import ModelHolder, save_artifact
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.versions import (
    CURRENT_FILE,
    HISTORY_FILE,
    als_dir,
    current_version,
    list_versions,
    prune_artifacts,
    roll_back,
    rollback_target,
    serving_history,
    set_current,
    write_version,
)
from rasa_personalize.registry import promote, rollback

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Metadata:
    version: str
    trained_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def stage(directory: Path, hour: int, *, serve: bool = False, payload: bytes = b"") -> str:
    """A version trained at T0 + ``hour`` hours; served when ``serve``."""
    when = T0 + timedelta(hours=hour)

    def write(handle: IO[bytes]) -> None:
        handle.write(payload or f"model {hour}".encode())

    metadata, _ = write_version(
        directory,
        when,
        "model.bin",
        write,
        lambda version, _digest: _Metadata(version, when.isoformat()),
        make_current=serve,
    )
    return metadata.version


def test_each_change_of_current_is_appended_once(tmp_path: Path) -> None:
    """Serving a, b, then b again and a again: HISTORY reads a, b, a."""
    a = stage(tmp_path, 0, serve=True)
    b = stage(tmp_path, 1, serve=True)
    set_current(tmp_path, b)
    set_current(tmp_path, a)
    assert (tmp_path / HISTORY_FILE).read_text().split() == [a, b, a]
    assert serving_history(tmp_path) == [a, b, a]
    assert rollback_target(tmp_path) == b


def test_a_staged_version_is_not_in_the_history(tmp_path: Path) -> None:
    """A candidate (written without serving) is neither serving nor previous."""
    a = stage(tmp_path, 0, serve=True)
    candidate = stage(tmp_path, 1)
    assert current_version(tmp_path) == a
    assert serving_history(tmp_path) == [a]
    assert candidate in list_versions(tmp_path)
    assert rollback_target(tmp_path) is None


def test_roll_back_steps_back_and_drops_the_current_one(tmp_path: Path) -> None:
    """a, b, c served: rollback serves b, then a; then nothing is left to go back to."""
    a, b, c = (stage(tmp_path, hour, serve=True) for hour in range(3))
    assert roll_back(tmp_path) == (c, b)
    assert current_version(tmp_path) == b
    assert serving_history(tmp_path) == [a, b]
    assert roll_back(tmp_path) == (b, a)
    assert serving_history(tmp_path) == [a]
    with pytest.raises(ArtifactError, match="nothing to roll back to"):
        roll_back(tmp_path)
    assert current_version(tmp_path) == a


def test_roll_back_without_any_serving_version_says_so(tmp_path: Path) -> None:
    """An empty directory: nothing serves, so nothing to roll back."""
    stage(tmp_path, 0)
    with pytest.raises(ArtifactError, match="no version serves"):
        roll_back(tmp_path)


def test_a_directory_from_before_the_history_keeps_its_serving_version(tmp_path: Path) -> None:
    """CURRENT without HISTORY (written by an older release): the first change records
    the version that served until then, so a rollback can return to it."""
    old = stage(tmp_path, 0, serve=True)
    (tmp_path / HISTORY_FILE).unlink()
    assert serving_history(tmp_path) == [old]
    new = stage(tmp_path, 1, serve=True)
    assert (tmp_path / HISTORY_FILE).read_text().split() == [old, new]
    assert roll_back(tmp_path) == (new, old)


def test_a_version_rewritten_by_an_erasure_is_found_by_its_time(tmp_path: Path) -> None:
    """Erasure rewrites a version under its old time with a new checksum: the history
    entry of the old id still points at it."""
    old = stage(tmp_path, 0, serve=True)
    stage(tmp_path, 1, serve=True)
    # What recommend.erasure does: the cleaned copy under the same time, the original gone.
    copy = stage(tmp_path, 0, payload=b"cleaned")
    shutil.rmtree(tmp_path / old)
    assert copy != old
    assert copy.split("-")[0] == old.split("-")[0]
    assert rollback_target(tmp_path) == copy


def test_a_hand_written_current_counts_as_serving(tmp_path: Path) -> None:
    """CURRENT edited by hand to another version: the history ends with it."""
    a = stage(tmp_path, 0, serve=True)
    b = stage(tmp_path, 1)
    (tmp_path / CURRENT_FILE).write_text(b + "\n")
    assert serving_history(tmp_path) == [a, b]
    assert rollback_target(tmp_path) == a


def test_pruning_spares_the_rollback_target(tmp_path: Path) -> None:
    """Three candidates after the serving version: the version served before it stays."""
    first = stage(tmp_path, 0, serve=True)
    serving = stage(tmp_path, 1, serve=True)
    candidates = [stage(tmp_path, hour) for hour in (2, 3, 4)]
    assert prune_artifacts(tmp_path, keep=2) == [candidates[0]]
    assert list_versions(tmp_path) == [first, serving, *candidates[1:]]


def test_a_running_holder_follows_promote_and_rollback(
    tmp_path: Path, checkerboard_model: AlsRecommender
) -> None:
    """`personalize models promote|rollback` only move CURRENT: a serving holder swaps at
    its next check, as after training, with no restart."""
    model_dir = tmp_path / "models"
    serving = save_artifact(checkerboard_model, als_dir(model_dir), trained_at=T0)
    candidate = save_artifact(
        checkerboard_model,
        als_dir(model_dir),
        trained_at=T0 + timedelta(hours=1),
        make_current=False,
    )
    holder = ModelHolder(als_dir(model_dir), check_interval_s=0.0)
    assert holder.get() is not None
    assert holder.version == serving.version
    promote(model_dir, candidate.version)
    assert holder.refresh(wait=True)
    assert holder.version == candidate.version
    rollback(model_dir)
    assert holder.refresh(wait=True)
    assert holder.version == serving.version
