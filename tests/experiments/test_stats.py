"""Experiment statistics on counts whose answers are known: hand-computed or published."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import special

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.experiments import stats
from rasa_personalize.experiments.stats import (
    EXACT_BAYES_MAX_TERMS,
    ArmCounts,
    ExperimentInputError,
    SequentialDecision,
    Verdict,
    always_valid_p_value,
    analyze,
    newcombe_interval,
    newcombe_p_value,
    prob_beat_control,
    sequential_decision,
    srm_p_value,
    thompson_weights,
    wilson_interval,
)

Z95 = 1.959963984540054


def test_wilson_interval_of_100_in_1000() -> None:
    """Hand-computed: (x + z²/2 ± z sqrt(x(n-x)/n + z²/4)) / (n + z²) = [0.08291, 0.12015]."""
    low, high = wilson_interval(100, 1000, z=Z95)
    assert float(low) == pytest.approx(0.082909, abs=1e-6)
    assert float(high) == pytest.approx(0.120152, abs=1e-6)


def test_wilson_interval_is_exact_at_the_edges() -> None:
    """No conversions starts at 0 and all conversions ends at 1, not a rounding error away."""
    low, high = wilson_interval([0, 10], [10, 10], z=Z95)
    assert low[0] == 0.0
    assert high[1] == 1.0
    assert high[0] == pytest.approx(0.2775, abs=1e-4)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Table II, method 10: the published 95% limits, to four places
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0000)),
        ((10, 10, 0, 10), (0.6075, 1.0000)),
    ],
)
def test_newcombe_interval_matches_the_published_table(
    counts: tuple[int, int, int, int], expected: tuple[float, float]
) -> None:
    """The uplift interval reproduces Newcombe's own worked examples."""
    low, high = newcombe_interval(*counts, z=Z95)
    assert (round(float(low), 4), round(float(high), 4)) == expected


@pytest.mark.parametrize(
    "counts",
    [
        # significant: the interval is well above zero
        (56, 70, 48, 80),
        # not significant
        (130, 1000, 120, 1000),
        # the arm does worse
        (40, 1000, 70, 1000),
        # no conversions at all in control
        (5, 56, 0, 29),
    ],
)
def test_the_p_value_is_where_the_interval_touches_zero(counts: tuple[int, int, int, int]) -> None:
    """At level p the interval's edge nearest zero sits on zero: p < alpha iff it excludes 0."""
    p_value = float(newcombe_p_value(*counts)[()])
    assert 0 < p_value < 1
    z = float(special.ndtri(1 - p_value / 2))
    low, high = newcombe_interval(*counts, z=z)
    nearest = float(low) if counts[0] / counts[1] > counts[2] / counts[3] else float(high)
    assert nearest == pytest.approx(0.0, abs=1e-9)


def test_the_p_value_is_close_to_the_pooled_z_test_on_large_samples() -> None:
    """At 10,000 per arm the score-based p-value and the z-test agree to a few percent."""
    x1, n1, x0, n0 = 560, 10_000, 500, 10_000
    pooled = (x1 + x0) / (n1 + n0)
    z = (x1 / n1 - x0 / n0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    z_test = math.erfc(z / math.sqrt(2))
    assert float(newcombe_p_value(x1, n1, x0, n0)[()]) == pytest.approx(z_test, rel=0.05)


@pytest.mark.parametrize(
    "counts",
    [
        # no exposures
        (0, 0, 1, 10),
        # more conversions than exposures
        (5, 4, 1, 10),
        # not a number
        (math.nan, 10, 1, 10),
    ],
)
def test_the_array_functions_refuse_impossible_counts(counts: tuple[float, ...]) -> None:
    """The vectorized functions check their counts too."""
    with pytest.raises(ExperimentInputError, match="0 <= conversions <= exposures"):
        newcombe_p_value(*counts)
    with pytest.raises(ExperimentInputError, match="0 <= conversions <= exposures"):
        always_valid_p_value(*counts)


def test_equal_rates_have_p_value_one() -> None:
    """No difference, including none converting and all converting, gives p = 1."""
    p_values = newcombe_p_value([0, 10, 50], [10, 10, 100], [0, 20, 100], [20, 20, 200])
    assert p_values.tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Beta(2,1) vs Beta(1,1): integral of 2x * x over [0, 1] = 2/3
        ((1, 1, 0, 0), 2 / 3),
        # Beta(1,2) vs Beta(2,1): integral of 2(1-x) x² = 1/6
        ((0, 1, 1, 1), 1 / 6),
        # no data at all: the two priors are the same
        ((0, 0, 0, 0), 0.5),
        # the same data: a tie by symmetry
        ((30, 100, 30, 100), 0.5),
    ],
)
def test_prob_beat_control_known_values(counts: tuple[int, int, int, int], expected: float) -> None:
    """Hand-integrated probabilities that one Beta posterior exceeds another."""
    assert prob_beat_control(*counts) == pytest.approx(expected, abs=1e-12)


def test_prob_beat_control_agrees_with_monte_carlo_and_is_complementary() -> None:
    """The closed form matches a million posterior draws, and P(a > b) + P(b > a) = 1."""
    rng = np.random.default_rng(5)
    arm = rng.beta(1 + 48, 1 + 1000 - 48, 1_000_000)
    control = rng.beta(1 + 40, 1 + 1000 - 40, 1_000_000)
    closed_form = prob_beat_control(48, 1000, 40, 1000)
    assert closed_form == pytest.approx(float((arm > control).mean()), abs=0.002)
    assert closed_form + prob_beat_control(40, 1000, 48, 1000) == pytest.approx(1.0, abs=1e-12)
    # the sum runs over the smaller side; both orders must give the same answer
    assert prob_beat_control(5, 100, 80, 1000) == pytest.approx(
        1 - prob_beat_control(80, 1000, 5, 100), abs=1e-12
    )


def test_prob_beat_control_switches_to_the_normal_approximation_smoothly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Just past the exact-sum limit, the normal approximation is within 1e-5 of the sum."""
    cap = EXACT_BAYES_MAX_TERMS
    counts = (cap + 100, 20 * cap, cap + 1, 20 * cap)  # about 0.7 sd apart
    approximated = prob_beat_control(*counts)
    monkeypatch.setattr(stats, "EXACT_BAYES_MAX_TERMS", 10 * cap)
    exact = prob_beat_control(*counts)
    assert 0.6 < exact < 0.9
    assert approximated != exact  # two methods were used
    assert approximated == pytest.approx(exact, abs=1e-5)


def test_always_valid_p_value_hand_computed() -> None:
    """300/5000 vs 250/5000 at the planned size: V = p(1-p)(2/n), r = rho²n, p = 0.3532."""
    pooled = 550 / 10_000
    z2 = 0.01**2 / (pooled * (1 - pooled) * 2 / 5000)
    c = 2 * math.log(20) + math.log(1 + 2 * math.log(20))  # rho² * 5000
    expected = math.sqrt(1 + c) * math.exp(-c * z2 / (2 * (1 + c)))
    assert expected == pytest.approx(0.3532, abs=1e-4)
    p_value = always_valid_p_value(300, 5000, 250, 5000, alpha=0.05, planned_exposures=5000)
    assert float(p_value) == pytest.approx(expected, rel=1e-12)


def test_always_valid_p_value_is_larger_than_the_fixed_horizon_one() -> None:
    """The price of peeking freely: at z = 2.2 the fixed test says 0.03, the always-valid 0.35."""
    fixed = float(newcombe_p_value(300, 5000, 250, 5000)[()])
    always = float(always_valid_p_value(300, 5000, 250, 5000)[()])
    assert fixed < 0.05 < always


def test_always_valid_p_value_without_any_variance_is_one() -> None:
    """Nobody (or everybody) converted in both arms: no evidence, p = 1, no division by 0."""
    assert always_valid_p_value([0, 10], [10, 10], [0, 20], [20, 20]).tolist() == [1.0, 1.0]


def test_the_sequential_verdict_is_taken_at_the_first_crossing() -> None:
    """Once a look crosses, the verdict stands even if later looks drift back."""
    looks = [
        (1000, 50, 1000, 50),  # nothing yet
        (10_000, 700, 10_000, 500),  # far above control: crosses
        (20_000, 1060, 20_000, 1000),  # drifted back towards control
    ]
    decision = sequential_decision(looks, alpha=0.05)
    assert decision.verdict is Verdict.BETTER
    assert decision.decided_at == 1
    last_alone = sequential_decision(looks[-1:], alpha=0.05)
    assert last_alone.verdict is Verdict.INCONCLUSIVE
    assert last_alone.decided_at is None
    assert decision.always_valid_p_value < 0.05 < last_alone.always_valid_p_value


def test_a_worse_arm_gets_the_worse_verdict_and_empty_looks_carry_nothing() -> None:
    """The sign of the uplift gives the direction; looks with an empty arm are skipped."""
    worse = sequential_decision([(10_000, 400, 10_000, 600)], alpha=0.05)
    assert worse.verdict is Verdict.WORSE
    assert worse.decided_at == 0
    assert sequential_decision([(0, 0, 100, 5), (100, 5, 0, 0)], alpha=0.05) == (
        SequentialDecision(1.0, Verdict.INCONCLUSIVE, None)
    )
    # an empty look before the crossing one does not shift the index
    assert (
        sequential_decision([(0, 0, 0, 0), (10_000, 400, 10_000, 600)], alpha=0.05).decided_at == 1
    )


def test_sequential_decision_checks_its_looks() -> None:
    """A negative count in a look is an error, not a look silently skipped."""
    with pytest.raises(ExperimentInputError, match="look 2, control: counts must not be negative"):
        sequential_decision([(10, 1, 10, 1), (10, 1, -10, 0)], alpha=0.05)


def test_srm_p_value_hand_computed() -> None:
    """10,500 / 9,500 against 1:1: chi² = 2 * 500² / 10,000 = 50, p = erfc(5) = 1.5e-12."""
    assert srm_p_value([10_500, 9_500], [1, 1]) == pytest.approx(math.erfc(5), rel=1e-9)
    assert srm_p_value([10_100, 9_900], [50, 50]) == pytest.approx(math.erfc(1), rel=1e-9)
    # 2:1:1 weights, exposures exactly as asked
    assert srm_p_value([2000, 1000, 1000], [2, 1, 1]) == pytest.approx(1.0)


def test_srm_needs_two_arms_and_enough_exposures() -> None:
    """One arm, or fewer than 5 expected exposures in an arm, gives no SRM answer."""
    assert srm_p_value([100], [1]) is None
    assert srm_p_value([3, 4], [1, 1]) is None
    assert srm_p_value([0, 0], [1, 1]) is None


def two_arms(**changes: int) -> list[ArmCounts]:
    counts = {"control_n": 1000, "control_x": 100, "arm_n": 1000, "arm_x": 130} | changes
    return [
        ArmCounts("control", 1, counts["control_n"], counts["control_x"], 500.0),
        ArmCounts("b", 1, counts["arm_n"], counts["arm_x"], 780.0),
    ]


def test_analyze_two_arms() -> None:
    """Rates, uplift, interval, p-value and probability are those of the functions above."""
    analysis = analyze(two_arms(), "control")
    control, arm = analysis.arms
    assert control.name == "control"
    assert control.rate == 0.1
    assert control.revenue_per_exposed == 0.5
    assert control.uplift is None
    assert control.p_value is None
    assert control.verdict is None
    assert arm.rate == 0.13
    assert arm.revenue_per_exposed == 0.78
    assert arm.uplift == pytest.approx(0.03)
    assert arm.relative_uplift == pytest.approx(0.3)
    low, high = newcombe_interval(130, 1000, 100, 1000, z=Z95)
    assert (arm.ci_low, arm.ci_high) == (float(low), float(high))
    assert arm.ci_low is not None
    assert arm.ci_low > 0
    assert arm.p_value == float(newcombe_p_value(130, 1000, 100, 1000)[()])
    assert arm.p_value is not None
    assert arm.p_value < 0.05
    assert arm.prob_beat_control == prob_beat_control(130, 1000, 100, 1000)
    rate_low, rate_high = wilson_interval(130, 1000, z=Z95)
    assert (arm.rate_ci_low, arm.rate_ci_high) == (float(rate_low), float(rate_high))
    # significant at a single look, but not yet under continuous monitoring
    assert arm.always_valid_p_value is not None
    assert arm.always_valid_p_value > 0.05
    assert analysis.decision == {"b": Verdict.INCONCLUSIVE}
    assert analysis.srm_p_value == 1.0
    assert analysis.srm_flagged is False


def test_alpha_sets_the_interval_level_and_the_decision_threshold() -> None:
    """At alpha 0.2 the interval is the 80% one; with 3 treatment arms each verdict uses alpha/3."""
    arms = [ArmCounts(name, 1, 1000, 100) for name in ("control", "b", "c", "d")]
    analysis = analyze(arms, "control", alpha=0.2)
    low, _ = newcombe_interval(100, 1000, 100, 1000, z=1.2815515655446004)
    assert analysis.arm("b").ci_low == pytest.approx(float(low))
    assert analysis.decision_alpha == pytest.approx(0.2 / 3)


def test_history_lets_an_early_crossing_decide() -> None:
    """A look in the history that crossed gives the verdict; without it the same counts do not."""
    arms = [ArmCounts("control", 1, 20_000, 1000), ArmCounts("b", 1, 20_000, 1060)]
    assert analyze(arms, "control").decision["b"] is Verdict.INCONCLUSIVE
    history = [
        {"control": (1000, 50), "b": (1000, 50)},
        {"control": (10_000, 500), "b": (10_000, 700)},
    ]
    analysis = analyze(arms, "control", history=history)
    assert analysis.decision["b"] is Verdict.BETTER
    assert analysis.arm("b").verdict is Verdict.BETTER
    expected = sequential_decision(
        [(1000, 50, 1000, 50), (10_000, 700, 10_000, 500), (20_000, 1060, 20_000, 1000)],
        alpha=0.05,
    )
    assert analysis.arm("b").always_valid_p_value == expected.always_valid_p_value
    assert expected.decided_at == 1


@pytest.mark.parametrize(
    ("changes", "rate"),
    [
        # the arm was never shown
        ({"arm_n": 0, "arm_x": 0}, None),
        # control was never shown
        ({"control_n": 0, "control_x": 0}, 0.13),
    ],
)
def test_an_empty_arm_gets_no_comparison(changes: dict[str, int], rate: float | None) -> None:
    """With no exposures on either side, nothing is claimed and nothing crashes."""
    analysis = analyze(two_arms(**changes), "control")
    arm = analysis.arm("b")
    assert arm.rate == rate
    assert arm.uplift is None
    assert arm.ci_low is None
    assert arm.p_value is None
    assert arm.prob_beat_control is None
    assert arm.always_valid_p_value == 1.0
    assert arm.verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("converted", "expected_rate"),
    [
        # nobody converted anywhere
        (0, 0.0),
        # everybody converted everywhere
        (500, 1.0),
    ],
)
def test_all_or_no_conversions(converted: int, expected_rate: float) -> None:
    """Equal extreme rates: uplift 0 in an interval around it, p = 1, an even chance."""
    arms = [ArmCounts("control", 1, 500, converted), ArmCounts("b", 1, 500, converted)]
    arm = analyze(arms, "control").arm("b")
    assert arm.rate == expected_rate
    assert arm.uplift == 0.0
    assert arm.ci_low is not None
    assert arm.ci_high is not None
    assert arm.ci_low < 0 < arm.ci_high
    assert arm.p_value == 1.0
    assert arm.prob_beat_control == pytest.approx(0.5)
    assert arm.always_valid_p_value == 1.0
    # a control that never converts has no relative uplift
    assert arm.relative_uplift == (None if converted == 0 else 0.0)


def test_a_single_arm_is_described_without_comparisons() -> None:
    """One arm: its rate, no SRM test, no decision."""
    analysis = analyze([ArmCounts("only", 1, 200, 20)], "only")
    assert [arm.rate for arm in analysis.arms] == [0.1]
    assert analysis.srm_p_value is None
    assert analysis.srm_flagged is False
    assert dict(analysis.decision) == {}


def test_a_mismatched_split_is_flagged() -> None:
    """10,500 / 9,500 exposures for a 50/50 split: p = 1.5e-12 < 0.001."""
    arms = [ArmCounts("control", 50, 10_500, 500), ArmCounts("b", 50, 9_500, 480)]
    analysis = analyze(arms, "control")
    assert analysis.srm_p_value == pytest.approx(math.erfc(5), rel=1e-9)
    assert analysis.srm_flagged is True
    assert [arm.expected_share for arm in analysis.arms] == [0.5, 0.5]


@pytest.mark.parametrize(
    ("arms", "control", "message"),
    [
        # the control is not an arm: the message names it
        ([ArmCounts("a", 1, 10, 1)], "control", "control arm 'control' is not one of the arms"),
        # negative counts
        ([ArmCounts("a", 1, -1, 0)], "a", "arm 'a': counts must not be negative"),
        ([ArmCounts("a", 1, 10, -2)], "a", "arm 'a': counts must not be negative"),
        # more conversions than exposures
        ([ArmCounts("a", 1, 10, 11)], "a", "arm 'a': 11 conversions exceed 10 exposures"),
        # a count that is not an integer
        ([ArmCounts("a", 1, 10.5, 1)], "a", "must be integers"),  # type: ignore[arg-type]
        # no arms
        ([], "a", "at least one arm"),
        # the same name twice
        ([ArmCounts("a", 1, 10, 1), ArmCounts("a", 1, 10, 1)], "a", "arm 'a' appears twice"),
        # weights must be positive
        ([ArmCounts("a", 0, 10, 1)], "a", "arm 'a': weight must be positive"),
        # revenue must be a number >= 0
        ([ArmCounts("a", 1, 10, 1, math.nan)], "a", "revenue must be a number >= 0"),
    ],
)
def test_invalid_input_is_a_value_error_that_says_what(
    arms: list[ArmCounts], control: str, message: str
) -> None:
    """Bad counts raise ExperimentInputError, which is both a ValueError and ours."""
    with pytest.raises(ExperimentInputError, match=message) as raised:
        analyze(arms, control)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, InvalidInputError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # alpha is a probability strictly between 0 and 1
        ({"alpha": 0.0}, "alpha must be between 0 and 1"),
        ({"alpha": 1.5}, "alpha must be between 0 and 1"),
        # the sequential tuning needs a positive size
        ({"sequential_planned_exposures": 0}, "at least 1"),
        # a history look with a bad count names its position and arm
        ({"history": [{"b": (5, 1)}, {"b": (5, 9)}]}, "history look 2, arm 'b': 9 conversions"),
        ({"history": [{"b": (5,)}]}, "history look 1, arm 'b': needs"),
    ],
)
def test_invalid_options_say_what(options: dict[str, object], message: str) -> None:
    """Parameters out of range are refused with a message naming them."""
    with pytest.raises(ExperimentInputError, match=message):
        analyze(two_arms(), "control", **options)  # type: ignore[arg-type]


def test_as_json_has_the_stable_keys_first_and_nulls_for_control() -> None:
    """The documented keys, in order, then extras; valid JSON (no NaN)."""
    data = analyze(two_arms(), "control").as_json("greeting")
    assert list(data)[:3] == ["experiment", "srm_p_value", "arms"]
    assert data["experiment"] == "greeting"
    stable = ["name", "exposures", "conversions", "rate", "uplift", "ci_low", "ci_high"]
    stable += ["p_value", "prob_beat_control"]
    for entry in data["arms"]:
        assert list(entry)[: len(stable)] == stable
    control, arm = data["arms"]
    assert [control[key] for key in ("uplift", "ci_low", "ci_high", "p_value")] == [None] * 4
    assert control["decision"] is None
    assert arm["decision"] == "inconclusive"
    assert arm["uplift"] == pytest.approx(0.03)
    json.dumps(data, allow_nan=False)


def test_thompson_weights_follow_the_evidence_and_respect_the_floor() -> None:
    """A clearly better arm takes nearly everything; the others keep exactly the floor."""
    arms = [
        ArmCounts("control", 1, 5000, 250),
        ArmCounts("b", 1, 5000, 400),
        ArmCounts("c", 1, 5000, 240),
    ]
    weights = thompson_weights(arms, seed=1, min_share=0.05)
    assert list(weights) == ["control", "b", "c"]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["b"] == pytest.approx(0.9)
    assert weights["control"] == pytest.approx(0.05)
    assert weights["c"] == pytest.approx(0.05)


def test_thompson_weights_are_even_without_evidence_and_repeatable() -> None:
    """Equal data: about 1/k each; the same seed gives the same weights."""
    arms = [ArmCounts(name, 1, 100, 10) for name in ("a", "b", "c", "d")]
    weights = thompson_weights(arms, seed=3)
    assert all(value == pytest.approx(0.25, abs=0.02) for value in weights.values())
    assert thompson_weights(arms, seed=3) == weights
    assert thompson_weights(arms[:1], seed=3) == {"a": 1.0}


def test_thompson_weight_of_two_arms_is_the_probability_of_beating() -> None:
    """With two arms and no floor, P(best) is the closed-form probability of beating control."""
    arms = [ArmCounts("control", 1, 1000, 40), ArmCounts("b", 1, 1000, 48)]
    weights = thompson_weights(arms, draws=200_000, seed=9, min_share=0.0)
    assert weights["b"] == pytest.approx(prob_beat_control(48, 1000, 40, 1000), abs=0.005)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # no draws
        ({"draws": 0}, "draws must be between 1 and 1,000,000"),
        # too many draws for memory
        ({"draws": 2_000_000}, "draws must be between 1 and 1,000,000"),
        # the floors cannot all be given
        ({"min_share": 0.6}, "min_share 0.6 is impossible for 2 arms"),
        ({"min_share": -0.1}, "is impossible"),
    ],
)
def test_thompson_weights_refuse_impossible_options(
    options: dict[str, float], message: str
) -> None:
    """Out-of-range draws and floors are refused with a clear message."""
    with pytest.raises(ExperimentInputError, match=message):
        thompson_weights(two_arms(), **options)  # type: ignore[arg-type]
