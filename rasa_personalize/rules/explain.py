"""Why a customer got their offer: every rule in evaluation order, with the reason.

For ``personalize rules explain``: plain data that prints as text (``str``) or converts to
JSON-ready dicts (:meth:`Explanation.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rasa_personalize.rules.conditions import describe, show, why_not
from rasa_personalize.rules.facts import Facts
from rasa_personalize.rules.ruleset import Decision, RuleSet, evaluate

Verdict = Literal["decides", "matches_later", "no_match", "disabled"]

_VERDICT_WORDS: dict[Verdict, str] = {
    "decides": "DECIDES",
    "matches_later": "matches",
    "no_match": "no match",
    "disabled": "disabled",
}


@dataclass(frozen=True)
class RuleOutcome:
    """What one rule did for these facts.

    ``verdict``: ``decides`` (the first match), ``matches_later`` (its condition holds but
    an earlier rule decided), ``no_match`` (``reason`` says which condition failed and
    why), ``disabled`` (``enabled: false`` in the file).
    """

    name: str
    line: int | None
    priority: int
    verdict: Verdict
    condition: str
    reason: str = ""

    @property
    def matched(self) -> bool:
        """Whether the rule's condition holds for the facts."""
        return self.verdict in ("decides", "matches_later")


@dataclass(frozen=True)
class Explanation:
    """Every rule's outcome in evaluation order, and the resulting decision."""

    source: str
    outcomes: tuple[RuleOutcome, ...]
    decision: Decision

    def lines(self) -> list[str]:
        """Printable lines, one per rule, then the outcome."""
        result = [f"Rules from {self.source}, in evaluation order:"]
        width = len(str(len(self.outcomes)))
        for number, outcome in enumerate(self.outcomes, start=1):
            where = f" (line {outcome.line})" if outcome.line is not None else ""
            priority = f" [priority {outcome.priority}]" if outcome.priority else ""
            reason = f": {outcome.reason}" if outcome.reason else ""
            result.append(
                f"  {number:>{width}}. {_VERDICT_WORDS[outcome.verdict]:<8} "
                f"{outcome.name!r}{where}{priority}{reason}"
            )
        if not self.outcomes:
            result.append("  (no rules)")
        decision = self.decision
        by = f"rule {decision.rule!r}" if decision.rule else "the defaults (no rule matched)"
        if decision.best_offer is not None:
            labels = ", ".join(c.label for c in decision.best_offer.candidates)
            offer = f"offer_type=best of [{labels}]"
        else:
            offer = (
                f"offer_type={decision.offer_type}, "
                f"discount_pct={show(decision.slot_values()['discount_pct'])}"
            )
        result.append(
            f"Outcome from {by}: {offer}, "
            f"max_price={'none' if decision.max_price is None else show(decision.max_price)}, "
            f"recommendation_strategy={decision.recommendation_strategy}"
        )
        return result

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"source", "rules": [...], "decision": {...}}``; with
        ``offer_type: best``, the decision's ``offers`` lists the candidates (its offer is
        the first of them until the engine chooses)."""
        decision = self.decision
        best = (
            {
                "offers": [
                    {
                        "offer": candidate.label,
                        "offer_type": candidate.offer_type,
                        "discount_pct": candidate.discount_pct,
                        "value": candidate.value,
                    }
                    for candidate in decision.best_offer.candidates
                ]
            }
            if decision.best_offer is not None
            else {}
        )
        return {
            "source": self.source,
            "rules": [
                {
                    "name": outcome.name,
                    "line": outcome.line,
                    "priority": outcome.priority,
                    "verdict": outcome.verdict,
                    "condition": outcome.condition,
                    "reason": outcome.reason,
                }
                for outcome in self.outcomes
            ],
            "decision": {
                **decision.slot_values(),
                "max_price": decision.max_price,
                "recommendation_strategy": decision.recommendation_strategy,
                "rule": decision.rule,
                **best,
            },
        }


def explain(rules: RuleSet, facts: Facts) -> Explanation:
    """Every rule in evaluation order with its verdict and reason, and the decision.

    Rules after the deciding one are still checked, so the explanation shows which of
    them would also have matched.
    """
    decision = evaluate(rules, facts)
    outcomes = []
    decided_by: str | None = None
    for rule in rules.ordered:
        verdict: Verdict
        if not rule.enabled:
            verdict, reason = "disabled", "enabled: false"
        else:
            failure = why_not(rule.when, facts)
            if failure is not None:
                verdict, reason = "no_match", failure
            elif decided_by is None:
                verdict, reason, decided_by = "decides", "", rule.name
            else:
                verdict, reason = "matches_later", f"{decided_by!r} decided first"
        outcomes.append(
            RuleOutcome(rule.name, rule.line, rule.priority, verdict, describe(rule.when), reason)
        )
    return Explanation(rules.source, tuple(outcomes), decision)
