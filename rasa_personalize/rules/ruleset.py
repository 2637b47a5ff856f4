"""Rules, rule sets, and the evaluator: the first rule that matches decides.

Evaluation order: rules sorted by ``priority`` (higher first; 0 when not given), and by
position in the file among equal priorities. The first enabled rule whose condition holds
is the *deciding* rule; later rules are not looked at.

Outputs: the deciding rule's ``then`` gives the outputs it names; every output it does
not name comes from the ``defaults`` block, never from a later rule, so the outcome can
be read off one rule and the defaults. ``offer_type`` and ``discount_pct`` travel
together: a rule that names an offer gets its own discount (0 unless it is a discount).
``offer_type: best`` comes with its candidates (``offers``), and the decision holds the
first of them until the engine chooses (:mod:`rasa_personalize.rules.offers`).
When no rule matches, the outcome is the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from rasa_personalize.rules.conditions import (
    AllOf,
    Compare,
    Condition,
    Predicate,
    compile_condition,
)
from rasa_personalize.rules.facts import Facts

if TYPE_CHECKING:
    from rasa_personalize.rules.experiments import Experiment
    from rasa_personalize.rules.offers import BestOffer, OfferChoice

# What a recommender does with the customer's candidates; the engine maps each to a
# ranking. "default" leaves the recommender's own order.
RECOMMENDATION_STRATEGIES: Final = (
    "default",
    "cheapest_first",
    "premium",
    "new_arrivals",
    "bought_together",
)
OUTPUT_NAMES: Final = ("offer_type", "discount_pct", "max_price", "recommendation_strategy")

_Plan = tuple[tuple[Predicate, "Decision"], ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules decided for one customer.

    ``offer_type`` and ``discount_pct`` are contract slot values; ``max_price`` (``None``:
    no cap) and ``recommendation_strategy`` steer the recommendations. ``rule`` names the
    deciding rule, ``None`` when the defaults answered. ``experiment`` and ``arm`` name the
    experiment that changed the outcome and the customer's arm in it (see
    :mod:`rasa_personalize.rules.experiments`), whose ``response_variant`` is a slot too.
    ``best_offer`` holds the candidates of ``offer_type: best`` (the offer is then the
    first of them until :func:`~rasa_personalize.rules.offers.choose_offer` chooses, and
    ``offer_choice`` says which it chose and why).
    """

    offer_type: str = "none"
    discount_pct: float = 0.0
    max_price: float | None = None
    recommendation_strategy: str = "default"
    rule: str | None = None
    response_variant: str | None = None
    experiment: str | None = None
    arm: str | None = None
    best_offer: BestOffer | None = None
    offer_choice: OfferChoice | None = None

    def slot_values(self) -> dict[str, Any]:
        """The contract slots this decision sets, ready for a ``SlotPlan``."""
        # Responses interpolate the slot as text: "15% off" reads better than "15.0% off".
        discount = self.discount_pct
        return {
            "offer_type": self.offer_type,
            "discount_pct": int(discount) if float(discount).is_integer() else discount,
            "response_variant": self.response_variant,
        }

    def with_offer(self, offer_type: str, discount_pct: float, choice: OfferChoice) -> Decision:
        """This decision with its ``best`` offer made concrete as ``offer_type``.

        Built field by field rather than with ``dataclasses.replace``, which costs twice as
        much on every answer of a ``best`` rule: a new field must be passed on here too
        (``tests/rules/test_offers.py`` checks that every other field is kept).
        """
        return Decision(
            offer_type,
            discount_pct,
            self.max_price,
            self.recommendation_strategy,
            self.rule,
            self.response_variant,
            self.experiment,
            self.arm,
            self.best_offer,
            choice,
        )


@dataclass(frozen=True)
class Rule:
    """One rule: when ``when`` holds, ``then`` gives the outputs."""

    name: str
    when: Condition
    then: Mapping[str, Any]
    priority: int = 0
    description: str = ""
    enabled: bool = True
    line: int | None = None


@dataclass(frozen=True)
class RuleSet:
    """Rules in file order, the defaults, and the compiled plan the evaluator runs.

    ``source`` names where the rules came from (a path or ``<built-in>``); ``digest`` is
    a short hash of the text, to tell versions apart in logs. ``experiments`` come after
    the rules (:func:`rasa_personalize.rules.experiments.assign`).
    """

    rules: tuple[Rule, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    digest: str = ""
    experiments: tuple[Experiment, ...] = ()
    # Derived in __post_init__.
    ordered: tuple[Rule, ...] = field(init=False, repr=False, compare=False)
    default_decision: Decision = field(init=False, repr=False, compare=False)
    chooses_offers: bool = field(init=False, repr=False, compare=False)
    _plan: _Plan = field(init=False, repr=False, compare=False)
    _plan_by_segment: Mapping[str, _Plan] = field(init=False, repr=False, compare=False)
    _ungated_plan: _Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = resolve_outputs(Decision(), self.defaults, None)
        # Whether any answer can be "offer_type: best": only then does the engine load
        # an acceptance model and record the offers it shows.
        blocks = (
            self.defaults,
            *(rule.then for rule in self.rules),
            *(arm.then for experiment in self.experiments for arm in experiment.arms),
        )
        object.__setattr__(self, "chooses_offers", any("offers" in block for block in blocks))
        # sorted() is stable: equal priorities keep their order in the file.
        ordered = tuple(sorted(self.rules, key=lambda rule: -rule.priority))
        steps = [
            (compile_condition(rule.when), resolve_outputs(base, rule.then, rule.name), gate)
            for rule in ordered
            if rule.enabled
            for gate in (segment_gate(rule.when),)
        ]
        # Most rules start with "segment: X". Per segment, keep only the rules that can
        # match it, in the same order: first-match results stay the same, and a customer
        # is checked against a handful of rules instead of all of them.
        segments = set().union(*(gate for _, _, gate in steps if gate is not None))
        by_segment = {
            segment: tuple(
                (test, then) for test, then, gate in steps if gate is None or segment in gate
            )
            for segment in segments
        }
        object.__setattr__(self, "ordered", ordered)
        object.__setattr__(self, "default_decision", base)
        object.__setattr__(self, "_plan", tuple((test, then) for test, then, _ in steps))
        object.__setattr__(self, "_plan_by_segment", by_segment)
        object.__setattr__(
            self, "_ungated_plan", tuple((test, then) for test, then, gate in steps if gate is None)
        )

    def decision_of(self, rule: Rule) -> Decision:
        """The outcome when ``rule`` decides."""
        return resolve_outputs(self.default_decision, rule.then, rule.name)


def resolve_outputs(base: Decision, outputs: Mapping[str, Any], rule: str | None) -> Decision:
    """``base`` with ``outputs`` on top, the offer and its discount taken together.

    Raises:
        ValueError: ``offer_type: best`` without its candidates (``offers``).
    """
    best_offer = base.best_offer
    if "offer_type" in outputs:
        best_offer = outputs.get("offers")
        if best_offer is not None:
            # The first candidate until the engine chooses: never "best" in a slot.
            offer_type = best_offer.fallback.offer_type
            discount_pct = float(best_offer.fallback.discount_pct)
        else:
            offer_type = str(outputs["offer_type"])
            discount_pct = float(outputs.get("discount_pct", 0.0))
            if offer_type == "best":
                raise ValueError("offer_type 'best' needs its candidates under 'offers'")
    else:
        offer_type, discount_pct = base.offer_type, base.discount_pct
    max_price = outputs.get("max_price", base.max_price)
    return Decision(
        offer_type=offer_type,
        discount_pct=discount_pct,
        max_price=None if max_price is None else float(max_price),
        recommendation_strategy=str(
            outputs.get("recommendation_strategy", base.recommendation_strategy)
        ),
        rule=rule,
        best_offer=best_offer,
    )


def evaluate(rules: RuleSet, facts: Facts) -> Decision:
    """The decision for ``facts``: the first matching rule's, else the defaults.

    Total and deterministic: it never raises, whatever the facts hold, and returns the
    same decision for the same rules and facts.
    """
    segment = facts.segment
    if isinstance(segment, str):
        plan = rules._plan_by_segment.get(segment.casefold(), rules._ungated_plan)
    else:
        plan = rules._plan  # odd values (a list?) get every rule: always correct
    for matches, decision in plan:
        if matches(facts):
            return decision
    return rules.default_decision


def segment_gate(condition: Condition) -> frozenset[str] | None:
    """The segments (case-folded) a condition requires at its top level, if it does.

    ``segment: loyal`` requires {loyal}; ``all: [segment: [a, b], ...]`` requires {a, b};
    ``None`` when a customer of any segment might match.
    """
    if isinstance(condition, Compare) and condition.field == "segment":
        if condition.op == "eq":
            values = (condition.value,)
        elif condition.op == "in" and isinstance(condition.value, tuple | list):
            values = tuple(condition.value)
        else:
            return None
        if all(isinstance(value, str) for value in values):
            return frozenset(value.casefold() for value in values)
        return None
    if isinstance(condition, AllOf):
        gates = [gate for part in condition.conditions if (gate := segment_gate(part)) is not None]
        return frozenset.intersection(*gates) if gates else None
    return None
