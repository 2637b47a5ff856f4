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
        allocation: fixed          # fixed | thompson (below)

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
- ``allocation: thompson`` cuts the same line by an :class:`Allocation` instead: weights
  that follow the results (``rasa_personalize.experiments.allocation`` computes them in
  the background). A customer already exposed keeps the arm stored with their exposure
  (``pinned``), so that a change of weights moves only customers not yet exposed.
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
from datetime import datetime
from itertools import accumulate
from types import MappingProxyType
from typing import Any, Final

from rasa_personalize.rules.conditions import Condition, Predicate, compile_condition
from rasa_personalize.rules.facts import Facts
from rasa_personalize.rules.ruleset import Decision, resolve_outputs

EXPERIMENT_STATUSES: Final = ("draft", "running", "stopped")
EXPERIMENT_GOALS: Final = ("accept", "chat_click", "cart", "purchase")
EXPERIMENT_ALLOCATIONS: Final = ("fixed", "thompson")
EXPERIMENT_KEYS: Final = (
    "name",
    "description",
    "status",
    "when",
    "arms",
    "goal",
    "window_days",
    "allocation",
    "min_exposures_per_arm",
    "refresh_minutes",
)
# Only for "allocation: thompson".
THOMPSON_KEYS: Final = ("min_exposures_per_arm", "refresh_minutes")
ARM_KEYS: Final = ("name", "weight", "then")
# The outputs used by the session actions (slots) and by the recommendation actions.
SLOT_OUTPUTS: Final = frozenset({"offer_type", "discount_pct", "response_variant"})
OFFER_OUTPUTS: Final = frozenset({"offer_type", "discount_pct"})
RECOMMENDATION_OUTPUTS: Final = frozenset({"max_price", "recommendation_strategy"})
MAX_NAME_LENGTH: Final = 64
MAX_WINDOW_DAYS: Final = 365
# Thompson sampling: the configured weights serve until every arm has this many exposures
# (a handful of early conversions would otherwise swing the weights), ...
DEFAULT_MIN_EXPOSURES_PER_ARM: Final = 100
MAX_MIN_EXPOSURES_PER_ARM: Final = 1_000_000
# ... and the weights are recomputed from the store this often (minutes).
DEFAULT_REFRESH_MINUTES: Final = 5
MIN_REFRESH_MINUTES: Final = 1
MAX_REFRESH_MINUTES: Final = 1_440
# Every arm keeps this share of the traffic whatever the results, so that an arm that was
# unlucky early keeps being measured and can win back traffic.
THOMPSON_FLOOR: Final = 0.05
# With the floor, ten arms already give half the traffic away evenly.
MAX_THOMPSON_ARMS: Final = 10
# The hash's 64 bits as a fraction of 1: a customer's place on the weights' line.
_SCALE: Final = float(2**64)


_NOTHING: Final[Mapping[str, Any]] = MappingProxyType({})


@dataclass(frozen=True)
class Allocation:
    """The weights in force for an adaptive experiment's arms, and what they came from.

    ``shares`` sum to 1, in the order of ``arms``. ``adapted`` is False while some arm has
    fewer than ``min_exposures_per_arm`` exposures: then they are the configured weights.
    ``exposures`` and ``conversions`` are the counts of the store as of ``as_of``.
    """

    arms: tuple[str, ...]
    shares: tuple[float, ...]
    adapted: bool
    as_of: datetime
    exposures: tuple[int, ...]
    conversions: tuple[int, ...]
    bounds: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.arms) or not self.arms:
            raise ValueError("an allocation needs one share per arm")
        total = sum(self.shares)
        object.__setattr__(
            self, "bounds", tuple(upper / total for upper in accumulate(self.shares))
        )

    def share_of(self, arm: str) -> float:
        """The share of eligible customers not yet exposed that ``arm`` gets now.

        Raises:
            ValueError: no arm has that name.
        """
        return self.shares[self.arms.index(arm)]


@dataclass(frozen=True)
class ExperimentUnit:
    """Who is assigned: a customer's (or conversation's) key, and the secret hashing it.

    ``allocations``: the weights in force of adaptive experiments, by experiment name.
    ``pinned``: the arm the customer keeps in an adaptive experiment, by experiment name
    (the arm stored with their exposure).
    """

    key: str
    secret: bytes
    allocations: Mapping[str, Allocation] = field(default_factory=lambda: _NOTHING, compare=False)
    pinned: Mapping[str, str] = field(default_factory=lambda: _NOTHING, compare=False)


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
    allocation: str = "fixed"  # one of EXPERIMENT_ALLOCATIONS
    min_exposures_per_arm: int = DEFAULT_MIN_EXPOSURES_PER_ARM  # thompson only
    refresh_minutes: int = DEFAULT_REFRESH_MINUTES  # thompson only
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

    @property
    def adaptive(self) -> bool:
        """Whether its weights follow the results (``allocation: thompson``)."""
        return self.allocation == "thompson"

    @property
    def arm_names(self) -> tuple[str, ...]:
        """The arms' names, control first."""
        return tuple(arm.name for arm in self.arms)

    def arm_at(self, position: float, allocation: Allocation | None = None) -> Arm:
        """The arm at ``position`` (0 <= position < 1) on the line cut by the weights, or by
        ``allocation``'s shares when it is for these arms (a rule file changed since it
        was computed falls back to the configured weights)."""
        bounds = self._bounds
        if allocation is not None and allocation.arms == self.arm_names:
            bounds = allocation.bounds
        for arm, bound in zip(self.arms, bounds, strict=True):
            if position < bound:
                return arm
        return self.arms[-1]  # rounding at the very end of the line

    def arm_of(self, secret: bytes, unit_key: str, allocation: Allocation | None = None) -> Arm:
        """The arm of ``unit_key`` (a customer or conversation key): see :func:`position`."""
        return self.arm_at(position(secret, unit_key, self.name), allocation)

    def arm_named(self, name: str | None) -> Arm | None:
        """The arm called ``name``, if this experiment has one."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        return None

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
    allocations: Mapping[str, Allocation] = _NOTHING,
    pinned: Mapping[str, str] = _NOTHING,
) -> Decision:
    """The decision after the first running experiment the customer is eligible for.

    Experiments that vary an ``excluded`` output leave the customer out (the offer, for a
    customer without marketing consent: whatever their arm, no offer would be made). An
    adaptive experiment gives the customer their ``pinned`` arm if they have one, else
    cuts the line by its entry in ``allocations`` (the configured weights without one).
    """
    for experiment in experiments:
        if (
            experiment.running
            and experiment.varied.isdisjoint(excluded)
            and experiment.matches(facts)
        ):
            if not experiment.adaptive:
                return apply_arm(decision, experiment, experiment.arm_of(secret, unit_key))
            name = experiment.name
            arm = experiment.arm_named(pinned.get(name)) or experiment.arm_of(
                secret, unit_key, allocations.get(name)
            )
            return apply_arm(decision, experiment, arm)
    return decision


def experiment_named(experiments: tuple[Experiment, ...], name: str | None) -> Experiment | None:
    """The experiment called ``name``, if there is one."""
    for experiment in experiments:
        if experiment.name == name:
            return experiment
    return None
