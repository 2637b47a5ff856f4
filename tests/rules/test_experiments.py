"""Experiments in the rule file: validation, stable proportional assignment, what arms change."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import pytest

from rasa_personalize.rules import Facts, evaluate, parse_rules
from rasa_personalize.rules.experiments import (
    OFFER_OUTPUTS,
    RECOMMENDATION_OUTPUTS,
    SLOT_OUTPUTS,
    Allocation,
    assign,
    position,
)
from rasa_personalize.rules.loader import validate

SECRET = b"experiment-test-secret"
# The example, under the demo's bargain-hunter rule.
RULES = """\
rules:
  - name: bargain hunters
    when: {segment: price_sensitive}
    then: {offer_type: discount, discount_pct: 15, recommendation_strategy: cheapest_first}
experiments:
  - name: bigger_discount
    status: running            # draft | running | stopped
    when: {segment: price_sensitive}      # who is eligible: the rules' condition language
    arms:
      - {name: control, weight: 50}
      - {name: twenty, weight: 50, then: {discount_pct: 20}}
    goal: purchase             # accept | chat_click | cart | purchase
    window_days: 7
  - name: greeting_words
    status: running
    arms:
      - {name: control, weight: 80}
      - {name: short, weight: 20, then: {response_variant: short}}
    goal: chat_click
    window_days: 3
"""
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
BARGAIN = Facts(segment="price_sensitive")
LOYAL = Facts(segment="loyal")


def keys(count: int) -> list[str]:
    return [f"{index:064x}" for index in range(count)]


def test_the_example_compiles_with_its_arms_goal_and_window() -> None:
    (discount, words) = parse_rules(RULES, "p.yml").experiments
    assert (discount.name, discount.status, discount.goal, discount.window_days) == (
        "bigger_discount", "running", "purchase", 7,
    )  # fmt: skip
    assert [(arm.name, arm.weight, dict(arm.then)) for arm in discount.arms] == [
        ("control", 50.0, {}),
        ("twenty", 50.0, {"discount_pct": 20}),
    ]
    assert discount.control.name == "control"
    assert discount.varied == {"discount_pct", "offer_type"}
    assert words.varied == {"response_variant"}
    # Without 'when' everyone is eligible.
    assert words.matches(LOYAL)
    assert words.matches(BARGAIN)


def test_assignment_is_stable_and_follows_the_weights() -> None:
    """The same key always gets the same arm; 10,000 keys split as the weights say."""
    discount, words = parse_rules(RULES, "p.yml").experiments
    customers = keys(10_000)
    first = [discount.arm_of(SECRET, key).name for key in customers]
    assert first == [discount.arm_of(SECRET, key).name for key in customers]
    assert Counter(first)["twenty"] / 10_000 == pytest.approx(0.5, abs=0.02)
    shares = Counter(words.arm_of(SECRET, key).name for key in customers)
    assert shares["short"] / 10_000 == pytest.approx(0.2, abs=0.015)
    # Another secret gives another split, so nobody without it can predict arms.
    other = [discount.arm_of(b"another secret", key).name for key in customers]
    assert 0.4 < sum(a != b for a, b in zip(first, other, strict=True)) / 10_000 < 0.6


def test_arms_of_two_experiments_are_independent() -> None:
    """Being in 'twenty' says nothing about the arm of another experiment."""
    customers = keys(20_000)
    pairs = Counter(
        (position(SECRET, key, "a") < 0.5, position(SECRET, key, "b") < 0.5) for key in customers
    )
    for cell in ((True, True), (True, False), (False, True), (False, False)):
        assert pairs[cell] / 20_000 == pytest.approx(0.25, abs=0.015)


def test_an_arm_overrides_the_deciding_rules_outputs() -> None:
    """A discount on its own is a discount offer of that size; the rest of the rule stays."""
    rules = parse_rules(RULES, "p.yml")
    decided = evaluate(rules, BARGAIN)
    by_arm = {}
    for key in keys(200):
        decision = assign(rules.experiments, BARGAIN, decided, SECRET, key)
        by_arm[decision.arm] = decision
    control, twenty = by_arm["control"], by_arm["twenty"]
    assert (control.offer_type, control.discount_pct) == ("discount", 15)
    assert (twenty.offer_type, twenty.discount_pct) == ("discount", 20)
    for decision in (control, twenty):
        assert decision.experiment == "bigger_discount"
        assert decision.rule == "bargain hunters"
        assert decision.recommendation_strategy == "cheapest_first"


def test_the_first_eligible_running_experiment_applies_alone() -> None:
    """A bargain hunter is in the discount test only; a loyal customer in the wording test."""
    rules = parse_rules(RULES, "p.yml")
    for key in keys(100):
        bargain = assign(rules.experiments, BARGAIN, evaluate(rules, BARGAIN), SECRET, key)
        assert bargain.experiment == "bigger_discount"
        assert bargain.response_variant is None
    variants = {
        assign(rules.experiments, LOYAL, evaluate(rules, LOYAL), SECRET, key).response_variant
        for key in keys(100)
    }
    assert variants == {None, "short"}


@pytest.mark.parametrize("status", ["draft", "stopped"])
def test_only_running_experiments_change_answers(status: str) -> None:
    rules = parse_rules(RULES.replace("status: running ", f"status: {status}"), "p.yml")
    decided = evaluate(rules, BARGAIN)
    for key in keys(50):
        decision = assign(rules.experiments[:1], BARGAIN, decided, SECRET, key)
        assert decision == decided


def test_excluded_outputs_leave_the_customer_out() -> None:
    """Without marketing consent, no experiment on the offer takes the customer."""
    rules = parse_rules(RULES, "p.yml")
    decided = evaluate(rules, BARGAIN)
    for key in keys(50):
        decision = assign(rules.experiments, BARGAIN, decided, SECRET, key, excluded=OFFER_OUTPUTS)
        # The wording experiment has no 'when': it takes them instead.
        assert decision.experiment == "greeting_words"
        assert (decision.offer_type, decision.discount_pct) == ("discount", 15)


def test_which_actions_expose() -> None:
    discount, words = parse_rules(RULES, "p.yml").experiments
    assert discount.used_by(SLOT_OUTPUTS)
    assert not discount.used_by(RECOMMENDATION_OUTPUTS)
    assert words.used_by(SLOT_OUTPUTS)


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        (
            "  - name: e\n    status: runing\n    arms:\n      - {name: a, weight: 1}\n"
            "      - {name: b, weight: 1, then: {offer_type: bundle}}\n    goal: cart\n",
            "p.yml:4: experiment 'e': unknown status 'runing' (did you mean 'running'?)",
        ),
        (
            "  - name: e\n    status: running\n    arms:\n      - {name: a, weight: 0}\n"
            "      - {name: b, weight: 1, then: {offer_type: bundle}}\n    goal: cart\n",
            "p.yml:6: experiment 'e': 'weight' must be a number above 0, got 0",
        ),
        (
            "  - name: e\n    status: running\n    arms:\n      - {name: a, weight: 1}\n"
            "      - {name: b, weight: 1, then: {colour: red}}\n    goal: cart\n",
            "p.yml:7: experiment 'e': unknown output 'colour'",
        ),
        (
            "  - name: e\n    status: running\n    arms:\n      - {name: a, weight: 1}\n"
            "      - {name: a, weight: 1, then: {offer_type: bundle}}\n    goal: cart\n",
            "p.yml:7: experiment 'e': duplicate arm name 'a'",
        ),
        (
            "  - name: e\n    status: running\n    arms:\n      - {name: a, weight: 1}\n"
            "      - {name: b, weight: 1}\n    goal: cart\n",
            "p.yml:6: experiment 'e': no arm sets anything",
        ),
        (
            "  - name: e\n    status: running\n    arms:\n      - {name: a, weight: 1}\n"
            "      - {name: b, weight: 1, then: {offer_type: bundle}}\n    goal: buy\n",
            "p.yml:8: experiment 'e': unknown goal 'buy'; it is one of accept, chat_click",
        ),
        # An arm's lone discount of 0 (a discount offer of nothing).
        (
            "  - name: e\n    status: running\n    arms:\n      - {name: a, weight: 1}\n"
            "      - {name: b, weight: 1, then: {discount_pct: 0}}\n    goal: cart\n",
            "p.yml:7: experiment 'e': offer_type 'discount' needs a discount_pct above 0",
        ),
        (
            "  - name: e\n    status: running\n    when: {segmnt: loyal}\n    arms:\n"
            "      - {name: a, weight: 1}\n      - {name: b, weight: 1, then: {max_price: 50}}\n"
            "    goal: cart\n    window_days: 0\n",
            "p.yml:5: experiment 'e': unknown field 'segmnt' (did you mean 'segment'?)",
        ),
    ],
)
def test_mistakes_name_file_line_and_experiment(experiment: str, message: str) -> None:
    rules, problems = validate(f"rules: []\nexperiments:\n{experiment}", "p.yml")
    assert rules is None
    assert any(str(problem).startswith(message) for problem in problems), problems


# --- adaptive allocation ---------------------------------------------------------------

TWO_ARMS = (
    "  - name: e\n    status: running\n    arms:\n      - {name: a, weight: 1}\n"
    "      - {name: b, weight: 1, then: {offer_type: bundle}}\n    goal: cart\n"
)  # the experiment's lines 3 to 8; what a case adds starts on line 9


def test_allocation_is_fixed_by_default_and_thompson_has_its_defaults() -> None:
    (fixed,) = parse_rules(f"rules: []\nexperiments:\n{TWO_ARMS}", "p.yml").experiments
    assert (fixed.allocation, fixed.adaptive) == ("fixed", False)
    text = f"rules: []\nexperiments:\n{TWO_ARMS}    allocation: Thompson\n"
    (adaptive,) = parse_rules(text, "p.yml").experiments
    assert (adaptive.allocation, adaptive.adaptive) == ("thompson", True)
    assert (adaptive.min_exposures_per_arm, adaptive.refresh_minutes) == (100, 5)
    text += "    min_exposures_per_arm: 0\n    refresh_minutes: 1440\n"
    (tuned,) = parse_rules(text, "p.yml").experiments
    assert (tuned.min_exposures_per_arm, tuned.refresh_minutes) == (0, 1440)


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        # A misspelt allocation.
        (
            f"{TWO_ARMS}    allocation: thomson\n",
            "p.yml:9: experiment 'e': unknown allocation 'thomson' (did you mean 'thompson'?); "
            "it is one of fixed, thompson",
        ),
        # The adaptive settings without adaptive allocation: a mistake, not a no-op.
        (
            f"{TWO_ARMS}    refresh_minutes: 10\n",
            "p.yml:9: experiment 'e': 'refresh_minutes' is only for 'allocation: thompson'",
        ),
        (
            f"{TWO_ARMS}    allocation: fixed\n    min_exposures_per_arm: 50\n",
            "p.yml:10: experiment 'e': 'min_exposures_per_arm' is only for 'allocation: thompson'",
        ),
        # Out of range, or not a whole number.
        (
            f"{TWO_ARMS}    allocation: thompson\n    refresh_minutes: 0\n",
            "p.yml:10: experiment 'e': 'refresh_minutes' must be a whole number from 1 to 1,440, "
            "got 0",
        ),
        (
            f"{TWO_ARMS}    allocation: thompson\n    refresh_minutes: 2.5\n",
            "p.yml:10: experiment 'e': 'refresh_minutes' must be a whole number from 1 to 1,440",
        ),
        (
            f"{TWO_ARMS}    allocation: thompson\n    min_exposures_per_arm: -1\n",
            "p.yml:10: experiment 'e': 'min_exposures_per_arm' must be a whole number from 0 to "
            "1,000,000, got -1",
        ),
        # One arm: nothing to allocate between.
        (
            "  - name: e\n    status: running\n    arms:\n"
            "      - {name: b, weight: 1, then: {offer_type: bundle}}\n    goal: cart\n"
            "    allocation: thompson\n",
            "p.yml:6: experiment 'e': 'arms' must be a list of at least two arms",
        ),
        # Eleven arms: with a 5% floor each, adapting would have nothing left to move.
        (
            "  - name: e\n    status: running\n    arms:\n"
            + "".join(
                f"      - {{name: a{n}, weight: 1, then: {{discount_pct: {n + 1}}}}}\n"
                for n in range(11)
            )
            + "    goal: cart\n    allocation: thompson\n",
            "p.yml:6: experiment 'e': 'allocation: thompson' takes at most 10 arms (each keeps "
            "5% of the traffic), got 11",
        ),
    ],
)
def test_allocation_mistakes_name_file_line_and_experiment(experiment: str, message: str) -> None:
    rules, problems = validate(f"rules: []\nexperiments:\n{experiment}", "p.yml")
    assert rules is None
    assert any(str(problem).startswith(message) for problem in problems), problems


def test_an_allocation_cuts_the_line_and_a_pinned_arm_wins() -> None:
    """10,000 keys split 30/70 as the allocation says (within 2 points); a pinned customer
    gets their arm whatever the weights; a fixed experiment ignores both."""
    text = RULES.replace("    window_days: 7\n", "    window_days: 7\n    allocation: thompson\n")
    rules = parse_rules(text, "p.yml")
    discount = rules.experiments[0]
    allocation = Allocation(("control", "twenty"), (0.3, 0.7), True, NOW, (500, 500), (20, 40))
    decided = evaluate(rules, BARGAIN)
    customers = keys(10_000)
    arms = [
        assign(
            rules.experiments, BARGAIN, decided, SECRET, key,
            allocations={"bigger_discount": allocation},
        ).arm
        for key in customers
    ]  # fmt: skip
    assert Counter(arms)["twenty"] / 10_000 == pytest.approx(0.7, abs=0.02)
    # Where the configured 50/50 and the 30/70 lines agree, the arm is the same.
    configured = [discount.arm_of(SECRET, key).name for key in customers]
    moved = sum(a != b for a, b in zip(arms, configured, strict=True)) / 10_000
    assert moved == pytest.approx(0.2, abs=0.02)  # only the stretch 0.3 to 0.5 moves
    everyone_control = {
        assign(
            rules.experiments, BARGAIN, decided, SECRET, key,
            allocations={"bigger_discount": allocation}, pinned={"bigger_discount": "control"},
        ).arm
        for key in customers[:500]
    }  # fmt: skip
    assert everyone_control == {"control"}
    # An allocation for other arms (the file changed since) falls back to the weights.
    stale = Allocation(("control", "old"), (0.01, 0.99), True, NOW, (1, 1), (0, 0))
    assert [
        assign(
            rules.experiments, BARGAIN, decided, SECRET, key,
            allocations={"bigger_discount": stale},
        ).arm
        for key in customers[:1000]
    ] == configured[:1000]  # fmt: skip
    # The fixed experiment of the same file takes neither.
    words = rules.experiments[1]
    for key in customers[:200]:
        decision = assign(
            (words,), LOYAL, evaluate(rules, LOYAL), SECRET, key,
            allocations={"greeting_words": allocation}, pinned={"greeting_words": "control"},
        )  # fmt: skip
        assert decision.arm == words.arm_of(SECRET, key).name
