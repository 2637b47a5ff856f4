"""Artifacts: round trip, atomic layout, load failures, hot swap under concurrent requests."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.artifacts import (
    CURRENT_FILE,
    FACTORS_FILE,
    METADATA_FILE,
    ModelHolder,
    current_version,
    list_versions,
    load_artifact,
    load_latest,
    prune_artifacts,
    save_artifact,
    set_current,
)
from rasa_personalize.recommend.errors import ArtifactError, NotFittedError
from rasa_personalize.recommend.interactions import InteractionData
from rasa_personalize.recommend.versions import HISTORY_FILE
from tests.recommend.conftest import block_users, seen_items

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


class FakeClock:
    """A monotonic clock the test moves by hand (tests never sleep)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_round_trip_gives_identical_recommendations(
    tmp_path: Path, checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """Saved and loaded: same factors, ids, params, and the same answers for everyone."""
    saved = save_artifact(
        checkerboard_model,
        tmp_path,
        metrics={"precision": 0.5},
        counts={"interactions": len(checkerboard_data)},
        trained_at=T0,
    )
    loaded = load_latest(tmp_path)
    assert loaded.version == saved.version == current_version(tmp_path)
    assert loaded.version.startswith("20260102T030405678901Z-")
    model = loaded.model
    np.testing.assert_array_equal(model.item_factors_, checkerboard_model.item_factors_)
    np.testing.assert_array_equal(model.user_factors_, checkerboard_model.user_factors_)
    assert list(model.user_ids_) == list(checkerboard_model.user_ids_)
    assert model.params == checkerboard_model.params
    for user in block_users("A") + block_users("B"):
        seen = seen_items(checkerboard_data, user)
        assert model.recommend(user, 5, exclude=seen) == checkerboard_model.recommend(
            user, 5, exclude=seen
        )
    vector = model.user_vector_from_items(["A-sku-01", "A-sku-02"])
    np.testing.assert_allclose(
        vector, checkerboard_model.user_vector_from_items(["A-sku-01", "A-sku-02"])
    )
    assert loaded.metadata.metrics == {"precision": 0.5}
    assert loaded.metadata.counts == {"users": 20, "items": 20, "interactions": 140}
    assert loaded.metadata.trained_at == T0.isoformat()


def test_layout_has_no_leftovers_and_no_pickle(
    tmp_path: Path, checkerboard_model: AlsRecommender
) -> None:
    """One version directory with two files, CURRENT naming it, HISTORY listing it, no
    temporary entries."""
    saved = save_artifact(checkerboard_model, tmp_path, trained_at=T0)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [CURRENT_FILE, HISTORY_FILE, saved.version]
    )
    assert (tmp_path / HISTORY_FILE).read_text() == f"{saved.version}\n"
    assert sorted(p.name for p in saved.path.iterdir()) == [FACTORS_FILE, METADATA_FILE]
    with np.load(saved.path / FACTORS_FILE, allow_pickle=False) as stored:
        assert all(stored[name].dtype != object for name in stored.files)
    metadata = json.loads((saved.path / METADATA_FILE).read_text())
    assert metadata["params"]["factors"] == 2
    assert metadata["factors_sha256"].startswith(saved.version.rsplit("-", 1)[1])


def test_unfitted_model_cannot_be_saved(tmp_path: Path) -> None:
    """Saving needs a fitted model."""
    with pytest.raises(NotFittedError):
        save_artifact(AlsRecommender(), tmp_path)


def test_load_latest_without_current_uses_newest(
    tmp_path: Path, checkerboard_model: AlsRecommender
) -> None:
    """A staged version is not current; without CURRENT the newest complete one loads."""
    old = save_artifact(checkerboard_model, tmp_path, trained_at=T0, make_current=False)
    new = save_artifact(
        checkerboard_model, tmp_path, trained_at=T0.replace(year=2027), make_current=False
    )
    assert current_version(tmp_path) is None
    assert list_versions(tmp_path) == [old.version, new.version]
    assert load_latest(tmp_path).version == new.version
    set_current(tmp_path, old.version)
    assert load_latest(tmp_path).version == old.version


def test_corrupt_or_missing_artifacts_raise_artifact_error(
    tmp_path: Path, checkerboard_model: AlsRecommender
) -> None:
    """No model, a changed factors file, or a bad pointer: ArtifactError that says which."""
    with pytest.raises(ArtifactError, match="no trained model"):
        load_latest(tmp_path)
    saved = save_artifact(checkerboard_model, tmp_path, trained_at=T0)
    (saved.path / FACTORS_FILE).write_bytes(b"not an npz")
    with pytest.raises(ArtifactError, match="checksum"):
        load_artifact(saved.path)
    with pytest.raises(ArtifactError, match="no complete artifact"):
        set_current(tmp_path, "does-not-exist")


def test_prune_keeps_newest_and_current(tmp_path: Path, checkerboard_model: AlsRecommender) -> None:
    """Pruning deletes old versions but never the one CURRENT names."""
    versions = [
        save_artifact(checkerboard_model, tmp_path, trained_at=T0.replace(year=2026 + i)).version
        for i in range(4)
    ]
    set_current(tmp_path, versions[0])
    assert prune_artifacts(tmp_path, keep=2) == versions[1:2]
    assert list_versions(tmp_path) == [versions[0], *versions[2:]]


def retrained(data: InteractionData) -> AlsRecommender:
    """A second model that answers differently (another seed and size)."""
    return AlsRecommender(factors=3, iterations=5, random_state=9, num_threads=1).fit(data)


def test_holder_swaps_after_interval_only(
    tmp_path: Path, checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """No model -> None; first model at once; a new one only after the check interval."""
    clock = FakeClock()
    holder = ModelHolder(tmp_path, check_interval_s=30.0, clock=clock)
    assert holder.get() is None
    first = save_artifact(checkerboard_model, tmp_path, trained_at=T0)
    clock.now = 30.0
    assert holder.get() is not None
    assert holder.version == first.version
    second = save_artifact(retrained(checkerboard_data), tmp_path, trained_at=T0.replace(year=2027))
    clock.now = 59.0
    assert holder.version == first.version
    assert holder.get().version == first.version  # type: ignore[union-attr]
    clock.now = 60.0
    assert holder.get().version == second.version  # type: ignore[union-attr]


def test_holder_keeps_old_model_when_new_one_is_broken(
    tmp_path: Path,
    checkerboard_model: AlsRecommender,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broken new artifact is logged once and the old model keeps serving."""
    clock = FakeClock()
    first = save_artifact(checkerboard_model, tmp_path, trained_at=T0)
    holder = ModelHolder(tmp_path, check_interval_s=1.0, clock=clock)
    assert holder.get().version == first.version  # type: ignore[union-attr]
    broken = save_artifact(checkerboard_model, tmp_path, trained_at=T0.replace(year=2027))
    (broken.path / METADATA_FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="rasa_personalize.recommend.artifacts"):
        for step in range(1, 4):
            clock.now = float(step)
            assert holder.get().version == first.version  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if "cannot load model" in r.getMessage()]
    assert len(warnings) == 1
    assert broken.version in warnings[0].getMessage()


def test_hot_swap_under_concurrent_requests(
    tmp_path: Path, checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """Threads keep recommending while a new artifact lands: no error, all end on it."""
    clock = FakeClock()
    first = save_artifact(checkerboard_model, tmp_path, trained_at=T0)
    holder = ModelHolder(tmp_path, check_interval_s=0.0, clock=clock)
    holder.refresh(wait=True)
    new_model = retrained(checkerboard_data)
    errors: list[BaseException] = []
    versions_seen: list[set[str]] = [set() for _ in range(4)]
    swapped = threading.Event()
    started = threading.Barrier(5)

    def serve(worker: int) -> None:
        started.wait()
        try:
            requests_after_swap = 0
            # Bounded, so a holder that never swaps fails the test instead of hanging it.
            for _ in range(1_000_000):
                if requests_after_swap >= 200:
                    break
                artifact = holder.get()
                assert artifact is not None
                result = artifact.model.recommend("A-user-03", 3)
                assert len(result) == 3
                versions_seen[worker].add(artifact.version)
                if swapped.is_set() and artifact.version != first.version:
                    requests_after_swap += 1
        except BaseException as error:  # collected and asserted in the main thread
            errors.append(error)

    workers = [threading.Thread(target=serve, args=(i,), daemon=True) for i in range(4)]
    for worker in workers:
        worker.start()
    started.wait()
    second = save_artifact(new_model, tmp_path, trained_at=T0.replace(year=2027))
    swapped.set()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors
    assert not any(worker.is_alive() for worker in workers)
    assert holder.version == second.version
    assert all(second.version in seen for seen in versions_seen)


async def test_hot_swap_under_concurrent_async_requests(
    tmp_path: Path, checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """asyncio handlers using get_async see the swap without an error."""
    clock = FakeClock()
    first = save_artifact(checkerboard_model, tmp_path, trained_at=T0)
    holder = ModelHolder(tmp_path, check_interval_s=5.0, clock=clock)

    async def request() -> str:
        artifact = await holder.get_async()
        assert artifact is not None
        assert len(artifact.model.recommend("B-user-01", 2)) == 2
        return artifact.version

    assert set(await asyncio.gather(*(request() for _ in range(50)))) == {first.version}
    second = save_artifact(retrained(checkerboard_data), tmp_path, trained_at=T0.replace(year=2027))
    clock.now = 5.0
    versions = await asyncio.gather(*(request() for _ in range(50)))
    assert set(versions) <= {first.version, second.version}
    assert await request() == second.version
