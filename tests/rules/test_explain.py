"""explain: every rule in evaluation order, matched or not and why, and the outcome."""

from __future__ import annotations

from textwrap import dedent

from rasa_personalize.rules.explain import RuleOutcome, explain
from rasa_personalize.rules.facts import Facts
from rasa_personalize.rules.loader import parse_rules
from rasa_personalize.rules.ruleset import Decision

RULES = parse_rules(
    dedent(
        """\
        rules:
          - name: bargain hunters
            when: {segment: price_sensitive}
            then: {offer_type: discount, discount_pct: 15, max_price: 60}
          - name: premium members
            when:
              segment: loyal
              loyalty_tier: [gold, platinum]
            then: {offer_type: exclusive_access, recommendation_strategy: premium}
          - name: old rule
            enabled: false
            when: {segment: loyal}
            then: {offer_type: bundle}
          - name: loyal
            when: {segment: loyal}
            then: {offer_type: exclusive_access}
          - name: staff
            priority: 5
            when: {attributes.staff: true}
            then: {offer_type: none}
        """
    ),
    "personalization.yml",
)


def test_explain_lists_every_rule_with_its_verdict_and_reason() -> None:
    """A gold loyal customer: staff is tried first, premium decides, loyal matches too late."""
    explanation = explain(RULES, Facts(segment="loyal", loyalty_tier="gold"))
    assert explanation.outcomes == (
        RuleOutcome(
            "staff", 17, 5, "no_match", "attributes.staff is true",
            "attributes.staff is unknown, rule needs true",
        ),
        RuleOutcome(
            "bargain hunters", 2, 0, "no_match", "segment is 'price_sensitive'",
            "segment is 'loyal', rule needs 'price_sensitive'",
        ),
        RuleOutcome(
            "premium members", 5, 0, "decides",
            "(segment is 'loyal' and loyalty_tier in ['gold', 'platinum'])",
        ),
        RuleOutcome("old rule", 10, 0, "disabled", "segment is 'loyal'", "enabled: false"),
        RuleOutcome(
            "loyal", 14, 0, "matches_later", "segment is 'loyal'",
            "'premium members' decided first",
        ),
    )  # fmt: skip
    assert explanation.decision == Decision(
        "exclusive_access", 0.0, None, "premium", "premium members"
    )
    assert [outcome.matched for outcome in explanation.outcomes] == [
        False, False, True, False, True,
    ]  # fmt: skip


def test_explanation_prints_one_line_per_rule_then_the_outcome() -> None:
    """The text the CLI prints."""
    text = str(explain(RULES, Facts(segment="loyal", loyalty_tier="silver")))
    assert text.splitlines() == [
        "Rules from personalization.yml, in evaluation order:",
        "  1. no match 'staff' (line 17) [priority 5]: attributes.staff is unknown, "
        "rule needs true",
        "  2. no match 'bargain hunters' (line 2): segment is 'loyal', "
        "rule needs 'price_sensitive'",
        "  3. no match 'premium members' (line 5): loyalty_tier is 'silver', rule needs one of "
        "'gold', 'platinum'",
        "  4. disabled 'old rule' (line 10): enabled: false",
        "  5. DECIDES  'loyal' (line 14)",
        "Outcome from rule 'loyal': offer_type=exclusive_access, discount_pct=0, max_price=none, "
        "recommendation_strategy=default",
    ]


def test_explanation_when_nothing_matches() -> None:
    """The defaults answer, and the text says so."""
    explanation = explain(RULES, Facts(segment="browser"))
    assert explanation.decision.rule is None
    assert [outcome.verdict for outcome in explanation.outcomes] == [
        "no_match", "no_match", "no_match", "disabled", "no_match",
    ]  # fmt: skip
    assert explanation.lines()[-1] == (
        "Outcome from the defaults (no rule matched): offer_type=none, discount_pct=0, "
        "max_price=none, recommendation_strategy=default"
    )


def test_explanation_as_json_ready_data() -> None:
    """to_dict gives plain data: the CLI can print it as JSON."""
    data = explain(RULES, Facts(segment="price_sensitive")).to_dict()
    assert data["decision"] == {
        "offer_type": "discount",
        "discount_pct": 15,
        "response_variant": None,
        "max_price": 60.0,
        "recommendation_strategy": "default",
        "rule": "bargain hunters",
    }
    assert data["source"] == "personalization.yml"
    assert data["rules"][1] == {
        "name": "bargain hunters",
        "line": 2,
        "priority": 0,
        "verdict": "decides",
        "condition": "segment is 'price_sensitive'",
        "reason": "",
    }
