"""A/B experiments in the rule file: who is eligible, which arm they get, what it changes.

An experiment (``experiments:`` in ``personalization.yml``, read by
:mod:`rasa_personalize.rules.loader`)::

    experiments:
      - name: bigger_discount
        status: running            # draft | running | stopped
        when: {segment: price_sensitive}      # the rules' condition language
        arms:
          - {name: control, weight: 50}
          - {name: twenty, weight: 50, then: {discount_pct: 20}}
        goal: purchase             # accept | chat_click | cart | purchase
        window_days: 7

Semantics:

- Only ``running`` experiments change answers; ``draft`` ones wait, ``stopped`` ones keep
  their exposures for the report and give everyone the rules' answer again.
- The rules decide first. Then the first running experiment (in file order) whose
  ``when`` holds for the customer applies: one experiment per answer, so arms of two
  experiments never mix in one customer's offer.
- The arm is a keyed hash of (customer key, experiment name) under the secret key, in
  proportion to the weights: the same arm on every server, replica and restart, and for
  every session. A visitor who is not a verified customer is keyed by the conversation,
  so they keep the arm for that conversation.
- An arm's ``then`` overrides the deciding rule's outputs, like a rule's ``then`` over the
  defaults, with one shortcut: ``discount_pct`` on its own means a discount offer of that
  size. It may also set ``response_variant`` (a contract slot, text), so responses can
  test wording. The first arm is the control; it usually sets nothing.
- An experiment *varies* the outputs any of its arms set. A customer counts as exposed
  when an action used one of those outputs for them (the session actions use the offer
  and ``response_variant``; the recommendation actions use the price cap and strategy),
  whatever their arm, so that exposure never depends on the arm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Any, Final

from rasa_personalize.rules.conditions import Condition, Predicate, compile_condition
from rasa_personalize.rules.facts import Facts
from rasa_personalize.rules.ruleset import Decision, resolve_outputs

EXPERIMENT_STATUSES: Final = ("draft", "running", "stopped")
EXPERIMENT_GOALS: Final = ("accept", "chat_click", "cart", "purchase")
EXPERIMENT_KEYS: Final = ("name", "description", "status", "when", "arms", "goal", "window_days")
ARM_KEYS: Final = ("name", "weight", "then")
# The outputs used by the session actions (slots) and by the recommendation actions.
SLOT_OUTPUTS: Final = frozenset({"offer_type", "discount_pct", "response_variant"})
OFFER_OUTPUTS: Final = frozenset({"offer_type", "discount_pct"})
RECOMMENDATION_OUTPUTS: Final = frozenset({"max_price", "recommendation_strategy"})
MAX_NAME_LENGTH: Final = 64
MAX_WINDOW_DAYS: Final = 365
# The hash's 64 bits as a fraction of 1: a customer's place on the weights' line.
_SCALE: Final = float(2**64)


@dataclass(frozen=True)
class ExperimentUnit:
    """Who is assigned: a customer's (or conversation's) key, and the secret hashing it."""

    key: str
    secret: bytes


@dataclass(frozen=True)
class Arm:
    """One variant: its share of eligible customers and the outputs it overrides."""

    name: str
    weight: float
    then: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """One experiment of the rule file (validated by the loader)."""

    name: str
    status: str
    when: Condition
    arms: tuple[Arm, ...]
    goal: str
    window_days: int
    description: str = ""
    line: int | None = None
    # Derived in __post_init__.
    matches: Predicate = field(init=False, repr=False, compare=False)
    varied: frozenset[str] = field(init=False, repr=False, compare=False)
    _bounds: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        varied = {key for arm in self.arms for key in arm.then}
        if "discount_pct" in varied:
            varied.add("offer_type")  # a discount on its own is a discount offer
        total = sum(arm.weight for arm in self.arms)
        bounds = tuple(upper / total for upper in accumulate(arm.weight for arm in self.arms))
        object.__setattr__(self, "matches", compile_condition(self.when))
        object.__setattr__(self, "varied", frozenset(varied))
        object.__setattr__(self, "_bounds", bounds)

    @property
    def control(self) -> Arm:
        """The first arm: what the others are compared with."""
        return self.arms[0]

    @property
    def running(self) -> bool:
        """Whether it changes answers now."""
        return self.status == "running"

    def arm_at(self, position: float) -> Arm:
        """The arm at ``position`` (0 <= position < 1) on the line cut by the weights."""
        for arm, bound in zip(self.arms, self._bounds, strict=True):
            if position < bound:
                return arm
        return self.arms[-1]  # rounding at the very end of the line

    def arm_of(self, secret: bytes, unit_key: str) -> Arm:
        """The arm of ``unit_key`` (a customer or conversation key): see :func:`position`."""
        return self.arm_at(position(secret, unit_key, self.name))

    def used_by(self, outputs: frozenset[str]) -> bool:
        """Whether an action that uses ``outputs`` exposes a customer to this experiment."""
        return not self.varied.isdisjoint(outputs)


def experiment_secret(secret_key: str) -> bytes:
    """The key arms are hashed under: derived from the service's secret key, so that it is
    the same on every server and no other use of the secret key can reveal it."""
    return hashlib.sha256(f"rasa-personalize experiments\x00{secret_key}".encode()).digest()


def position(secret: bytes, unit_key: str, experiment: str) -> float:
    """A uniform number in [0, 1): keyed BLAKE2b of (experiment, key) under ``secret``.

    Keyed, so that nobody without the secret can tell or steer which arm an id gets; a
    separate hash per experiment, so that arms of different experiments are independent.
    """
    digest = hashlib.blake2b(
        f"{experiment}\x00{unit_key}".encode(), key=secret[:64], digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / _SCALE


def apply_arm(decision: Decision, experiment: Experiment, arm: Arm) -> Decision:
    """``decision`` with ``arm``'s outputs on top, marked with the experiment and arm."""
    outputs = dict(arm.then)
    if "discount_pct" in outputs and "offer_type" not in outputs:
        outputs["offer_type"] = "discount"
    changed = resolve_outputs(decision, outputs, decision.rule) if outputs else decision
    return replace(
        changed,
        response_variant=outputs.get("response_variant", decision.response_variant),
        experiment=experiment.name,
        arm=arm.name,
    )


def assign(
    experiments: tuple[Experiment, ...],
    facts: Facts,
    decision: Decision,
    secret: bytes,
    unit_key: str,
    *,
    excluded: frozenset[str] = frozenset(),
) -> Decision:
    """The decision after the first running experiment the customer is eligible for.

    Experiments that vary an ``excluded`` output leave the customer out (the offer, for a
    customer without marketing consent: whatever their arm, no offer would be made).
    """
    for experiment in experiments:
        if (
            experiment.running
            and experiment.varied.isdisjoint(excluded)
            and experiment.matches(facts)
        ):
            return apply_arm(decision, experiment, experiment.arm_of(secret, unit_key))
    return decision


def experiment_named(experiments: tuple[Experiment, ...], name: str | None) -> Experiment | None:
    """The experiment called ``name``, if there is one."""
    for experiment in experiments:
        if experiment.name == name:
            return experiment
    return None
