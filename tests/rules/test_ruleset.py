"""Evaluation semantics: priority, first match, outputs from the defaults, the built-in rules."""

from __future__ import annotations

from textwrap import dedent

import pytest

from rasa_personalize.rules.builtin import builtin_rules
from rasa_personalize.rules.conditions import AllOf, AnyOf, Compare, Not
from rasa_personalize.rules.facts import Facts
from rasa_personalize.rules.loader import parse_rules
from rasa_personalize.rules.ruleset import Decision, Rule, RuleSet, evaluate, segment_gate
from rasa_personalize.slots import CUSTOMER_SEGMENTS
from tests.rules.expected import SEGMENT_OFFERS

RULES = parse_rules(
    dedent(
        """
        defaults:
          offer_type: free_shipping
          max_price: 200
          recommendation_strategy: premium
        rules:
          - name: loyal weekend
            when: {segment: loyal, is_weekend: true}
            then: {recommendation_strategy: new_arrivals}
          - name: loyal
            when: {segment: loyal}
            then: {offer_type: exclusive_access, max_price: null}
          - name: staff
            priority: 10
            when: {attributes.staff: true}
            then: {offer_type: none}
          - name: late bargain
            priority: 10
            when: {segment: price_sensitive}
            then: {offer_type: discount, discount_pct: 20}
          - name: bargain
            when: {segment: price_sensitive}
            then: {offer_type: discount, discount_pct: 15, recommendation_strategy: cheapest_first}
          - name: switched off
            enabled: false
            priority: 99
            when: {segment: browser}
            then: {offer_type: bundle}
        """
    ),
    "semantics.yml",
)


def test_evaluation_order_is_priority_then_file_order() -> None:
    """Higher priority first; equal priorities keep the file's order."""
    assert [rule.name for rule in RULES.ordered] == [
        "switched off",
        "staff",
        "late bargain",
        "loyal weekend",
        "loyal",
        "bargain",
    ]


def test_first_match_decides() -> None:
    """Two rules match a bargain hunter; the one tried first (by priority) decides."""
    decision = evaluate(RULES, Facts(segment="price_sensitive"))
    assert decision == Decision("discount", 20.0, 200.0, "premium", "late bargain")


def test_priority_beats_file_order() -> None:
    """The staff rule is written after 'loyal' but has priority 10."""
    decision = evaluate(RULES, Facts(segment="loyal", attributes={"staff": True}))
    assert decision.rule == "staff"
    assert decision.offer_type == "none"


def test_unset_outputs_come_from_defaults_not_from_later_rules() -> None:
    """'loyal weekend' only sets the strategy: the offer is the defaults', not 'loyal''s."""
    decision = evaluate(RULES, Facts(segment="loyal", is_weekend=True))
    assert decision == Decision("free_shipping", 0.0, 200.0, "new_arrivals", "loyal weekend")


def test_null_max_price_clears_the_default_cap() -> None:
    """max_price: null in a rule means no cap, even when the defaults have one."""
    decision = evaluate(RULES, Facts(segment="loyal"))
    assert decision == Decision("exclusive_access", 0.0, None, "premium", "loyal")


def test_no_match_gives_the_defaults() -> None:
    """Nothing matches a frequent buyer here: the defaults, and no rule name."""
    assert evaluate(RULES, Facts(segment="frequent_buyer")) == Decision(
        "free_shipping", 0.0, 200.0, "premium", None
    )


def test_disabled_rules_never_decide() -> None:
    """enabled: false skips the rule even with the highest priority."""
    assert evaluate(RULES, Facts(segment="browser")).rule is None


def test_an_offer_brings_its_own_discount() -> None:
    """A rule naming a non-discount offer over discount defaults gets 0 %, not the default's."""
    rules = parse_rules(
        "defaults: {offer_type: discount, discount_pct: 5}\n"
        "rules:\n  - {name: b, when: {segment: loyal}, then: {offer_type: bundle}}\n"
        "  - {name: s, when: {segment: browser}, then: {max_price: 50}}\n"
    )
    assert evaluate(rules, Facts(segment="loyal")).discount_pct == 0.0
    # A rule that leaves the offer out keeps the defaults' offer and its discount.
    assert evaluate(rules, Facts(segment="browser")) == Decision(
        "discount", 5.0, 50.0, "default", "s"
    )


@pytest.mark.parametrize(
    ("discount", "slot"),
    [
        (15.0, 15),  # whole numbers are sent as integers so "{discount_pct}%" reads "15%"
        (12.5, 12.5),  # fractions stay as they are
        (0.0, 0),  # no discount reads "0"
    ],
)
def test_slot_values(discount: float, slot: float) -> None:
    """slot_values gives the two contract slots in the form the engine sends them."""
    values = Decision("discount", discount).slot_values()
    assert values == {"offer_type": "discount", "discount_pct": slot, "response_variant": None}
    assert type(values["discount_pct"]) is type(slot)


@pytest.mark.parametrize("segment", CUSTOMER_SEGMENTS)
def test_builtin_rules_give_todays_offers(segment: str) -> None:
    """Without a rule file, each segment gets the offer the engine gave it before rules existed."""
    decision = evaluate(builtin_rules(), Facts(segment=segment))
    assert (decision.offer_type, decision.discount_pct) == SEGMENT_OFFERS[segment]


@pytest.mark.parametrize(
    ("condition", "gate"),
    [
        # eq requires one segment.
        (Compare("segment", "eq", "Loyal"), frozenset({"loyal"})),
        # in requires one of several.
        (Compare("segment", "in", ("loyal", "at_risk")), frozenset({"loyal", "at_risk"})),
        # ne does not require any.
        (Compare("segment", "ne", "loyal"), None),
        # another field does not.
        (Compare("device", "eq", "mobile"), None),
        # all: the intersection of its parts' requirements.
        (
            AllOf(
                (
                    Compare("segment", "in", ("loyal", "browser")),
                    Compare("segment", "eq", "browser"),
                )
            ),
            frozenset({"browser"}),
        ),
        # all: the part with a requirement carries it.
        (
            AllOf((Compare("hour", "gt", 3), Compare("segment", "eq", "loyal"))),
            frozenset({"loyal"}),
        ),
        # any: no single requirement.
        (AnyOf((Compare("segment", "eq", "loyal"), Compare("segment", "eq", "browser"))), None),
        # not: none.
        (Not(Compare("segment", "eq", "loyal")), None),
        # a number in the list cannot be required of a text segment.
        (Compare("segment", "in", ("loyal", 3)), None),
    ],
)
def test_segment_gate(condition: object, gate: frozenset[str] | None) -> None:
    """The segment index only skips rules that cannot match the customer's segment."""
    assert segment_gate(condition) == gate  # type: ignore[arg-type]


def test_segment_index_keeps_odd_segment_values_correct() -> None:
    """A segment that is not text (hand-built facts) is checked against every rule."""
    rules = RuleSet(
        (
            Rule("in list", Compare("segment", "in", ("loyal",)), {"offer_type": "bundle"}),
            Rule("other", Compare("hour", "gt", 3), {"offer_type": "free_shipping"}),
        )
    )
    # "in" on a list holds when any element is listed, so this hand-built list matches.
    assert evaluate(rules, Facts(segment=["loyal"])).rule == "in list"  # type: ignore[arg-type]
    assert evaluate(rules, Facts(segment="LOYAL")).rule == "in list"
    assert evaluate(rules, Facts(segment="unknown-segment", hour=5)).rule == "other"
    assert evaluate(rules, Facts(segment=None)).rule is None  # type: ignore[arg-type]
