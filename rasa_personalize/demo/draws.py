"""Random draws addressed by what they are for: counter-based, so any chunking gives one shop.

A stream generator (``numpy.random.Generator``) hands out draws by their place in one
long sequence, so a shop generated in chunks would change with the chunk size. Here a
draw is a hash of ``(seed, purpose, customer, index)``: the third purchase of customer
512,004 gets the same price whether the shop is generated in one piece or in chunks of
any size, and every draw of a chunk is one vectorised ``numpy`` expression.

The hash is splitmix64's finaliser applied twice; its output passes the usual
statistical test batteries, far more than a synthetic shop needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

_MASK: Final = (1 << 64) - 1
_GOLDEN: Final = 0x9E3779B97F4A7C15
_MIX_1: Final = 0xBF58476D1CE4E5B9
_MIX_2: Final = 0x94D049BB133111EB
_SECOND: Final = 0xD1B54A32D192ED03  # another odd constant, so index and customer differ
_TO_UNIT: Final = 2.0**-53


def _mix_int(value: int) -> int:
    """splitmix64's finaliser on a Python int (scalar numpy maths warns on overflow)."""
    value &= _MASK
    value = ((value ^ (value >> 30)) * _MIX_1) & _MASK
    value = ((value ^ (value >> 27)) * _MIX_2) & _MASK
    return value ^ (value >> 31)


def _mix(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser on an array (array arithmetic wraps around silently)."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(_MIX_1)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(_MIX_2)
    return np.asarray(values ^ (values >> np.uint64(31)), dtype=np.uint64)


@dataclass(frozen=True)
class Draws:
    """The draws of one seed. ``purpose`` tells independent kinds of draw apart;
    ``customer`` and ``index`` (the n-th purchase, the n-th event) broadcast together."""

    seed: int

    def bits(self, purpose: int, customer: ArrayLike, index: ArrayLike = 0) -> NDArray[np.uint64]:
        """64 random bits per (customer, index)."""
        base = _mix_int(self.seed * _GOLDEN + purpose * _SECOND + purpose)
        who = np.asarray(customer, dtype=np.int64).astype(np.uint64)
        which = np.asarray(index, dtype=np.int64).astype(np.uint64)
        first = _mix(who * np.uint64(_GOLDEN) + np.uint64(base))
        return _mix(first + which * np.uint64(_SECOND))

    def uniform(
        self, purpose: int, customer: ArrayLike, index: ArrayLike = 0
    ) -> NDArray[np.float64]:
        """Uniform in [0, 1)."""
        raw = (self.bits(purpose, customer, index) >> np.uint64(11)).astype(np.float64)
        return np.asarray(raw * _TO_UNIT, dtype=np.float64)

    def open_uniform(
        self, purpose: int, customer: ArrayLike, index: ArrayLike = 0
    ) -> NDArray[np.float64]:
        """Uniform in (0, 1): safe to take the logarithm of."""
        raw = (self.bits(purpose, customer, index) >> np.uint64(11)).astype(np.float64)
        return np.asarray((raw + 0.5) * _TO_UNIT, dtype=np.float64)

    def integers(
        self,
        purpose: int,
        customer: ArrayLike,
        index: ArrayLike,
        low: ArrayLike,
        high: ArrayLike,
    ) -> NDArray[np.int64]:
        """Uniform integers in [low, high], both included (``high >= low``)."""
        low_ = np.asarray(low, dtype=np.int64)
        span = np.asarray(high, dtype=np.int64) - low_ + 1
        picked = np.floor(self.uniform(purpose, customer, index) * span).astype(np.int64)
        # The float product can round up to ``span`` itself for huge spans.
        return np.asarray(low_ + np.minimum(picked, span - 1), dtype=np.int64)

    def normal(
        self, purpose: int, customer: ArrayLike, index: ArrayLike = 0
    ) -> NDArray[np.float64]:
        """Standard normal (Box-Muller on two draws of the same address)."""
        which = np.asarray(index, dtype=np.int64) * 2
        radius = np.sqrt(-2.0 * np.log(self.open_uniform(purpose, customer, which)))
        angle = 2.0 * np.pi * self.uniform(purpose, customer, which + 1)
        return np.asarray(radius * np.cos(angle), dtype=np.float64)

    def exponential(
        self, purpose: int, customer: ArrayLike, index: ArrayLike = 0
    ) -> NDArray[np.float64]:
        """Exponential with mean 1."""
        return -np.log(self.open_uniform(purpose, customer, index))


def pick(cumulative: NDArray[np.float64], uniform: NDArray[np.float64]) -> NDArray[np.int64]:
    """Indices drawn by inverse CDF: ``cumulative`` ends at 1, one uniform per draw."""
    return np.minimum(
        np.searchsorted(cumulative, uniform, side="right"), len(cumulative) - 1
    ).astype(np.int64)


def pick_rows(cumulative: NDArray[np.float64], uniform: NDArray[np.float64]) -> NDArray[np.int64]:
    """Like :func:`pick` with one CDF per draw (``cumulative`` has a row per uniform)."""
    chosen = (cumulative <= uniform[:, None]).sum(axis=1)
    return np.asarray(np.minimum(chosen, cumulative.shape[1] - 1), dtype=np.int64)
