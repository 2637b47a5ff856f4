"""Model versions across kinds: statuses, promote, rollback, and the errors that say why."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import pytest

from rasa_personalize.cli.models import KINDS_HELP
from rasa_personalize.propensity.artifacts import MODEL_FILE
from rasa_personalize.propensity.training import propensity_dir
from rasa_personalize.recommend.versions import als_dir, content_dir, current_version, write_version
from rasa_personalize.registry import (
    KIND_NAMES,
    ModelRegistryError,
    UnknownVersionError,
    list_models,
    promote,
    rollback,
)

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


class _Metadata:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    @property
    def version(self) -> str:
        return str(self.document["version"])

    def to_json(self) -> str:
        return json.dumps(self.document)


def version(
    directory: Path,
    hour: int,
    *,
    serve: bool,
    payload: str = "payload.bin",
    content: bytes = b"",
    metrics: dict[str, Any] | None = None,
) -> str:
    """A version trained at T0 + ``hour`` hours, with ``metrics`` in its metadata."""
    when = T0 + timedelta(hours=hour)

    def write(handle: IO[bytes]) -> None:
        handle.write(content or f"{directory.name} {hour}".encode())

    def describe(name: str, _digest: str) -> _Metadata:
        return _Metadata(
            {"version": name, "trained_at": when.isoformat(), "metrics": metrics or {}}
        )

    metadata, _ = write_version(directory, when, payload, write, describe, make_current=serve)
    return metadata.version


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def recommenders(model_dir: Path) -> list[str]:
    """Three recommender versions: the first two served in turn, the third a candidate."""
    return [
        version(als_dir(model_dir), hour, serve=serve, metrics={"holdout_precision": figure})
        for hour, serve, figure in ((0, True, 0.05), (1, True, 0.052), (2, False, 0.02))
    ]


def statuses(model_dir: Path, kind: str = "recommender") -> list[tuple[str, str]]:
    return [(row.version, row.status) for row in list_models(model_dir, kind)]


def test_list_shows_status_figure_and_time_newest_first(
    model_dir: Path, recommenders: list[str]
) -> None:
    """serving (CURRENT), previous (served before), candidate (never served)."""
    first, serving, candidate = recommenders
    rows = list_models(model_dir, "recommender")
    assert [(row.version, row.status, row.value) for row in rows] == [
        (candidate, "candidate", 0.02),
        (serving, "serving", 0.052),
        (first, "previous", 0.05),
    ]
    assert {row.metric for row in rows} == {"precision@10"}
    assert rows[0].created == (T0 + timedelta(hours=2)).isoformat()


def test_list_covers_every_kind_with_its_figure(model_dir: Path, recommenders: list[str]) -> None:
    """Content has no figure; propensity shows the ROC AUC of its model card."""
    content = version(content_dir(model_dir), 3, serve=True)
    cards = propensity_dir(model_dir, "purchase_7d")
    card = version(
        cards,
        4,
        serve=True,
        payload=MODEL_FILE,
        content=json.dumps({"model": {"auc": 0.76}}).encode(),
    )
    rows = {(row.kind, row.version): row for row in list_models(model_dir)}
    assert rows["content", content].value is None
    assert rows["content", content].status == "serving"
    propensity = rows["propensity_purchase_7d", card]
    assert (propensity.metric, propensity.value, propensity.status) == ("auc", 0.76, "serving")
    assert [row.kind for row in list_models(model_dir)] == [
        "recommender", "recommender", "recommender", "content", "propensity_purchase_7d",
    ]  # fmt: skip


def test_promote_and_rollback_round_trip(model_dir: Path, recommenders: list[str]) -> None:
    """The candidate serves after promote; rollback returns to the one before and makes
    the promoted one a candidate again; a second rollback goes one further back."""
    first, serving, candidate = recommenders
    change = promote(model_dir, candidate)
    assert (change.kind, change.before, change.after, change.changed) == (
        "recommender",
        serving,
        candidate,
        True,
    )
    assert current_version(als_dir(model_dir)) == candidate
    assert statuses(model_dir) == [
        (candidate, "serving"),
        (serving, "previous"),
        (first, "previous"),
    ]

    back = rollback(model_dir)
    assert (back.before, back.after) == (candidate, serving)
    assert statuses(model_dir) == [
        (candidate, "candidate"),
        (serving, "serving"),
        (first, "previous"),
    ]

    assert rollback(model_dir).after == first
    with pytest.raises(ModelRegistryError, match="nothing to roll back to"):
        rollback(model_dir)
    assert current_version(als_dir(model_dir)) == first


def test_promote_takes_a_unique_prefix_and_knows_when_nothing_changes(
    model_dir: Path, recommenders: list[str]
) -> None:
    """The first 16 characters of an id are enough; promoting the serving one changes nothing."""
    candidate = recommenders[2]
    assert promote(model_dir, candidate[:16]).after == candidate
    assert not promote(model_dir, candidate).changed


@pytest.mark.parametrize(
    ("wanted", "message"),
    [
        # an id that does not exist
        ("20990101T000000000000Z-ffffffff", "no model version '20990101T000000000000Z-ffffffff'"),
        # a prefix too short to mean anything
        ("2026", "a prefix needs at least 8 characters"),
        # a prefix of all three versions
        ("20260601T1", "matches several versions"),
    ],
)
def test_promote_names_what_is_wrong_with_the_version(
    model_dir: Path, recommenders: list[str], wanted: str, message: str
) -> None:
    """Unknown, too short or ambiguous: UnknownVersionError, CURRENT untouched."""
    with pytest.raises(UnknownVersionError, match=message):
        promote(model_dir, wanted)
    assert current_version(als_dir(model_dir)) == recommenders[1]


def test_propensity_versions_change_only_with_the_store(model_dir: Path) -> None:
    """Their scores serve: the file-only promote and rollback refuse them and name the
    calls that rescore every customer (tests/propensity/test_promotion.py)."""
    cards = propensity_dir(model_dir, "purchase_7d")
    serving = version(cards, 0, serve=True, payload=MODEL_FILE)
    candidate = version(cards, 1, serve=False, payload=MODEL_FILE)
    with pytest.raises(ModelRegistryError, match="rescores every customer, which needs the store"):
        promote(model_dir, candidate)
    with pytest.raises(ModelRegistryError, match=r"\(promote_rescoring, rollback_rescoring;"):
        rollback(model_dir, "propensity_purchase_7d")
    assert current_version(cards) == serving


def test_unknown_kinds_are_listed_in_the_error(model_dir: Path) -> None:
    """A misspelt kind names every kind there is."""
    with pytest.raises(UnknownVersionError, match="the kinds are recommender, content"):
        rollback(model_dir, "recomender")
    with pytest.raises(UnknownVersionError, match="unknown model kind 'als'"):
        list_models(model_dir, "als")


def test_the_command_help_names_every_kind() -> None:
    """`personalize models --kind` help spells out the registry's kinds (no import at --help)."""
    assert ", ".join(KIND_NAMES[:-1]) + " or " + KIND_NAMES[-1] == KINDS_HELP
