"""PopularityRecommender: global and per-segment known answers."""

from __future__ import annotations

import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.errors import NotFittedError, UnknownIdError
from rasa_personalize.recommend.filters import merge_unique
from rasa_personalize.recommend.popularity import PopularityRecommender

# x: 3 rows, y: 2 (weight 5 in total), z: 1, w: 1; the loyal segment likes z.
ITEMS = ["x", "x", "x", "y", "y", "z", "w"]
WEIGHTS = [1.0, 1.0, 1.0, 2.0, 3.0, 1.0, 1.0]
SEGMENTS = ["browser", "browser", "loyal", "browser", "browser", "loyal", "browser"]


@pytest.fixture
def model() -> PopularityRecommender:
    return PopularityRecommender().fit(ITEMS, WEIGHTS, SEGMENTS)


def ids(result: list) -> list[str]:
    return [scored.item_id for scored in result]


def test_global_ranking_by_summed_weight(model: PopularityRecommender) -> None:
    """y (5) > x (3) > w (1) = z (1), ties by id."""
    assert ids(model.recommend(10)) == ["y", "x", "w", "z"]
    assert model.recommend(1)[0].score == 5.0


def test_segment_ranking_breaks_ties_by_global(model: PopularityRecommender) -> None:
    """loyal: x and z both 1, x is more popular overall; nothing the segment never touched."""
    assert ids(model.recommend(10, segment="loyal")) == ["x", "z"]


def test_segment_list_topped_up_from_global(model: PopularityRecommender) -> None:
    """The fallback chain merges segment then global, each item once."""
    merged = merge_unique([model.recommend(3, segment="loyal"), model.recommend(3)], 3)
    assert ids(merged) == ["x", "z", "y"]


def test_exclude_and_unknown_segment(model: PopularityRecommender) -> None:
    """Excluded items are skipped; a segment without a ranking raises UnknownIdError."""
    assert ids(model.recommend(2, exclude={"y"})) == ["x", "w"]
    assert not model.has_segment("at_risk")
    with pytest.raises(UnknownIdError, match="at_risk"):
        model.recommend(segment="at_risk")


def test_unfitted_and_bad_input() -> None:
    """Unfitted use and malformed input say what is wrong."""
    with pytest.raises(NotFittedError):
        PopularityRecommender().recommend()
    with pytest.raises(InvalidInputError, match="same length"):
        PopularityRecommender().fit(["a", "b"], [1.0])
    with pytest.raises(InvalidInputError, match=">= 0"):
        PopularityRecommender().fit(["a"], [-1.0])
    with pytest.raises(InvalidInputError, match="empty"):
        PopularityRecommender().fit([])
