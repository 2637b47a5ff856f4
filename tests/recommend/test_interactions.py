"""ConfidenceWeights and InteractionData: mapping, summing, strict checks."""

from __future__ import annotations

import numpy as np
import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.interactions import ConfidenceWeights, InteractionData


def test_weight_by_kind_and_by_value() -> None:
    """A kind's weight, or for value-mapped kinds the weight of the value."""
    weights = ConfidenceWeights.ecommerce()
    assert weights.weight("purchase") == 8.0
    assert weights.weight("feedback", 1.0) == 4.0
    assert weights.weight("feedback", -1) == -8.0
    assert ConfidenceWeights.ratings({4: 3.0}).weight("rating", 4) == 3.0


def test_unknown_kind_or_value_names_what_is_missing() -> None:
    """Errors say which kind or value has no weight and what is known."""
    weights = ConfidenceWeights.ecommerce()
    with pytest.raises(InvalidInputError, match=r"'wishlist'.*known kinds"):
        weights.weight("wishlist")
    with pytest.raises(InvalidInputError, match=r"'feedback' with value 0\.5"):
        weights.weights_for(["view", "feedback"], [np.nan, 0.5])


def test_weights_for_matches_weight_row_by_row() -> None:
    """The vectorised mapping equals the scalar one."""
    weights = ConfidenceWeights.ecommerce()
    kinds = ["view", "feedback", "purchase", "feedback", "cart"]
    values = [np.nan, -1.0, np.nan, 1.0, np.nan]
    expected = [
        weights.weight(k, None if np.isnan(v) else v) for k, v in zip(kinds, values, strict=True)
    ]
    assert weights.weights_for(kinds, values).tolist() == expected


def test_confidence_weights_cannot_be_changed_through_the_caller_dict() -> None:
    """The dataclass keeps its own read-only copy of the mappings."""
    kinds = {"view": 1.0}
    weights = ConfidenceWeights(kinds=kinds)
    kinds["view"] = 100.0
    assert weights.weight("view") == 1.0
    with pytest.raises(TypeError):
        weights.kinds["view"] = 2.0  # type: ignore[index]


def test_from_events_sums_per_pair_and_drops_disliked() -> None:
    """Viewed then disliked: removed; carted, bought then disliked: lowered but kept."""
    data = InteractionData.from_events(
        ["u1", "u1", "u1", "u1", "u1", "u2"],
        ["viewed", "viewed", "bought", "bought", "bought", "viewed"],
        ["view", "feedback", "cart", "purchase", "feedback", "view"],
        [np.nan, -1.0, np.nan, np.nan, -1.0, np.nan],
        ConfidenceWeights.ecommerce(),
    )
    pairs = {
        (user, item): weight
        for user, item, weight in zip(
            data.user_ids.tolist(), data.item_ids.tolist(), data.weights.tolist(), strict=True
        )
    }
    # 1 - 8 < 0 drops ("u1", "viewed"); 4 + 8 - 8 = 4 keeps ("u1", "bought").
    assert pairs == {("u1", "bought"): 4.0, ("u2", "viewed"): 1.0}


def test_from_events_drops_a_pair_whose_total_is_exactly_zero() -> None:
    """Bought (8) then disliked (-8): the total is 0, which is not a positive."""
    data = InteractionData.from_events(
        ["u", "u", "u"],
        ["x", "x", "y"],
        ["purchase", "feedback", "view"],
        [np.nan, -1.0, np.nan],
        ConfidenceWeights.ecommerce(),
    )
    assert data.item_ids.tolist() == ["y"]


def test_from_events_with_nothing_positive_is_an_error() -> None:
    """All pairs disliked: nothing to train on, said so."""
    with pytest.raises(InvalidInputError, match="no \\(user, item\\) pair"):
        InteractionData.from_events(
            ["u"], ["x"], ["feedback"], [-1.0], ConfidenceWeights.ecommerce()
        )


@pytest.mark.parametrize(
    ("users", "items", "weights", "message"),
    [
        # lengths differ
        (["u", "v"], ["x"], [1.0, 1.0], "same length, got 2, 1 and 2"),
        # negative weight after mapping
        (["u", "v"], ["x", "y"], [1.0, -0.5], "row 1 has -0.5"),
        # no rows at all
        ([], [], [], "empty"),
        # NaN weight
        (["u"], ["x"], [np.nan], "finite"),
        # empty id
        (["u"], [""], [1.0], "non-empty"),
    ],
)
def test_interaction_data_strict_checks(
    users: list[str], items: list[str], weights: list[float], message: str
) -> None:
    """Each malformed input raises InvalidInputError with a message saying what is wrong."""
    with pytest.raises(InvalidInputError, match=message):
        InteractionData.from_pairs(users, items, weights)


def test_interaction_data_is_read_only_and_owns_its_arrays() -> None:
    """Changing the caller's array does not change the data; the data's arrays are frozen."""
    weights = np.array([1.0, 2.0])
    data = InteractionData.from_pairs(["u", "v"], ["x", "y"], weights)
    weights[0] = 99.0
    assert data.weights.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="read-only"):
        data.weights[0] = 5.0
