"""The profiles API publishes the metrics document a scored customer really has."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from rasa_personalize.events.openapi import build_openapi_document
from rasa_personalize.store.records import ProfileMetrics, PropensityRecord
from tests.propensity.conftest import NOW


@pytest.fixture(scope="module")
def metrics_schema() -> Draft202012Validator:
    document = build_openapi_document()
    schema: dict[str, Any] = {
        "$ref": "#/components/schemas/ProfileMetrics",
        "components": document["components"],
    }
    return Draft202012Validator(schema)


@pytest.mark.parametrize(
    "propensity",
    [
        {},  # never scored: no "propensity" key at all
        {"purchase_7d": PropensityRecord(0.42, "medium", "20260601T120000000000Z-1a2b3c4d", NOW)},
    ],
)
def test_a_metrics_document_matches_the_schema(
    metrics_schema: Draft202012Validator, propensity: dict[str, PropensityRecord]
) -> None:
    """With or without scores, the document the API answers with is valid."""
    document = ProfileMetrics(interaction_count=3, propensity=propensity).to_document()
    assert ("propensity" in document) == bool(propensity)
    assert list(metrics_schema.iter_errors(document)) == []


def test_a_band_outside_the_three_is_refused(metrics_schema: Draft202012Validator) -> None:
    """The schema is closed: a band the engine would not use is an error."""
    document = ProfileMetrics(
        propensity={"purchase_7d": PropensityRecord(0.42, "huge", "v", NOW)}
    ).to_document()
    assert list(metrics_schema.iter_errors(document))
