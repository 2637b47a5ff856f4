"""Bands: terciles by default, fixed cut-offs on request, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from rasa_personalize.propensity.bands import BandCutoffs
from rasa_personalize.propensity.errors import PropensityInputError


def test_terciles_put_a_third_in_each_band() -> None:
    """Nine spread scores: three low, three medium, three high."""
    scores = np.linspace(0.1, 0.9, 9)
    cutoffs = BandCutoffs.terciles(scores)
    assert cutoffs.source == "terciles"
    assert cutoffs.bands(scores) == ["low"] * 3 + ["medium"] * 3 + ["high"] * 3


def test_ties_at_the_bottom_stay_low() -> None:
    """Half the customers share the lowest score (calibration makes steps): all of them
    are low, none is lifted to medium by a cut-off equal to their score."""
    scores = np.array([0.01] * 6 + [0.2, 0.3, 0.5, 0.6, 0.7, 0.8])
    cutoffs = BandCutoffs.terciles(scores)
    assert cutoffs.low == pytest.approx(0.01)
    assert cutoffs.bands(scores)[:6] == ["low"] * 6


def test_fixed_cut_offs_are_probabilities() -> None:
    """0.1,0.4: up to 0.1 low, above 0.4 high, medium between (boundaries included below)."""
    cutoffs = BandCutoffs.parse("0.1, 0.4")
    assert (cutoffs.low, cutoffs.high, cutoffs.source) == (0.1, 0.4, "fixed")
    scores = np.array([0.0, 0.1, 0.100001, 0.4, 0.41, 1.0])
    assert cutoffs.bands(scores) == ["low", "low", "medium", "medium", "high", "high"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.4", "two probabilities"),  # one number
        ("a,b", "two probabilities"),  # no numbers
        ("0.4,0.1", "0 < LOW < HIGH < 1"),  # the wrong way round
        ("0,0.5", "0 < LOW < HIGH < 1"),  # a cut at 0 leaves "low" empty
        ("0.2,1.5", "0 < LOW < HIGH < 1"),  # not a probability
    ],
)
def test_bad_cut_offs_say_what_is_wrong(text: str, message: str) -> None:
    """Every malformed --cutoffs value gets a sentence naming the rule."""
    with pytest.raises(PropensityInputError, match=message):
        BandCutoffs.parse(text)
