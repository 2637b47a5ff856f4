"""Next-best offer in the rule file: validation of `offer_type: best`, and the choice among
its candidates (expected value, fallback, exploration) with its explanation."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from textwrap import dedent, indent

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rasa_personalize.rules import Decision, Facts, evaluate, explain, parse_rules
from rasa_personalize.rules.experiments import ExperimentUnit, apply_arm
from rasa_personalize.rules.loader import validate
from rasa_personalize.rules.offers import (
    BestOffer,
    OfferCandidate,
    OfferEstimate,
    choose_offer,
    explain_offer_choice,
    explore_position,
    offer_label,
    pick,
)
from rasa_personalize.rules.ruleset import resolve_outputs

RULES = """\
defaults: {offer_type: none}
rules:
  - name: win back
    when: {segment: at_risk}
    then:
      offer_type: best
      max_price: 80
      offers:
        - {offer_type: discount, discount_pct: 10, value: 6}
        - {offer_type: free_shipping, value: 4}
        - {offer_type: bundle, value: 5}
  - name: loyal
    when: {segment: loyal}
    then: {offer_type: exclusive_access}
"""
AT_RISK = Facts(segment="at_risk")
DISCOUNT = OfferCandidate("discount", 10.0, 6.0)
SHIPPING = OfferCandidate("free_shipping", 0.0, 4.0)
BUNDLE = OfferCandidate("bundle", 0.0, 5.0)
THREE = BestOffer((DISCOUNT, SHIPPING, BUNDLE))
UNIT = ExperimentUnit("c" * 64, b"offer-test-secret")


@dataclass(frozen=True)
class FakeModel:
    """An acceptance model with given estimates per (offer, segment)."""

    estimates: dict[tuple[str, str], OfferEstimate] = field(default_factory=dict)
    min_exposures: int = 30
    version: str = "v-test"

    def estimate(self, offer: str, segment: str) -> OfferEstimate:
        return self.estimates.get((offer, segment), OfferEstimate(0, 0, 0.05))


def model_of(**rates: tuple[int, float]) -> FakeModel:
    """Estimates in segment at_risk: label -> (exposures, p)."""
    return FakeModel(
        {
            (label, "at_risk"): OfferEstimate(exposures, round(exposures * p), p)
            for label, (exposures, p) in rates.items()
        }
    )


def messages(text: str) -> list[str]:
    rules, problems = validate(dedent(text).lstrip("\n"), "p.yml")
    assert rules is None
    return [str(problem) for problem in problems]


def rule_with(then: str) -> str:
    """A file whose one rule has ``then`` (indented under it, from line 4 on)."""
    return "rules:\n  - name: r\n    when: {segment: at_risk}\n    then:\n" + indent(
        dedent(then), " " * 6
    )


# -- the rule file ---------------------------------------------------------------------------


def test_a_best_rule_compiles_to_its_candidates_with_the_first_as_the_offer() -> None:
    """The decision holds the fallback offer (never 'best') and every candidate."""
    rules = parse_rules(RULES)
    assert rules.chooses_offers
    decision = evaluate(rules, AT_RISK)
    assert (decision.offer_type, decision.discount_pct, decision.max_price) == (
        "discount", 10.0, 80.0,
    )  # fmt: skip
    assert decision.best_offer == BestOffer((DISCOUNT, SHIPPING, BUNDLE), explore=0.0)
    assert [c.label for c in decision.best_offer.candidates] == [
        "discount_10", "free_shipping", "bundle",
    ]  # fmt: skip
    assert decision.slot_values()["offer_type"] == "discount"
    # A rule that names a concrete offer has no candidates.
    assert evaluate(rules, Facts(segment="loyal")).best_offer is None


def test_rules_without_best_do_not_choose_offers() -> None:
    rules = parse_rules("rules:\n  - {name: r, when: {segment: loyal}, then: {offer_type: bundle}}")
    assert not rules.chooses_offers


def test_explore_and_fractional_discounts_are_read() -> None:
    rules = parse_rules(
        rule_with("""\
              offer_type: best
              explore: 0.25
              offers:
                - {offer_type: discount, discount_pct: 12.5, value: 6}
                - {offer_type: Bundle, value: 5}
            """)
    )
    best = evaluate(rules, AT_RISK).best_offer
    assert best is not None
    assert best.explore == 0.25
    assert [(c.label, c.offer_type, c.discount_pct, c.value) for c in best.candidates] == [
        ("discount_12.5", "discount", 12.5, 6.0),
        ("bundle", "bundle", 0.0, 5.0),
    ]


def test_defaults_may_choose_and_rules_inherit_or_replace_it() -> None:
    """A rule that names no offer takes the defaults' candidates; one that names an offer
    replaces them."""
    rules = parse_rules(
        """\
defaults:
  offer_type: best
  offers: [{offer_type: free_shipping, value: 4}, {offer_type: bundle, value: 5}]
rules:
  - {name: cap, when: {segment: browser}, then: {max_price: 50}}
  - {name: vip, when: {segment: loyal}, then: {offer_type: exclusive_access}}
"""
    )
    assert rules.chooses_offers
    capped = evaluate(rules, Facts(segment="browser"))
    assert capped.best_offer is not None
    assert (capped.offer_type, capped.max_price) == ("free_shipping", 50.0)
    assert evaluate(rules, Facts(segment="loyal")).best_offer is None
    assert evaluate(rules, Facts(segment="at_risk")).best_offer == capped.best_offer


def test_an_experiment_arm_may_try_best_against_the_rule() -> None:
    """Arms may set offer_type: best; an arm's lone discount replaces the candidates."""
    rules = parse_rules(
        """\
rules:
  - name: r
    when: {segment: at_risk}
    then: {offer_type: best, offers: [{offer_type: bundle, value: 5}, {offer_type: free_shipping, value: 4}]}
experiments:
  - name: nbo
    status: running
    arms:
      - {name: control, weight: 50, then: {discount_pct: 5}}
      - {name: best, weight: 50, then: {offer_type: best, offers: [{offer_type: discount, discount_pct: 10, value: 6}, {offer_type: bundle, value: 5}]}}
    goal: purchase
"""  # noqa: E501  # flow style on one line, as users write it
    )
    assert rules.chooses_offers
    experiment = rules.experiments[0]
    base = evaluate(rules, AT_RISK)
    control = apply_arm(base, experiment, experiment.arms[0])
    assert (control.offer_type, control.discount_pct, control.best_offer) == (
        "discount", 5.0, None,
    )  # fmt: skip
    best = apply_arm(base, experiment, experiment.arms[1])
    assert best.best_offer is not None
    assert [c.label for c in best.best_offer.candidates] == ["discount_10", "bundle"]
    assert (best.offer_type, best.discount_pct) == ("discount", 10.0)


@pytest.mark.parametrize(
    ("then", "expected"),
    [
        # best needs its candidates.
        (
            "  offer_type: best\n",
            "p.yml:5: rule 'r': offer_type 'best' needs 'offers': the candidates to choose "
            "from, the fallback first, e.g. '- {offer_type: bundle, value: 5}'",
        ),
        # Candidates without best say two things at once.
        (
            "  offer_type: bundle\n  offers: [{offer_type: bundle, value: 5}, "
            "{offer_type: free_shipping, value: 4}]\n",
            "p.yml:6: rule 'r': 'offers' needs 'offer_type: best' next to it",
        ),
        # So does explore.
        (
            "  offer_type: bundle\n  explore: 0.1\n",
            "p.yml:6: rule 'r': 'explore' needs 'offer_type: best' next to it",
        ),
        # A percentage belongs to a candidate, not to best.
        (
            "  offer_type: best\n  discount_pct: 10\n  offers: [{offer_type: bundle, value: 5}, "
            "{offer_type: free_shipping, value: 4}]\n",
            "p.yml:6: rule 'r': discount_pct goes inside a candidate of 'offers' with "
            "offer_type 'best'",
        ),
        # One candidate is no choice.
        (
            "  offer_type: best\n  offers: [{offer_type: bundle, value: 5}]\n",
            "p.yml:6: rule 'r': 'offers' must be a list of 2 to 8 candidates, the fallback "
            "first, each like '- {offer_type: bundle, value: 5}'",
        ),
        # Nor is a mapping.
        (
            "  offer_type: best\n  offers: {offer_type: bundle, value: 5}\n",
            "p.yml:6: rule 'r': 'offers' must be a list of 2 to 8 candidates, the fallback "
            "first, each like '- {offer_type: bundle, value: 5}'",
        ),
        # explore is a share.
        (
            "  offer_type: best\n  explore: 1.5\n  offers: [{offer_type: bundle, value: 5}, "
            "{offer_type: free_shipping, value: 4}]\n",
            "p.yml:6: rule 'r': explore must be a share from 0 to 1 (0.1: one customer in "
            "ten), got 1.5",
        ),
        # No offer is not an offer to accept.
        (
            "  offer_type: best\n  offers: [{offer_type: none, value: 1}, "
            "{offer_type: bundle, value: 5}]\n",
            "p.yml:6: rule 'r': a candidate's offer_type is one of discount, free_shipping, "
            "exclusive_access, bundle, got 'none'",
        ),
        # A candidate needs a value...
        (
            "  offer_type: best\n  offers: [{offer_type: free_shipping}, "
            "{offer_type: bundle, value: 5}]\n",
            "p.yml:6: rule 'r': a candidate needs 'value': what an accepted offer is worth to "
            "the shop (a number above 0)",
        ),
        # ... above 0.
        (
            "  offer_type: best\n  offers: [{offer_type: free_shipping, value: 0}, "
            "{offer_type: bundle, value: 5}]\n",
            "p.yml:6: rule 'r': 'value' must be a number above 0 (what an accepted offer is "
            "worth), got 0",
        ),
        # ... that is a number.
        (
            "  offer_type: best\n  offers: [{offer_type: free_shipping, value: lots}, "
            "{offer_type: bundle, value: 5}]\n",
            "p.yml:6: rule 'r': 'value' must be a number above 0 (what an accepted offer is "
            "worth), got 'lots'",
        ),
        # A discount candidate needs its size.
        (
            "  offer_type: best\n  offers: [{offer_type: discount, value: 6}, "
            "{offer_type: bundle, value: 5}]\n",
            "p.yml:6: rule 'r': offer_type 'discount' needs a discount_pct above 0",
        ),
        # Another offer cannot have one.
        (
            "  offer_type: best\n  offers: [{offer_type: bundle, discount_pct: 5, value: 5}, "
            "{offer_type: free_shipping, value: 4}]\n",
            "p.yml:6: rule 'r': discount_pct 5 only goes with offer_type 'discount', not 'bundle'",
        ),
        # A typo in a candidate's key.
        (
            "  offer_type: best\n  offers: [{offer_type: bundle, valeu: 5}, "
            "{offer_type: free_shipping, value: 4}]\n",
            "p.yml:6: rule 'r': unknown key 'valeu' (did you mean 'value'?); a candidate has "
            "offer_type, discount_pct, value",
        ),
        # A typo in best.
        (
            "  offer_type: bets\n",
            "p.yml:5: rule 'r': unknown offer_type 'bets' (did you mean 'best'?); it is one "
            "of discount, free_shipping, exclusive_access, bundle, none",
        ),
        # A typo in offers.
        (
            "  offer_type: best\n  ofers: []\n",
            "p.yml:6: rule 'r': unknown output 'ofers' (did you mean 'offers'?); outputs are "
            "offer_type, discount_pct, max_price, recommendation_strategy",
        ),
    ],
)
def test_bad_best_offers_are_reported_with_file_and_line(then: str, expected: str) -> None:
    assert expected in messages(rule_with(then))


def test_a_candidate_listed_twice_names_the_first_line() -> None:
    """10% and 10.0% off are the same offer."""
    assert messages(
        rule_with("""\
              offer_type: best
              offers:
                - {offer_type: discount, discount_pct: 10, value: 6}
                - {offer_type: bundle, value: 5}
                - {offer_type: discount, discount_pct: 10.0, value: 7}
            """)
    ) == ["p.yml:9: rule 'r': candidate 'discount_10' is listed twice (first on line 7)"]


def test_more_than_eight_candidates_are_refused() -> None:
    offers = ", ".join(
        f"{{offer_type: discount, discount_pct: {pct}, value: 1}}" for pct in range(1, 10)
    )
    assert messages(rule_with(f"  offer_type: best\n  offers: [{offers}]\n")) == [
        "p.yml:6: rule 'r': 'offers' must be a list of 2 to 8 candidates, the fallback "
        "first, each like '- {offer_type: bundle, value: 5}'"
    ]


def test_best_without_candidates_is_refused_in_code_too() -> None:
    with pytest.raises(ValueError, match="needs its candidates"):
        resolve_outputs(Decision(), {"offer_type": "best"}, "r")


# -- choosing --------------------------------------------------------------------------------


def test_the_highest_expected_value_wins() -> None:
    """p x value: 0.10 x 6 = 0.6, 0.20 x 4 = 0.8, 0.18 x 5 = 0.9 -> bundle."""
    model = model_of(discount_10=(100, 0.10), free_shipping=(100, 0.20), bundle=(100, 0.18))
    decision = choose_offer(evaluate(parse_rules(RULES), AT_RISK), model, "at_risk")
    assert (decision.offer_type, decision.discount_pct) == ("bundle", 0.0)
    assert decision.offer_choice is not None
    assert (decision.offer_choice.chosen, decision.offer_choice.reason) == (2, "expected_value")
    assert decision.offer_choice.model_version == "v-test"
    assert decision.best_offer is not None  # kept, for explanations
    assert decision.slot_values()["offer_type"] == "bundle"


def test_a_discount_candidate_brings_its_percentage() -> None:
    model = model_of(discount_10=(100, 0.50), free_shipping=(100, 0.20), bundle=(100, 0.18))
    decision = choose_offer(evaluate(parse_rules(RULES), AT_RISK), model, "at_risk")
    assert decision.slot_values() == {
        "offer_type": "discount", "discount_pct": 10, "response_variant": None,
    }  # fmt: skip


def test_a_tie_goes_to_the_candidate_listed_first() -> None:
    """0.5 x 6 = 3 = 0.75 x 4."""
    model = model_of(discount_10=(50, 0.5), free_shipping=(50, 0.75), bundle=(50, 0.1))
    assert pick(THREE, model, "at_risk") == (0, "expected_value", None)
    shuffled = BestOffer((SHIPPING, DISCOUNT, BUNDLE))
    assert pick(shuffled, model, "at_risk") == (0, "expected_value", None)


def test_too_little_data_for_any_candidate_falls_back_to_the_first() -> None:
    """Bundle would win, but free shipping has 29 exposures of the 30 needed."""
    model = model_of(discount_10=(100, 0.10), free_shipping=(29, 0.20), bundle=(100, 0.50))
    assert pick(THREE, model, "at_risk") == (0, "too_little_data", "free_shipping")
    # Enough in another segment is not enough in this one.
    assert pick(THREE, model, "browser") == (0, "too_little_data", "discount_10")


def test_without_a_model_the_first_offer_is_shown() -> None:
    decision = choose_offer(evaluate(parse_rules(RULES), AT_RISK), None, "at_risk")
    assert (decision.offer_type, decision.discount_pct) == ("discount", 10.0)
    assert decision.offer_choice is not None
    assert (decision.offer_choice.reason, decision.offer_choice.model_version) == (
        "no_model", None,
    )  # fmt: skip


def test_choosing_keeps_every_other_field_of_the_decision() -> None:
    """Decision.with_offer builds the decision field by field: a field added to Decision
    and forgotten there would be lost here."""
    decision = Decision(
        "discount", 10.0, 70.0, "premium", "win back", "short", "nbo", "treatment", THREE
    )
    chosen = choose_offer(decision, model_of(), "at_risk")
    changed = {"offer_type", "discount_pct", "offer_choice"}
    for name in (f.name for f in fields(Decision) if f.name not in changed):
        assert getattr(chosen, name) == getattr(decision, name), name
    assert chosen.offer_choice is not None


def test_a_decision_without_candidates_is_left_alone() -> None:
    decision = Decision("bundle", rule="r")
    assert choose_offer(decision, model_of(), "at_risk") is decision


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        # Below the share: the share is cut in three, one part per candidate.
        (0.00, (0, "explore", None)),
        (0.04, (1, "explore", None)),
        (0.0999, (2, "explore", None)),
        # From the share on: the model decides.
        (0.10, (2, "expected_value", None)),
        (0.99, (2, "expected_value", None)),
    ],
)
def test_exploration_draws_a_candidate_below_the_share(
    position: float, expected: tuple[int, str, None]
) -> None:
    model = model_of(discount_10=(100, 0.10), free_shipping=(100, 0.20), bundle=(100, 0.18))
    assert pick(BestOffer(THREE.candidates, explore=0.1), model, "at_risk", position) == expected


def test_exploration_gathers_data_before_any_model() -> None:
    """With the share at 1, every customer is explored, even without a model, and each
    candidate gets about a third of them; each customer keeps theirs."""
    best = BestOffer(THREE.candidates, explore=1.0)
    decision = Decision("discount", 10.0, rule="win back", best_offer=best)
    counts = dict.fromkeys(("discount_10", "free_shipping", "bundle"), 0)
    for index in range(3_000):
        unit = ExperimentUnit(f"{index:064x}", b"offer-test-secret")
        chosen = choose_offer(decision, None, "at_risk", unit)
        assert chosen == choose_offer(decision, None, "at_risk", unit)
        assert chosen.offer_choice is not None
        assert chosen.offer_choice.reason == "explore"
        counts[offer_label(chosen.offer_type, chosen.discount_pct)] += 1
    assert all(900 <= count <= 1_100 for count in counts.values()), counts


def test_no_unit_explores_nobody() -> None:
    best = BestOffer(THREE.candidates, explore=1.0)
    decision = Decision("discount", 10.0, rule="win back", best_offer=best)
    assert choose_offer(decision, None, "at_risk").offer_choice.reason == "no_model"  # type: ignore[union-attr]


def test_the_explore_position_is_keyed_per_rule() -> None:
    first = explore_position(UNIT, "win back")
    assert 0 <= first < 1
    assert first == explore_position(UNIT, "win back")
    assert first != explore_position(UNIT, "another rule")
    assert first != explore_position(ExperimentUnit(UNIT.key, b"another-secret"), "win back")


@given(
    rates=st.lists(st.floats(0, 1), min_size=3, max_size=3),
    exposures=st.lists(st.integers(0, 200), min_size=3, max_size=3),
    explore_at=st.none() | st.floats(0, 0.999),
)
def test_the_choice_is_always_one_of_the_candidates(
    rates: list[float], exposures: list[int], explore_at: float | None
) -> None:
    """Whatever the model says, the offer is a candidate's, never 'best' nor 'none', and a
    candidate short of data means the first."""
    model = FakeModel(
        {
            (c.label, "at_risk"): OfferEstimate(n, 0, p)
            for c, n, p in zip(THREE.candidates, exposures, rates, strict=True)
        }
    )
    index, reason, short = pick(BestOffer(THREE.candidates, 0.2), model, "at_risk", explore_at)
    assert 0 <= index < 3
    if reason == "too_little_data":
        assert index == 0
        assert short is not None
    if reason == "expected_value":
        values = [p * c.value for c, p in zip(THREE.candidates, rates, strict=True)]
        assert values[index] == max(values)


# -- explaining ------------------------------------------------------------------------------


def test_the_explanation_lists_candidates_and_says_why() -> None:
    model = model_of(discount_10=(100, 0.10), free_shipping=(100, 0.20), bundle=(100, 0.18))
    decision = choose_offer(evaluate(parse_rules(RULES), AT_RISK), model, "at_risk")
    assert decision.best_offer is not None
    shown = explain_offer_choice(decision.best_offer, decision.offer_choice, model, "at_risk")
    data = shown.to_dict()
    assert [(row["offer"], row["exposures"], row["accepted"]) for row in data["candidates"]] == [
        ("discount_10", 100, 10), ("free_shipping", 100, 20), ("bundle", 100, 18),
    ]  # fmt: skip
    assert [row["expected_value"] for row in data["candidates"]] == pytest.approx([0.6, 0.8, 0.9])
    assert (data["chosen"], data["reason"]) == ("bundle", "expected_value")
    assert data["why"] == "'bundle': the highest expected value (p x value)"
    assert (data["min_exposures"], data["model_version"], data["segment"]) == (
        30, "v-test", "at_risk",
    )  # fmt: skip
    text = str(shown)
    assert text.splitlines()[0] == (
        "Best offer for segment 'at_risk' (model v-test, at least 30 exposures per offer):"
    )
    assert "-> bundle             p=0.180  x value 5 = 0.900" in text
    assert text.splitlines()[-1] == "Chosen: 'bundle': the highest expected value (p x value)"


def test_the_explanation_names_the_candidate_short_of_data() -> None:
    model = model_of(discount_10=(100, 0.10), free_shipping=(12, 0.20), bundle=(100, 0.50))
    decision = choose_offer(evaluate(parse_rules(RULES), AT_RISK), model, "at_risk")
    assert decision.best_offer is not None
    shown = explain_offer_choice(decision.best_offer, decision.offer_choice, model, "at_risk")
    assert shown.why == (
        "'discount_10', the rule's first offer: 'free_shipping' has 12 exposures in segment "
        "'at_risk', fewer than 30"
    )
    assert shown.chosen is not None
    assert shown.chosen.offer == "discount_10"


def test_the_explanation_without_marketing_consent_shows_no_offer() -> None:
    shown = explain_offer_choice(THREE, None, None, "at_risk")
    assert (shown.chosen, shown.reason) == (None, "no_marketing_consent")
    assert shown.why == "no offer: the customer does not allow marketing"
    assert [row.p_accept for row in shown.rows] == [None, None, None]


def test_the_rule_explanation_shows_the_candidates() -> None:
    explanation = explain(parse_rules(RULES), AT_RISK)
    assert str(explanation).splitlines()[-1] == (
        "Outcome from rule 'win back': offer_type=best of [discount_10, free_shipping, "
        "bundle], max_price=80.0, recommendation_strategy=default"
    )
    offers = explanation.to_dict()["decision"]["offers"]
    assert offers[0] == {
        "offer": "discount_10", "offer_type": "discount", "discount_pct": 10.0, "value": 6.0,
    }  # fmt: skip
    assert [offer["offer"] for offer in offers] == ["discount_10", "free_shipping", "bundle"]
    # Without candidates the JSON keeps its former shape.
    assert "offers" not in explain(parse_rules(RULES), Facts(segment="loyal")).to_dict()["decision"]
