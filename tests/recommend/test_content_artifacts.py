"""Content models on disk: saved by training, loaded by servers, answering the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rasa_personalize.recommend.content import ContentRecommender
from rasa_personalize.recommend.content_artifacts import (
    CONTENT_FILE,
    ContentHolder,
    load_content_artifact,
    save_content_artifact,
)
from rasa_personalize.recommend.errors import ArtifactError, NotFittedError
from rasa_personalize.recommend.resources import read_inputs
from rasa_personalize.recommend.versions import METADATA_FILE, current_version
from tests.recommend.test_content import PRODUCTS, TEXTS


@pytest.fixture(scope="module")
def model() -> ContentRecommender:
    return ContentRecommender().fit(PRODUCTS)


def ids(result: list) -> list[str]:
    return [scored.item_id for scored in result]


def test_a_loaded_model_answers_as_the_fitted_one(
    model: ContentRecommender, tmp_path: Path
) -> None:
    """Saved and loaded: same similar products, same interest and text matches, same scores."""
    saved = save_content_artifact(model, tmp_path)
    loaded = load_content_artifact(saved.path)
    assert loaded.version == saved.version == current_version(tmp_path)
    assert loaded.metadata.counts == {"items": 6, "terms": len(model.vectorizer_.vocabulary)}
    for product in PRODUCTS:
        assert loaded.model.similar_to(product.item_id, 5) == model.similar_to(product.item_id, 5)
    for text in TEXTS:
        assert loaded.model.for_text(text, 5) == model.for_text(text, 5)
    assert loaded.model.for_interests(["Yoga"], ["interested_in_running"], 5) == (
        model.for_interests(["Yoga"], ["interested_in_running"], 5)
    )
    assert (loaded.model.item_vectors_ != model.item_vectors_).nnz == 0


def test_an_unfitted_model_is_not_saved(tmp_path: Path) -> None:
    """Saving before fit is an error that says so, and writes nothing."""
    with pytest.raises(NotFittedError):
        save_content_artifact(ContentRecommender(), tmp_path)
    assert current_version(tmp_path) is None


def test_a_tampered_payload_is_refused(model: ContentRecommender, tmp_path: Path) -> None:
    """A payload that does not match its checksum fails the load with the file's name."""
    saved = save_content_artifact(model, tmp_path)
    with (saved.path / CONTENT_FILE).open("ab") as payload:
        payload.write(b"!")
    with pytest.raises(ArtifactError, match="checksum"):
        load_content_artifact(saved.path)


def test_a_future_format_is_refused(model: ContentRecommender, tmp_path: Path) -> None:
    """An artifact written by a newer layout asks for retraining instead of misreading it."""
    saved = save_content_artifact(model, tmp_path)
    metadata = json.loads((saved.path / METADATA_FILE).read_text())
    (saved.path / METADATA_FILE).write_text(json.dumps({**metadata, "format": 99}))
    with pytest.raises(ArtifactError, match="retrain"):
        load_content_artifact(saved.path)


def test_the_holder_serves_the_newest_version(model: ContentRecommender, tmp_path: Path) -> None:
    """No model: None; after a save, that version; after another save, the new one."""
    holder = ContentHolder(tmp_path, check_interval_s=0.0)
    assert holder.get() is None
    first = save_content_artifact(model, tmp_path)
    assert holder.get() is not None
    assert holder.version == first.version
    second = save_content_artifact(model.for_catalogue(PRODUCTS[:4]), tmp_path)
    assert holder.version != second.version
    assert holder.get() is not None
    assert holder.version == second.version
    assert len(holder.artifact.model.item_ids_) == 4  # type: ignore[union-attr]


class _Store:
    """Counts which reads a server's resources build asks for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read_recommendation_inputs(self) -> tuple[list, list]:
        self.calls.append("inputs")
        return [], [("from-store", None, "view", 1)]

    async def read_products(self) -> list:
        self.calls.append("products")
        return []


async def test_popularity_counts_travel_with_the_artifact(
    model: ContentRecommender, tmp_path: Path
) -> None:
    """Stored counts come back as saved (no segment as None) and spare the store's
    count; an artifact without them (written before) falls back to the store."""
    rows = [("A", None, "purchase", 3), ("A", "loyal", "view", 12), ("B", "new", "cart", 1)]
    with_counts = load_content_artifact(
        save_content_artifact(model, tmp_path / "with", popularity=rows).path
    )
    assert with_counts.popularity() == tuple(rows)
    store = _Store()
    assert await read_inputs(store, with_counts) == ([], tuple(rows))
    assert store.calls == ["products"]

    empty = load_content_artifact(
        save_content_artifact(model, tmp_path / "empty", popularity=[]).path
    )
    assert empty.popularity() == ()

    without = load_content_artifact(save_content_artifact(model, tmp_path / "without").path)
    assert without.popularity() is None
    store = _Store()
    assert await read_inputs(store, without) == ([], [("from-store", None, "view", 1)])
    assert await read_inputs(store, None) == ([], [("from-store", None, "view", 1)])
    assert store.calls == ["inputs", "inputs"]
