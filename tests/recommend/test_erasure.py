"""Erasure in ALS artifacts: the customer's row goes from every version, loadably."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import (
    ModelHolder,
    current_version,
    list_versions,
    load_artifact,
    save_artifact,
)
from rasa_personalize.recommend.erasure import erase_from_models
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.versions import als_dir

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
T1 = datetime(2026, 2, 2, 3, 4, 5, tzinfo=timezone.utc)
USERS = ["ada", "bob", "cy", "dee"]


def model(users: list[str], seed: int) -> AlsRecommender:
    """A fitted model with random factors for these users and five items."""
    rng = np.random.default_rng(seed)
    return AlsRecommender.from_factors(
        AlsParams(factors=4),
        user_ids=IdMap.from_ids(users),
        item_ids=IdMap.from_ids([f"sku-{i}" for i in range(5)]),
        user_factors=rng.normal(size=(len(users), 4)),
        item_factors=rng.normal(size=(5, 4)),
    )


def test_every_version_is_rewritten_without_the_customer(tmp_path: Path) -> None:
    """Both versions lose ada's id and row, load with the normal loader, keep everyone
    else's factors and their order; CURRENT follows the current one."""
    directory = als_dir(tmp_path)
    old = save_artifact(model(USERS, 1), directory, trained_at=T0)
    current = save_artifact(model(USERS, 2), directory, trained_at=T1)
    cleaned = erase_from_models(tmp_path, ["ada", "not-in-any-model"])
    assert [(c.old_version, c.users_removed, c.was_current) for c in cleaned] == [
        (old.version, 1, False),
        (current.version, 1, True),
    ]
    versions = list_versions(directory)
    assert versions == [c.new_version for c in cleaned]
    assert versions[0].startswith("20260102T030405678901Z-")
    assert current_version(directory) == versions[1]
    for version, original in zip(versions, (old, current), strict=True):
        loaded = load_artifact(directory / version)
        assert loaded.version == version
        assert list(loaded.model.user_ids_) == ["bob", "cy", "dee"]
        assert loaded.metadata.counts["users"] == 3
        assert loaded.metadata.trained_at == original.metadata.trained_at
        keep = [USERS.index(user) for user in ("bob", "cy", "dee")]
        np.testing.assert_array_equal(
            loaded.model.user_factors_, original.model.user_factors_[keep]
        )
        np.testing.assert_array_equal(loaded.model.item_factors_, original.model.item_factors_)


def test_a_running_holder_swaps_to_the_cleaned_copy(tmp_path: Path) -> None:
    """A server's holder loads the copy at its next check and no longer knows the user."""
    directory = als_dir(tmp_path)
    save_artifact(model(USERS, 1), directory, trained_at=T0)
    holder = ModelHolder(directory, check_interval_s=0.0)
    served = holder.get()
    assert served is not None
    assert served.model.has_user("ada")
    erase_from_models(tmp_path, ["ada"])
    swapped = holder.get()
    assert swapped is not None
    assert swapped.version != served.version
    assert not swapped.model.has_user("ada")
    assert swapped.model.has_user("bob")


def test_versions_without_the_customer_are_left_alone(tmp_path: Path) -> None:
    """No version holds the key: nothing is written, and a missing directory is fine."""
    assert erase_from_models(tmp_path, ["ada"]) == []
    directory = als_dir(tmp_path)
    saved = save_artifact(model(["bob", "cy"], 1), directory, trained_at=T0)
    before = (saved.path / "factors.npz").read_bytes()
    assert erase_from_models(tmp_path, ["ada"]) == []
    assert list_versions(directory) == [saved.version]
    assert (saved.path / "factors.npz").read_bytes() == before


def test_a_copy_left_by_an_interrupted_erasure_is_reused(tmp_path: Path) -> None:
    """If the copy exists but the original was not deleted, erasing again finishes."""
    directory = als_dir(tmp_path)
    saved = save_artifact(model(USERS, 1), directory, trained_at=T0)
    backup = tmp_path / "backup"
    backup.mkdir()
    original_files = {p.name: p.read_bytes() for p in saved.path.iterdir()}
    [first] = erase_from_models(tmp_path, ["ada"])
    # Put the original back, as if the erasure had stopped before deleting it.
    saved.path.mkdir()
    for name, data in original_files.items():
        (saved.path / name).write_bytes(data)
    [again] = erase_from_models(tmp_path, ["ada"])
    assert again.old_version == saved.version
    assert list_versions(directory) == [first.new_version]
    assert not load_artifact(directory / first.new_version).model.has_user("ada")


def test_a_damaged_model_file_is_an_artifact_error(tmp_path: Path) -> None:
    """A truncated factors file: a clear ArtifactError (the erasure reports it), not a crash."""
    directory = als_dir(tmp_path)
    saved = save_artifact(model(USERS, 1), directory, trained_at=T0)
    for npz in (directory / saved.version).glob("*.npz"):
        npz.write_bytes(npz.read_bytes()[:40])

    with pytest.raises(ArtifactError, match="cannot clean model"):
        erase_from_models(tmp_path, ["ada"])
