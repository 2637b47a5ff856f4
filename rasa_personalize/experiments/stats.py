"""The statistics of an A/B experiment report: every arm compared with the control arm.

Inputs are counts per arm: customers exposed, exposed customers who converted within the
goal's window, and their revenue. Each number of the report, and how it is computed:

- **rate** ``x / n`` with a Wilson score interval (Wilson 1927), which keeps its coverage
  near 0 and 1 where the textbook Wald interval collapses.
- **uplift** ``rate_arm - rate_control`` (absolute, in rate units) with Newcombe's hybrid
  score interval (Newcombe 1998, "Interval estimation for the difference between
  independent proportions: comparison of eleven methods", Statistics in Medicine 17,
  method 10)::

      low  = d - sqrt((p1 - l1)^2 + (u0 - p0)^2)
      high = d + sqrt((u1 - p1)^2 + (p0 - l0)^2)

  where ``d = p1 - p0`` and ``[l, u]`` are the Wilson intervals of the arm (1) and the
  control (0). Its coverage stays close to the nominal level from tens to millions of
  exposures (measured in ``tests/experiments/test_stats_simulation.py``).
- **p-value** (two-sided) by inverting that interval: the smallest level ``a`` at which
  the ``1 - a`` Newcombe interval excludes 0, found by bisection on ``z``. So
  ``p_value < alpha`` exactly when the interval excludes 0: the table never shows a
  significant p-value next to an interval that straddles zero, or the reverse, as the
  pooled z-test and a Newcombe interval do near the boundary. Newcombe's interval is
  built from score intervals, so no exact test (Fisher, Barnard) is needed for small
  counts: at 50 exposures per arm its level is still at or below nominal (simulated).
- **prob_beat_control** ``P(rate_arm > rate_control)`` under independent Beta(1, 1)
  priors, i.e. posteriors ``Beta(1 + x, 1 + n - x)``, in closed form (Evan Miller 2015,
  "Formulas for Bayesian A/B testing")::

      P(pB > pA) = sum_{i=0}^{aB-1} B(aA + i, bA + bB) / ((bB + i) B(1 + i, bB) B(aA, bA))

  summed in log space over the arm with fewer conversions (``P(pA > pB) = 1 - P(pB > pA)``),
  so the cost is linear in the smaller conversion count and the answer deterministic.
  Past :data:`EXACT_BAYES_MAX_TERMS` conversions in both arms the posteriors are so
  nearly normal that their normal approximation is within 1e-5 of the exact sum
  (measured), and it is used instead.
- **srm_p_value** Pearson's chi-square goodness of fit of the exposures against the
  configured weights; ``srm_flagged`` when it is below 0.001 (sample ratio mismatch,
  Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in Online Controlled
  Experiments", KDD). ``None`` when there is one arm or any arm expects fewer than 5
  exposures (the chi-square approximation needs that many).

**The decision, safe under continuous monitoring.** The fixed-horizon p-value is valid
for one look at a sample size fixed in advance; looking every day and stopping at the
first ``p < 0.05`` makes false winners several times as likely (about 19% with 10 looks,
simulated). The decision uses an always-valid p-value instead: the mixture sequential
probability ratio test of Johari, Koomen, Pekelis and Walsh ("Always valid inference:
continuous monitoring of A/B tests", Operations Research 70(3), 2022; Optimizely's Stats
Engine) with a normal mixture on the difference of rates. At each look::

    V   = p(1 - p) (1/n0 + 1/n1)          p = pooled rate (the variance under "no difference")
    z   = (p1 - p0) / sqrt(V)
    t   = 2 / (1/n0 + 1/n1)               exposures per arm (of a balanced split with this V)
    r   = rho^2 t,   rho^2 = (2 ln(1/alpha) + ln(1 + 2 ln(1/alpha))) / N
    L   = (1 + r)^(-1/2) exp(r z^2 / (2 (1 + r)))
    p_t = min(1, 1/L_1, ..., 1/L_t)

Under "no difference" ``L`` is (asymptotically) a nonnegative martingale with mean 1, so
by Ville's inequality it ever reaches ``1/alpha`` with probability at most ``alpha``:
``p_t`` may be read after every customer. The mixing variance ``rho^2`` follows the
asymptotic confidence sequences of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas
("Time-uniform central limit theory and asymptotic confidence sequences", Annals of
Statistics, 2024), as GrowthBook does: it makes the test most sensitive when each arm has
``N`` exposures (``sequential_planned_exposures``, default 5,000). ``N`` changes power,
never validity. The pooled variance is used because it is the variance under the null
hypothesis the test must hold to, and it is zero only when the two rates are equal.

An arm's verdict is ``better`` or ``worse`` once its always-valid p-value falls to
``alpha / k`` (``k`` treatment arms: Bonferroni, so that the chance of any false verdict
stays below ``alpha``), in the direction of the uplift at the first look that crossed;
``inconclusive`` until then. The earlier looks come from ``history`` (cumulative counts
per arm); without it only the current look counts, which is still valid, only less
sensitive.

**Thompson sampling** (:func:`thompson_weights`): the probability that each arm has the
highest rate under its Beta posterior, estimated by Monte Carlo, used as allocation
weights, with every arm kept at a minimum share so that none starves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from rasa_personalize.errors import InvalidInputError

SRM_THRESHOLD: Final = 0.001
# Below this many expected exposures per arm the chi-square test of the split says nothing.
SRM_MIN_EXPECTED: Final = 5.0
DEFAULT_ALPHA: Final = 0.05
# GrowthBook's default tuning: the test is most sensitive at 5,000 exposures per arm.
DEFAULT_SEQUENTIAL_PLANNED_EXPOSURES: Final = 5_000
# Beyond this many terms of the closed form, the normal approximation of the posteriors.
EXACT_BAYES_MAX_TERMS: Final = 10_000  # there the approximation is within 1e-5
DEFAULT_THOMPSON_DRAWS: Final = 10_000
MAX_THOMPSON_DRAWS: Final = 1_000_000
# Every arm keeps at least this share of traffic, so an arm that looks bad early can recover.
DEFAULT_THOMPSON_MIN_SHARE: Final = 0.01
# p-values are found by bisection on z in [0, MAX_Z]; 2 * sf(38) is below the smallest double.
_MAX_Z: Final = 38.0
_BISECTION_STEPS: Final = 48  # z to within 38 / 2^48, about 1e-13

FloatArray = NDArray[np.float64]


class ExperimentInputError(InvalidInputError, ValueError):
    """Counts or parameters given to the statistics are invalid; the message says which."""


class Verdict(str, Enum):
    """The sequential decision for one arm against control."""

    BETTER = "better"  # converts more than control, safe to conclude now
    WORSE = "worse"  # converts less than control, safe to conclude now
    INCONCLUSIVE = "inconclusive"  # keep running: no safe conclusion yet


@dataclass(frozen=True)
class ArmCounts:
    """What was observed for one arm."""

    name: str
    weight: float  # configured weight (any positive scale)
    exposures: int  # customers exposed
    conversions: int  # exposed customers who converted within the window
    revenue: float = 0.0  # revenue from those conversions


@dataclass(frozen=True)
class ArmResult:
    """One arm of the report; comparisons are ``None`` for control and for empty arms."""

    name: str
    exposures: int
    conversions: int
    rate: float | None  # conversions / exposures; None with no exposures
    revenue_per_exposed: float | None
    uplift: float | None  # rate - control rate (absolute); None for control
    ci_low: float | None  # interval of the uplift at level 1 - alpha (Newcombe)
    ci_high: float | None
    p_value: float | None  # two-sided, fixed horizon, vs control
    prob_beat_control: float | None  # P(rate > control rate), Beta(1, 1) priors
    expected_share: float  # weight / sum of weights
    rate_ci_low: float | None  # interval of the rate at level 1 - alpha (Wilson)
    rate_ci_high: float | None
    relative_uplift: float | None  # uplift / control rate; None when control rate is 0
    always_valid_p_value: float | None  # safe to read at every look; None for control
    verdict: Verdict | None  # the sequential decision; None for control


@dataclass(frozen=True)
class ExperimentAnalysis:
    """Every arm compared with control, the split check and the sequential decision."""

    control: str
    srm_p_value: float | None  # chi-square of exposures against the weights
    srm_flagged: bool  # srm_p_value < SRM_THRESHOLD
    arms: tuple[ArmResult, ...]  # in the order given, control included
    decision: Mapping[str, Verdict]  # per treatment arm, safe under continuous monitoring
    alpha: float
    decision_alpha: float  # alpha / number of treatment arms: the verdicts' threshold
    sequential_planned_exposures: int

    def arm(self, name: str) -> ArmResult:
        """The result of the arm called ``name``.

        Raises:
            KeyError: no arm has that name.
        """
        for result in self.arms:
            if result.name == name:
                return result
        raise KeyError(name)

    def as_json(self, experiment: str) -> dict[str, Any]:
        """The report as JSON-ready data; the first keys of each level are the stable ones."""
        return {
            "experiment": experiment,
            "srm_p_value": self.srm_p_value,
            "arms": [
                {
                    "name": result.name,
                    "exposures": result.exposures,
                    "conversions": result.conversions,
                    "rate": result.rate,
                    "uplift": result.uplift,
                    "ci_low": result.ci_low,
                    "ci_high": result.ci_high,
                    "p_value": result.p_value,
                    "prob_beat_control": result.prob_beat_control,
                    "revenue_per_exposed": result.revenue_per_exposed,
                    "relative_uplift": result.relative_uplift,
                    "rate_ci_low": result.rate_ci_low,
                    "rate_ci_high": result.rate_ci_high,
                    "expected_share": result.expected_share,
                    "always_valid_p_value": result.always_valid_p_value,
                    "decision": None if result.verdict is None else result.verdict.value,
                }
                for result in self.arms
            ],
            "control": self.control,
            "srm_flagged": self.srm_flagged,
            "alpha": self.alpha,
            "decision_alpha": self.decision_alpha,
        }


# A look at the experiment: cumulative (exposures, conversions) per arm name.
Look = Mapping[str, tuple[int, int]]


def analyze(
    arms: Sequence[ArmCounts],
    control: str,
    *,
    alpha: float = DEFAULT_ALPHA,
    history: Sequence[Look] = (),
    sequential_planned_exposures: int = DEFAULT_SEQUENTIAL_PLANNED_EXPOSURES,
) -> ExperimentAnalysis:
    """Compare every arm with ``control``.

    Args:
        arms: the counts per arm, in the order the report shows them.
        control: the name of the control arm.
        alpha: 1 - the confidence level of the intervals, and the error budget of the
            sequential decision.
        history: earlier looks, oldest first: cumulative (exposures, conversions) per arm
            name. The sequential decision takes the first look that crossed; arms absent
            from a look count as not yet exposed.
        sequential_planned_exposures: the exposures per arm at which the sequential test
            is most sensitive.

    Raises:
        ExperimentInputError: no arms, duplicate names, a missing control, negative or
            inconsistent counts, or parameters out of range.
    """
    _check_arms(arms)
    _check_alpha(alpha)
    if not isinstance(control, str) or control not in {arm.name for arm in arms}:
        raise ExperimentInputError(f"control arm {control!r} is not one of the arms")
    if sequential_planned_exposures < 1:
        raise ExperimentInputError("sequential_planned_exposures must be at least 1")
    looks = [_checked_look(look, position) for position, look in enumerate(history, 1)]

    by_name = {arm.name: arm for arm in arms}
    base = by_name[control]
    treatments = [arm for arm in arms if arm.name != control]
    decision_alpha = alpha / max(len(treatments), 1)
    z = float(special.ndtri(1 - alpha / 2))
    total_weight = math.fsum(arm.weight for arm in arms)

    comparisons = _compare(treatments, base, z)
    results = []
    decision: dict[str, Verdict] = {}
    for arm in arms:
        comparison = comparisons.get(arm.name, _NO_COMPARISON)
        always_valid: float | None = None
        verdict: Verdict | None = None
        if arm.name != control:
            looks_of_arm = [
                (*look.get(arm.name, (0, 0)), *look.get(control, (0, 0))) for look in looks
            ]
            looks_of_arm.append((arm.exposures, arm.conversions, base.exposures, base.conversions))
            sequential = sequential_decision(
                looks_of_arm, alpha=decision_alpha, planned_exposures=sequential_planned_exposures
            )
            always_valid, verdict = sequential.always_valid_p_value, sequential.verdict
            decision[arm.name] = verdict
        rate_low, rate_high = _wilson_or_none(arm.conversions, arm.exposures, z)
        results.append(
            ArmResult(
                name=arm.name,
                exposures=arm.exposures,
                conversions=arm.conversions,
                rate=arm.conversions / arm.exposures if arm.exposures else None,
                revenue_per_exposed=arm.revenue / arm.exposures if arm.exposures else None,
                uplift=comparison.uplift,
                ci_low=comparison.ci_low,
                ci_high=comparison.ci_high,
                p_value=comparison.p_value,
                prob_beat_control=comparison.prob_beat_control,
                expected_share=arm.weight / total_weight,
                rate_ci_low=rate_low,
                rate_ci_high=rate_high,
                relative_uplift=comparison.relative_uplift,
                always_valid_p_value=always_valid,
                verdict=verdict,
            )
        )
    srm = srm_p_value([arm.exposures for arm in arms], [arm.weight for arm in arms])
    return ExperimentAnalysis(
        control=control,
        srm_p_value=srm,
        srm_flagged=srm is not None and srm < SRM_THRESHOLD,
        arms=tuple(results),
        decision=MappingProxyType(decision),
        alpha=alpha,
        decision_alpha=decision_alpha,
        sequential_planned_exposures=sequential_planned_exposures,
    )


@dataclass(frozen=True)
class _Comparison:
    """An arm against control at the current look; all None when either arm is empty."""

    uplift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    prob_beat_control: float | None = None
    relative_uplift: float | None = None


_NO_COMPARISON: Final = _Comparison()


def _compare(treatments: Sequence[ArmCounts], base: ArmCounts, z: float) -> dict[str, _Comparison]:
    """Each treatment arm against control, in one vectorized pass; empty arms are left out."""
    compared = [arm for arm in treatments if arm.exposures] if base.exposures else []
    if not compared:  # no data, no claim
        return {}
    x1 = np.array([arm.conversions for arm in compared], dtype=np.float64)
    n1 = np.array([arm.exposures for arm in compared], dtype=np.float64)
    x0, n0 = base.conversions, base.exposures
    low, high = newcombe_interval(x1, n1, x0, n0, z=z)
    p_values = newcombe_p_value(x1, n1, x0, n0)
    base_rate = x0 / n0
    comparisons = {}
    for index, arm in enumerate(compared):
        uplift = arm.conversions / arm.exposures - base_rate
        comparisons[arm.name] = _Comparison(
            uplift=uplift,
            ci_low=float(low[index]),
            ci_high=float(high[index]),
            p_value=float(p_values[index]),
            prob_beat_control=prob_beat_control(arm.conversions, arm.exposures, x0, n0),
            relative_uplift=uplift / base_rate if base_rate else None,
        )
    return comparisons


def _wilson_or_none(
    conversions: int, exposures: int, z: float
) -> tuple[float | None, float | None]:
    if not exposures:
        return None, None
    low, high = wilson_interval(conversions, exposures, z=z)
    return float(low[()]), float(high[()])


# --- Validation ---------------------------------------------------------------------------


def _is_count(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_arms(arms: Sequence[ArmCounts]) -> None:
    if not arms:
        raise ExperimentInputError("an experiment needs at least one arm")
    seen: set[str] = set()
    for arm in arms:
        if not isinstance(arm.name, str) or not arm.name:
            raise ExperimentInputError("every arm needs a non-empty name")
        if arm.name in seen:
            raise ExperimentInputError(f"arm {arm.name!r} appears twice")
        seen.add(arm.name)
        _check_counts(f"arm {arm.name!r}", arm.exposures, arm.conversions)
        if not math.isfinite(arm.weight) or arm.weight <= 0:
            raise ExperimentInputError(f"arm {arm.name!r}: weight must be positive")
        if not math.isfinite(arm.revenue) or arm.revenue < 0:
            raise ExperimentInputError(f"arm {arm.name!r}: revenue must be a number >= 0")


def _check_counts(where: str, exposures: int, conversions: int) -> None:
    if not _is_count(exposures) or not _is_count(conversions):
        raise ExperimentInputError(f"{where}: exposures and conversions must be integers")
    if exposures < 0 or conversions < 0:
        raise ExperimentInputError(f"{where}: counts must not be negative")
    if conversions > exposures:
        raise ExperimentInputError(
            f"{where}: {conversions} conversions exceed {exposures} exposures"
        )


def _checked_look(look: Look, position: int) -> Look:
    for name, counts in look.items():
        where = f"history look {position}, arm {name!r}"
        if not isinstance(counts, tuple) or len(counts) != 2:
            raise ExperimentInputError(f"{where}: needs (exposures, conversions)")
        _check_counts(where, *counts)
    return look


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ExperimentInputError(f"alpha must be between 0 and 1, not {alpha}")


def _as_counts(
    *values: ArrayLike,
) -> tuple[FloatArray, ...]:
    """Broadcast count arrays to floats; exposures (odd positions) must be positive."""
    arrays = np.broadcast_arrays(*(np.asarray(value, dtype=np.float64) for value in values))
    for successes, trials in zip(arrays[::2], arrays[1::2], strict=True):
        invalid = ~np.isfinite(successes) | (trials <= 0) | (successes < 0) | (successes > trials)
        if np.any(invalid):
            raise ExperimentInputError(
                "counts need 0 <= conversions <= exposures and exposures > 0"
            )
    return tuple(arrays)


# --- Intervals and tests (vectorized: the simulations call them on arrays) ---------------


def wilson_interval(
    conversions: ArrayLike, exposures: ArrayLike, *, z: float
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval of a rate, for arrays of counts (exposures > 0).

    Raises:
        ExperimentInputError: a count is out of range.
    """
    x, n = _as_counts(conversions, exposures)
    return _wilson(x, n, np.float64(z))


def _wilson(
    x: FloatArray, n: FloatArray, z: FloatArray | np.float64
) -> tuple[FloatArray, FloatArray]:
    z2 = z * z
    centre = x + z2 / 2
    half = z * np.sqrt(x * (n - x) / n + z2 / 4)
    denominator = n + z2
    # Exact at the edges (x = 0 or x = n), where rounding could leave 1e-17 outside [0, 1].
    low = np.where(x == 0, 0.0, (centre - half) / denominator)
    high = np.where(x == n, 1.0, (centre + half) / denominator)
    return low, high


def newcombe_interval(
    arm_conversions: ArrayLike,
    arm_exposures: ArrayLike,
    control_conversions: ArrayLike,
    control_exposures: ArrayLike,
    *,
    z: float,
) -> tuple[FloatArray, FloatArray]:
    """Newcombe's hybrid score interval of ``rate_arm - rate_control`` (exposures > 0).

    Raises:
        ExperimentInputError: a count is out of range.
    """
    x1, n1, x0, n0 = _as_counts(
        arm_conversions, arm_exposures, control_conversions, control_exposures
    )
    return _newcombe(x1, n1, x0, n0, np.float64(z))


def _newcombe(
    x1: FloatArray, n1: FloatArray, x0: FloatArray, n0: FloatArray, z: FloatArray | np.float64
) -> tuple[FloatArray, FloatArray]:
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = _wilson(x1, n1, z)
    l0, u0 = _wilson(x0, n0, z)
    difference = p1 - p0
    low = difference - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = difference + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return low, high


def newcombe_p_value(
    arm_conversions: ArrayLike,
    arm_exposures: ArrayLike,
    control_conversions: ArrayLike,
    control_exposures: ArrayLike,
) -> FloatArray:
    """Two-sided p-value: the smallest level at which Newcombe's interval excludes 0.

    Both Wilson bounds move outwards as ``z`` grows, so the interval's edge nearest 0 moves
    monotonically towards it and a bisection on ``z`` finds where it touches.

    Raises:
        ExperimentInputError: a count is out of range.
    """
    x1, n1, x0, n0 = _as_counts(
        arm_conversions, arm_exposures, control_conversions, control_exposures
    )
    difference = x1 / n1 - x0 / n0
    lower, upper = np.zeros_like(difference), np.full_like(difference, _MAX_Z)
    for _ in range(_BISECTION_STEPS):
        middle = (lower + upper) / 2
        low, high = _newcombe(x1, n1, x0, n0, middle)
        excludes_zero = np.where(difference > 0, low > 0, high < 0)
        lower = np.where(excludes_zero, middle, lower)
        upper = np.where(excludes_zero, upper, middle)
    p_value = 2 * special.ndtr(-(lower + upper) / 2)
    return np.asarray(np.where(difference == 0, 1.0, np.minimum(p_value, 1.0)), dtype=np.float64)


def always_valid_p_value(
    arm_conversions: ArrayLike,
    arm_exposures: ArrayLike,
    control_conversions: ArrayLike,
    control_exposures: ArrayLike,
    *,
    alpha: float = DEFAULT_ALPHA,
    planned_exposures: int = DEFAULT_SEQUENTIAL_PLANNED_EXPOSURES,
) -> FloatArray:
    """The mSPRT p-value ``min(1, 1/L)`` of one look (see the module docstring).

    The always-valid p-value of a running experiment is the minimum of this over its
    looks (:func:`sequential_decision` takes it).

    Raises:
        ExperimentInputError: a count or parameter is out of range.
    """
    _check_alpha(alpha)
    if planned_exposures < 1:
        raise ExperimentInputError("planned_exposures must be at least 1")
    x1, n1, x0, n0 = _as_counts(
        arm_conversions, arm_exposures, control_conversions, control_exposures
    )
    difference = x1 / n1 - x0 / n0
    pooled = (x1 + x0) / (n1 + n0)
    inverse_sizes = 1 / n1 + 1 / n0
    variance = pooled * (1 - pooled) * inverse_sizes
    log_inverse_alpha = -math.log(alpha)
    rho2 = (2 * log_inverse_alpha + math.log1p(2 * log_inverse_alpha)) / planned_exposures
    r = rho2 * 2 / inverse_sizes
    # The pooled variance is 0 only when every customer of both arms did the same: equal rates.
    safe_variance = np.where(variance > 0, variance, 1.0)
    z2 = np.where(variance > 0, difference * difference / safe_variance, 0.0)
    log_p = 0.5 * np.log1p(r) - r * z2 / (2 * (1 + r))
    return np.asarray(np.exp(np.minimum(log_p, 0.0)), dtype=np.float64)


@dataclass(frozen=True)
class SequentialDecision:
    """The sequential test of one arm against control over its looks."""

    always_valid_p_value: float  # the minimum over the looks; 1.0 without evidence
    verdict: Verdict
    decided_at: int | None  # index of the first look that crossed, among those given


def sequential_decision(
    looks: Sequence[tuple[int, int, int, int]],
    *,
    alpha: float,
    planned_exposures: int = DEFAULT_SEQUENTIAL_PLANNED_EXPOSURES,
) -> SequentialDecision:
    """The always-valid p-value and verdict of one arm over its looks, oldest first.

    Each look is cumulative ``(arm_exposures, arm_conversions, control_exposures,
    control_conversions)``; looks where either arm has no exposures carry no evidence.
    The verdict follows the uplift's sign at the first look whose p-value reached
    ``alpha``: that is when a continuously monitored experiment would have stopped.

    Raises:
        ExperimentInputError: a count or parameter is out of range.
    """
    for position, look in enumerate(looks, 1):
        _check_counts(f"look {position}, arm", look[0], look[1])
        _check_counts(f"look {position}, control", look[2], look[3])
    informative = [index for index, look in enumerate(looks) if look[0] > 0 and look[2] > 0]
    if not informative:
        return SequentialDecision(1.0, Verdict.INCONCLUSIVE, None)
    n1, x1, n0, x0 = (
        np.array([looks[index][column] for index in informative], dtype=np.float64)
        for column in range(4)
    )
    p_values = always_valid_p_value(
        x1, n1, x0, n0, alpha=alpha, planned_exposures=planned_exposures
    )
    always_valid = float(p_values.min())
    crossed = np.flatnonzero(p_values <= alpha)
    if not len(crossed):
        return SequentialDecision(always_valid, Verdict.INCONCLUSIVE, None)
    first = int(crossed[0])
    better = x1[first] / n1[first] > x0[first] / n0[first]
    verdict = Verdict.BETTER if better else Verdict.WORSE
    return SequentialDecision(always_valid, verdict, informative[first])


# --- Bayesian probability of beating control ---------------------------------------------


def prob_beat_control(
    arm_conversions: int, arm_exposures: int, control_conversions: int, control_exposures: int
) -> float:
    """``P(rate_arm > rate_control)`` under Beta(1, 1) priors, in closed form.

    Raises:
        ExperimentInputError: a count is out of range.
    """
    _check_counts("arm", arm_exposures, arm_conversions)
    _check_counts("control", control_exposures, control_conversions)
    a1, b1 = arm_conversions + 1, arm_exposures - arm_conversions + 1
    a0, b0 = control_conversions + 1, control_exposures - control_conversions + 1
    if min(a0, a1) > EXACT_BAYES_MAX_TERMS:
        return _normal_prob_greater(a1, b1, a0, b0)
    # The sum runs over the first argument's alpha: pick the cheaper side.
    if a1 <= a0:
        return _beta_prob_greater(a1, b1, a0, b0)
    return 1.0 - _beta_prob_greater(a0, b0, a1, b1)


def _beta_prob_greater(a1: int, b1: int, a0: int, b0: int) -> float:
    """P(X1 > X0) for X1 ~ Beta(a1, b1), X0 ~ Beta(a0, b0), integer a1 (Evan Miller)."""
    i = np.arange(a1, dtype=np.float64)
    log_terms = (
        special.betaln(a0 + i, b0 + b1)
        - np.log(b1 + i)
        - special.betaln(1 + i, b1)
        - special.betaln(a0, b0)
    )
    total = float(np.exp(special.logsumexp(log_terms)))
    return min(max(total, 0.0), 1.0)


def _normal_prob_greater(a1: int, b1: int, a0: int, b0: int) -> float:
    def moments(a: int, b: int) -> tuple[float, float]:
        mean = a / (a + b)
        return mean, mean * (1 - mean) / (a + b + 1)

    mean1, variance1 = moments(a1, b1)
    mean0, variance0 = moments(a0, b0)
    return float(special.ndtr((mean1 - mean0) / math.sqrt(variance1 + variance0)))


# --- Sample ratio mismatch ---------------------------------------------------------------


def srm_p_value(exposures: Sequence[int], weights: Sequence[float]) -> float | None:
    """Chi-square p-value of ``exposures`` against the split the ``weights`` ask for.

    Returns:
        ``None`` with fewer than two arms or fewer than 5 expected exposures in an arm.

    Raises:
        ExperimentInputError: lengths differ, a count is negative or a weight not positive.
    """
    if len(exposures) != len(weights):
        raise ExperimentInputError("srm: one weight per arm is needed")
    if any(not _is_count(count) or count < 0 for count in exposures):
        raise ExperimentInputError("srm: exposures must be integers >= 0")
    if any(not math.isfinite(weight) or weight <= 0 for weight in weights):
        raise ExperimentInputError("srm: weights must be positive")
    if len(exposures) < 2:
        return None
    observed = np.asarray(exposures, dtype=np.float64)
    shares = np.asarray(weights, dtype=np.float64) / math.fsum(weights)
    expected = shares * observed.sum()
    if expected.min() < SRM_MIN_EXPECTED:
        return None
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return float(special.chdtrc(len(exposures) - 1, statistic))


# --- Thompson sampling -------------------------------------------------------------------


def thompson_weights(
    arms: Sequence[ArmCounts],
    *,
    draws: int = DEFAULT_THOMPSON_DRAWS,
    seed: int | None = None,
    min_share: float = DEFAULT_THOMPSON_MIN_SHARE,
) -> dict[str, float]:
    """Allocation weights: the probability each arm is best, with a floor per arm.

    Each arm's rate has the posterior ``Beta(1 + conversions, 1 + exposures -
    conversions)``; ``draws`` joint samples estimate the probability ``P_i`` that arm ``i``
    has the highest rate. The weights are ``min_share + (1 - k min_share) P_i`` for ``k``
    arms: they sum to 1 and none falls below ``min_share``, so an arm that was unlucky
    early still gets customers and can recover. The configured weights play no part.

    Raises:
        ExperimentInputError: invalid counts, ``draws`` outside 1 to 1,000,000, or a
            ``min_share`` that the arms cannot all get.
    """
    _check_arms(arms)
    if not 1 <= draws <= MAX_THOMPSON_DRAWS:
        raise ExperimentInputError(f"draws must be between 1 and {MAX_THOMPSON_DRAWS:,}")
    if not 0 <= min_share * len(arms) <= 1:
        raise ExperimentInputError(
            f"min_share {min_share} is impossible for {len(arms)} arms (k * min_share <= 1)"
        )
    successes = np.array([arm.conversions for arm in arms], dtype=np.float64)
    trials = np.array([arm.exposures for arm in arms], dtype=np.float64)
    rng = np.random.default_rng(seed)
    samples = rng.beta(1 + successes, 1 + trials - successes, size=(draws, len(arms)))
    best = np.bincount(samples.argmax(axis=1), minlength=len(arms)) / draws
    weights = min_share + (1 - min_share * len(arms)) * best
    return {arm.name: float(weight) for arm, weight in zip(arms, weights, strict=True)}
