"""Artifacts at a million-customer scale: arrays memory-mapped where they lie in
``factors.npz``, and id maps that binary-search instead of holding a dict."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import FACTORS_FILE, load_artifact, save_artifact
from rasa_personalize.recommend.errors import UnknownIdError
from rasa_personalize.recommend.ids import DICT_LOOKUP_UP_TO, IdMap
from rasa_personalize.recommend.npz import ALIGNMENT, map_npz, write_npz

PARAMS = AlsParams(factors=4, regularization=1.0, iterations=2, alpha=1.0, weighting="none")


def _model(users: int, items: int) -> AlsRecommender:
    rng = np.random.default_rng(1)
    return AlsRecommender.from_factors(
        PARAMS,
        user_ids=IdMap.from_ids([f"user-{n:07d}" for n in range(users)]),
        item_ids=IdMap.from_ids([f"SKU-{n:04d}" for n in range(items)]),
        user_factors=rng.random((users, 4), dtype=np.float32),
        item_factors=rng.random((items, 4), dtype=np.float32),
        item_idf=np.linspace(1.0, 2.0, items),
        mean_user_weight=1.5,
    )


STORED = {
    "ids": np.array(["b", "a", "ccc"]),
    "matrix": np.arange(12, dtype=np.float32).reshape(3, 4),
    "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    "scalar": np.float64(2.5),
    "empty": np.empty(0, dtype=np.int64),
}


def test_written_arrays_are_mapped_aligned(tmp_path: Path) -> None:
    """write_npz: every array starts 64-byte aligned in the file, so map_npz views it in
    place (read-only, no copy); np.load reads the same file as any npz."""
    path = tmp_path / "arrays.npz"
    with path.open("wb") as handle:
        write_npz(handle, STORED)

    arrays, mapping = map_npz(path)

    assert isinstance(mapping, mmap.mmap)
    assert sorted(arrays) == sorted(STORED)
    with np.load(path, allow_pickle=False) as loaded:
        for name, expected in STORED.items():
            assert np.array_equal(arrays[name], expected), name
            assert np.array_equal(loaded[name], expected), name
            assert arrays[name].dtype == np.asarray(expected).dtype, name
            assert not arrays[name].flags.writeable, name
            assert not arrays[name].flags.owndata, name
            assert arrays[name].ctypes.data % ALIGNMENT == 0, name


def test_savez_files_are_read_aligned(tmp_path: Path) -> None:
    """An npz from numpy's savez (members at any offset): the same arrays, each aligned,
    copied where the map could not give them aligned."""
    path = tmp_path / "arrays.npz"
    np.savez(path, **STORED)

    arrays, _ = map_npz(path)

    for name, expected in STORED.items():
        assert np.array_equal(arrays[name], expected), name
        assert arrays[name].flags.aligned, name


def test_compressed_npz_is_read_instead(tmp_path: Path) -> None:
    """A compressed member cannot be mapped: the arrays are read, and no map comes back."""
    path = tmp_path / "arrays.npz"
    np.savez_compressed(path, values=np.arange(5))

    arrays, mapping = map_npz(path)

    assert mapping is None
    assert arrays["values"].tolist() == [0, 1, 2, 3, 4]


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    """An array that would need pickle is an error, as with np.load(allow_pickle=False)."""
    path = tmp_path / "arrays.npz"
    np.savez(path, values=np.array([{"a": 1}], dtype=object))

    with pytest.raises(ValueError, match="pickle"):
        map_npz(path)


def test_large_artifact_loads_mapped_and_answers_alike(tmp_path: Path) -> None:
    """Past DICT_LOOKUP_UP_TO customers the loaded model keeps its factors and keys in
    the file's map, looks customers up by binary search, and recommends as the model
    that was saved."""
    users = DICT_LOOKUP_UP_TO + 5
    model = _model(users, 30)
    saved = save_artifact(model, tmp_path)

    loaded = load_artifact(saved.path).model

    for array in (loaded.user_factors_, loaded.user_ids_.ids):
        assert not array.flags.writeable
        assert not array.flags.owndata
        # Aligned in the map: a binary search reads a few pages, not a copy of them all.
        assert array.ctypes.data % ALIGNMENT == 0
    assert np.array_equal(loaded.user_factors_, model.user_factors_)
    for user in ("user-0000000", "user-0054321", f"user-{users - 1:07d}"):
        assert loaded.user_ids_.row(user) == model.user_ids_.row(user)
        assert loaded.recommend(user, 5) == model.recommend(user, 5)
    assert "user-9999999" not in loaded.user_ids_
    # A longer key sharing a stored key's start is not that key.
    assert loaded.user_ids_.get("user-0000000x") is None
    with pytest.raises(UnknownIdError):
        loaded.user_ids_.row("user-")
    assert loaded.user_ids_.rows(["user-0000002", "nobody", "user-0000001"]).tolist() == [2, 1]
    assert (tmp_path / saved.version / FACTORS_FILE).exists()


def test_small_maps_from_sorted_ids_match_from_ids() -> None:
    """from_sorted gives the rows from_ids gives, and leaves the caller's array alone."""
    ids = np.array(["a", "b", "d"])

    rebuilt = IdMap.from_sorted(ids)

    assert [rebuilt.row(value) for value in ("a", "b", "d")] == [0, 1, 2]
    assert ids.flags.writeable
    assert not rebuilt.ids.flags.writeable
