"""Acceptance models on disk: written as versions, loaded back the same, swapped in by the
holder, and refused when damaged."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from rasa_personalize.offers.artifacts import (
    OFFERS_FILE,
    load_offer_model,
    offer_model_holder,
    offers_dir,
    save_offer_model,
)
from rasa_personalize.offers.model import OfferModel, OfferParams
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.versions import METADATA_FILE, current_version
from rasa_personalize.store.offers import OfferCount
from tests.offers.test_model import COUNTS, NOW


def model(trained_at_offset_s: int = 0, **params: object) -> OfferModel:
    return OfferModel.fit(
        COUNTS,
        OfferParams(**params),  # type: ignore[arg-type]
        NOW + timedelta(seconds=trained_at_offset_s),
    )


def test_a_saved_model_loads_back_with_the_same_estimates(tmp_path: Path) -> None:
    saved = save_offer_model(
        model(min_exposures=12, prior_strength=5, goal="cart"), tmp_path, totals={"cells": 4}
    )
    assert saved.version.startswith("20260601T120000000000Z-")
    assert current_version(offers_dir(tmp_path)) == saved.version
    loaded = load_offer_model(offers_dir(tmp_path) / saved.version)
    assert loaded.version == saved.version
    assert loaded.params == OfferParams(goal="cart", min_exposures=12, prior_strength=5)
    assert loaded.trained_at == NOW
    assert loaded.counts == saved.counts
    assert loaded.estimates == saved.estimates
    metadata = json.loads((offers_dir(tmp_path) / saved.version / METADATA_FILE).read_text())
    assert (metadata["totals"], metadata["params"]["min_exposures"]) == ({"cells": 4}, 12)
    # The payload holds the estimates for people reading it.
    payload = json.loads((offers_dir(tmp_path) / saved.version / OFFERS_FILE).read_text())
    first = payload["counts"][0]
    assert (first["offer"], first["segment"], first["exposures"]) == ("bundle", "at_risk", 40)
    assert first["p_accept"] == pytest.approx(saved.estimate("bundle", "at_risk").p_accept)


def test_the_holder_swaps_in_a_newer_version(tmp_path: Path) -> None:
    holder = offer_model_holder(tmp_path, check_every_s=0.0)
    assert holder.get() is None  # nothing trained yet
    first = save_offer_model(model(), tmp_path)
    assert holder.get() is not None
    assert holder.version == first.version
    second = save_offer_model(model(60, min_exposures=5), tmp_path)
    current = holder.get()
    assert current is not None
    assert (current.version, current.min_exposures) == (second.version, 5)


def test_a_damaged_payload_is_refused(tmp_path: Path) -> None:
    saved = save_offer_model(model(), tmp_path)
    payload = offers_dir(tmp_path) / saved.version / OFFERS_FILE
    payload.write_text(payload.read_text().replace('"exposures": 40', '"exposures": 400'))
    with pytest.raises(ArtifactError, match="does not match its checksum"):
        load_offer_model(payload.parent)


def test_impossible_counts_are_refused_on_load(tmp_path: Path) -> None:
    """Counts that no training writes (edited by hand, checksum updated) fail the load."""
    bad = OfferModel.fit([OfferCount("bundle", "loyal", 3, 2)], OfferParams(), NOW)
    saved = save_offer_model(bad, tmp_path)
    directory = offers_dir(tmp_path) / saved.version
    payload = directory / OFFERS_FILE
    payload.write_text(payload.read_text().replace('"accepted": 2', '"accepted": 5'))
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["offers_sha256"] = ""  # no checksum: the content check still applies
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match="accepted must be from 0 to the exposures"):
        load_offer_model(directory)


def test_another_format_is_refused(tmp_path: Path) -> None:
    saved = save_offer_model(model(), tmp_path)
    directory = offers_dir(tmp_path) / saved.version
    metadata = json.loads((directory / METADATA_FILE).read_text())
    metadata["format"] = 99
    (directory / METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ArtifactError, match="format 99 is not supported"):
        load_offer_model(directory)


def test_a_missing_directory_is_an_artifact_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read acceptance model"):
        load_offer_model(tmp_path / "nothing-here")
