"""Which contract archetype a cluster is: prototype scores on its profile, then matching.

The rule, on a cluster's *profile* (the mean of each feature over its members, in
original units: days, purchases, shares, tier ordinal):

1. Each archetype has a prototype: a few soft conditions that mirror the archetype rule
   of :mod:`rasa_personalize.segments.archetypes` (same thresholds). A condition is a ramp:
   ``at_least(x, a, b)`` is 0 below ``a``, 1 above ``b`` and linear in between, so a
   centroid near a threshold gets a partial score instead of flipping. The archetype's
   score is the product of its conditions, in [0, 1]:

   ===============  ==============================================================
   new_visitor      sessions at most ~0.5..2 and purchases at most ~0.5..1 (no activity)
   browser          sessions >= ~0.5..2 and purchases at most ~1..2.5
   at_risk          purchases >= ~0.5..1 and recency >= ~60..90 days
   loyal            tier >= ~1.5..2 (gold), purchases >= ~4..5, recency <= ~60..90 days
   price_sensitive  discount share >= ~0.3..0.5, purchases >= ~1..2, recency <= ~60..90
   frequent_buyer   purchases >= ~3..4, discount share <= ~0.3..0.5, tier below gold,
                    recency <= ~60..90 days
   ===============  ==============================================================

2. Clusters and archetypes are matched one-to-one to maximize the total score (the
   Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``), so two similar
   clusters are told apart by which fits each archetype *better*. A matched pair is kept
   only if its score is at least :data:`MIN_FIT`; otherwise, and for clusters left over
   when there are more clusters than archetypes, a cluster takes its best-scoring
   archetype. So several clusters may share an archetype, and an archetype with no
   fitting cluster gets none.
3. A cluster that fits no prototype at all (every score 0) is ``browser``: the archetype
   rule's own fall-through ("a purchase or two among many views").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from rasa_personalize.segments.archetypes import (
    AT_RISK_AFTER,
    FREQUENT_MIN_PURCHASES,
    LOYAL_MIN_PURCHASES,
    PRICE_SENSITIVE_SHARE,
)
from rasa_personalize.slots import CUSTOMER_SEGMENTS
from rasa_personalize.store.features import LOYALTY_ORDINAL

MIN_FIT: Final = 0.5
FALLBACK_ARCHETYPE: Final = "browser"
# The profile columns the prototypes read.
NAMING_FEATURES: Final = (
    "recency_days",
    "frequency",
    "sessions",
    "discount_share",
    "loyalty_tier",
)

_AT_RISK_DAYS: Final = AT_RISK_AFTER.total_seconds() / 86_400
_GOLD: Final = float(LOYALTY_ORDINAL["gold"])


def at_least(value: float, low: float, high: float) -> float:
    """0 at or below ``low``, 1 at or above ``high``, linear between (NaN counts as 0)."""
    if not np.isfinite(value):
        return 0.0
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


def at_most(value: float, low: float, high: float) -> float:
    """1 at or below ``low``, 0 at or above ``high``, linear between (NaN counts as 0)."""
    if not np.isfinite(value):
        return 0.0
    return 1.0 - at_least(value, low, high)


def _recent(p: Mapping[str, float]) -> float:
    return at_most(p["recency_days"], _AT_RISK_DAYS * 2 / 3, _AT_RISK_DAYS)


# One prototype per contract segment, in CUSTOMER_SEGMENTS order.
PROTOTYPES: Final[Mapping[str, Callable[[Mapping[str, float]], float]]] = {
    "new_visitor": lambda p: at_most(p["sessions"], 0.5, 2.0) * at_most(p["frequency"], 0.5, 1.0),
    "frequent_buyer": lambda p: (
        at_least(p["frequency"], FREQUENT_MIN_PURCHASES - 1, FREQUENT_MIN_PURCHASES)
        * at_most(p["discount_share"], PRICE_SENSITIVE_SHARE - 0.2, PRICE_SENSITIVE_SHARE)
        * at_most(p["loyalty_tier"], _GOLD - 0.5, _GOLD)
        * _recent(p)
    ),
    "price_sensitive": lambda p: (
        at_least(p["discount_share"], PRICE_SENSITIVE_SHARE - 0.2, PRICE_SENSITIVE_SHARE)
        * at_least(p["frequency"], 1.0, 2.0)
        * _recent(p)
    ),
    "loyal": lambda p: (
        at_least(p["loyalty_tier"], _GOLD - 0.5, _GOLD)
        * at_least(p["frequency"], LOYAL_MIN_PURCHASES - 1, LOYAL_MIN_PURCHASES)
        * _recent(p)
    ),
    "at_risk": lambda p: (
        at_least(p["frequency"], 0.5, 1.0)
        * at_least(p["recency_days"], _AT_RISK_DAYS * 2 / 3, _AT_RISK_DAYS)
    ),
    "browser": lambda p: at_least(p["sessions"], 0.5, 2.0) * at_most(p["frequency"], 1.0, 2.5),
}


def archetype_scores(profile: Mapping[str, float]) -> dict[str, float]:
    """Score in [0, 1] of each contract segment for one cluster profile.

    Missing or non-finite profile values count as failing every condition that reads them.
    """
    complete = {name: float(profile.get(name, np.nan)) for name in NAMING_FEATURES}
    return {segment: PROTOTYPES[segment](complete) for segment in CUSTOMER_SEGMENTS}


def score_matrix(profiles: Sequence[Mapping[str, float]]) -> NDArray[np.float64]:
    """Scores ``(len(profiles), len(CUSTOMER_SEGMENTS))``, columns in contract order."""
    rows = [list(archetype_scores(profile).values()) for profile in profiles]
    return np.array(rows, dtype=np.float64).reshape(len(profiles), len(CUSTOMER_SEGMENTS))


def name_clusters(profiles: Sequence[Mapping[str, float]]) -> list[str]:
    """The contract segment of each cluster profile, by the rule in the module docstring."""
    scores = score_matrix(profiles)
    names: list[str | None] = [None] * len(profiles)
    if len(profiles):
        rows, columns = linear_sum_assignment(scores, maximize=True)
        for row, column in zip(rows, columns, strict=True):
            if scores[row, column] >= MIN_FIT:
                names[row] = CUSTOMER_SEGMENTS[column]
    return [
        name if name is not None else best_archetype(scores[index])
        for index, name in enumerate(names)
    ]


def best_archetype(scores: NDArray[np.float64]) -> str:
    """The best-scoring segment (earlier in contract order on ties); ``browser`` if none fits."""
    if not np.isfinite(scores).any() or np.nanmax(scores) <= 0.0:
        return FALLBACK_ARCHETYPE
    return CUSTOMER_SEGMENTS[int(np.nanargmax(scores))]
