"""Low, medium and high: the propensity slot's bands, cut from a calibrated score.

A score at or below the low cut-off is ``low``, above the high cut-off ``high``, and
``medium`` between. By default the cut-offs are the terciles of the scores the model
gave its training customers, so that about a third of customers falls in each band; a
shop that wants probabilities instead (say "high" from 40 % on) gives fixed cut-offs
(``personalize propensity train --cutoffs 0.1,0.4``). Either way they are stored with
the model version, and each stored score carries its band, so the action server needs
neither the model nor the cut-offs. ``unknown`` (no score) is the engine's, not a band.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.propensity.errors import PropensityInputError

BANDS: Final = ("low", "medium", "high")
CutoffSource = Literal["terciles", "fixed"]


@dataclass(frozen=True)
class BandCutoffs:
    """The two cut-offs, and where they came from."""

    low: float
    high: float
    source: CutoffSource

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise PropensityInputError(
                f"band cut-offs must satisfy 0 <= low <= high <= 1, got {self.low}, {self.high}"
            )

    @classmethod
    def terciles(cls, scores: NDArray[np.float64]) -> BandCutoffs:
        """The scores' terciles (0 and 1 without scores)."""
        if not len(scores):
            return cls(0.0, 1.0, "terciles")
        low, high = np.quantile(scores, [1 / 3, 2 / 3])
        return cls(round(float(low), 6), round(float(high), 6), "terciles")

    @classmethod
    def parse(cls, text: str) -> BandCutoffs:
        """Fixed cut-offs from ``"LOW,HIGH"`` (probabilities, e.g. ``"0.1,0.4"``).

        Raises:
            PropensityInputError: not two numbers with 0 < LOW < HIGH < 1.
        """
        parts = [part.strip() for part in text.split(",")]
        try:
            low, high = (float(part) for part in parts)
        except ValueError:
            raise PropensityInputError(
                f"cut-offs must be two probabilities LOW,HIGH such as 0.1,0.4; got {text!r}"
            ) from None
        if not 0.0 < low < high < 1.0:
            raise PropensityInputError(
                f"cut-offs must satisfy 0 < LOW < HIGH < 1; got {low}, {high}"
            )
        return cls(low, high, "fixed")

    def bands(self, scores: NDArray[np.float64]) -> list[str]:
        """The band of each score."""
        index = np.where(scores <= self.low, 0, np.where(scores > self.high, 2, 1))
        return [BANDS[i] for i in index.tolist()]
