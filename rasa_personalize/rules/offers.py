"""Next-best offer: a rule that lets past outcomes choose among the offers it allows.

A rule's ``then`` (or the defaults, or an experiment arm) may say ``offer_type: best``
and list the candidates, read by :mod:`rasa_personalize.rules.loader`::

    then:
      offer_type: best
      explore: 0.1                 # optional: the share of customers shown a candidate at random
      offers:                      # 2 to 8 candidates, in fallback order
        - {offer_type: discount, discount_pct: 10, value: 6}
        - {offer_type: free_shipping, value: 4}
        - {offer_type: bundle, value: 5}

``value`` is what an accepted offer is worth to the shop (a margin after the offer's
cost, in any unit, the same for every candidate of the rule).

Semantics (:func:`choose_offer`):

- The engine takes the candidate with the highest expected value, P(accept | offer,
  segment) x value, from the acceptance model that ``personalize offers train`` learns
  (:mod:`rasa_personalize.offers`); a tie goes to the candidate listed first.
- It falls back to the first candidate when there is no model yet, or when any candidate
  has fewer exposures in the customer's segment than the model's ``min_exposures``: a
  comparison with an offer nobody has seen is not one.
- With ``explore``, that share of customers (a keyed hash of their key and the rule's
  name, so the same customers on every server and in every session) is shown a candidate
  drawn by the same hash instead: it is how every candidate gathers exposures. Like
  experiments, it needs ``personalization`` consent; without it the customer is not
  explored.
- A decision always holds a concrete offer: the first candidate until the choice is
  made, so ``best`` never reaches a slot, whoever forgets to choose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from rasa_personalize.rules.experiments import ExperimentUnit, position

if TYPE_CHECKING:
    from rasa_personalize.rules.ruleset import Decision

BEST: Final = "best"
# What a candidate may say, and how many a rule may list.
CANDIDATE_KEYS: Final = ("offer_type", "discount_pct", "value")
MIN_CANDIDATES: Final = 2
MAX_CANDIDATES: Final = 8
# The offers a candidate may be: every contract offer but "none" (no offer is not an
# offer to accept).
CANDIDATE_OFFER_TYPES: Final = ("discount", "free_shipping", "exclusive_access", "bundle")

ChoiceReason = Literal["expected_value", "explore", "no_model", "too_little_data"]


def offer_label(offer_type: str, discount_pct: float) -> str:
    """How an offer is named in exposures and in the model: its type, and for a discount
    its size (``discount_10``, ``discount_12.5``), since 10% and 20% off are different
    offers to accept."""
    if offer_type != "discount":
        return offer_type
    size = int(discount_pct) if float(discount_pct).is_integer() else discount_pct
    return f"discount_{size}"


@dataclass(frozen=True, slots=True)
class OfferCandidate:
    """One offer a ``best`` rule may choose, and what its acceptance is worth."""

    offer_type: str
    discount_pct: float
    value: float
    label: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", offer_label(self.offer_type, self.discount_pct))


@dataclass(frozen=True, slots=True)
class BestOffer:
    """A rule's ``offer_type: best``: the candidates (the fallback first) and the share
    of customers explored."""

    candidates: tuple[OfferCandidate, ...]
    explore: float = 0.0

    @property
    def fallback(self) -> OfferCandidate:
        """The first candidate: the answer until the data can choose."""
        return self.candidates[0]


@dataclass(frozen=True, slots=True)
class OfferEstimate:
    """What the model knows of one offer in one segment.

    ``exposures`` and ``accepted`` are counted; ``p_accept`` is the estimated probability
    that a showing is accepted (shrunk towards the offer's rate over all segments).
    """

    exposures: int
    accepted: int
    p_accept: float


class AcceptanceModel(Protocol):
    """What choosing needs from a learned model: see
    :class:`rasa_personalize.offers.model.OfferModel`."""

    @property
    def version(self) -> str:
        """The model's version id."""
        ...

    @property
    def min_exposures(self) -> int:
        """Exposures a candidate needs in a segment before it may be compared."""
        ...

    def estimate(self, offer: str, segment: str) -> OfferEstimate:
        """The estimate for ``offer`` (a label) in ``segment``; zero exposures if unseen."""
        ...


@dataclass(frozen=True, slots=True)
class OfferChoice:
    """Which candidate a ``best`` offer became, and why.

    ``short`` names the first candidate with too little data (``too_little_data``);
    ``model_version`` the model that was asked, if any.
    """

    chosen: int
    reason: ChoiceReason
    short: str | None = None
    model_version: str | None = None


def explore_position(unit: ExperimentUnit, rule: str | None) -> float:
    """The customer's place in [0, 1) for a rule's exploration: a keyed hash, like an
    experiment arm's, of their key and the rule's name."""
    return position(unit.secret, unit.key, f"best offer\x00{rule or ''}")


def pick(
    best: BestOffer,
    model: AcceptanceModel | None,
    segment: str,
    explore_at: float | None = None,
) -> tuple[int, ChoiceReason, str | None]:
    """The chosen candidate's index, the reason, and the candidate short of data if any.

    ``explore_at`` is the customer's :func:`explore_position` (None: not explored).
    """
    candidates = best.candidates
    if explore_at is not None and explore_at < best.explore:
        drawn = int(explore_at / best.explore * len(candidates))
        return min(drawn, len(candidates) - 1), "explore", None
    if model is None:
        return 0, "no_model", None
    needed = model.min_exposures
    chosen, highest = 0, -1.0
    for index, candidate in enumerate(candidates):
        estimate = model.estimate(candidate.label, segment)
        if estimate.exposures < needed:
            return 0, "too_little_data", candidate.label
        expected = estimate.p_accept * candidate.value
        if expected > highest:  # strictly: a tie keeps the earlier candidate
            chosen, highest = index, expected
    return chosen, "expected_value", None


def choose_offer(
    decision: Decision,
    model: AcceptanceModel | None,
    segment: str,
    unit: ExperimentUnit | None = None,
) -> Decision:
    """``decision`` with its ``best`` offer made concrete; unchanged without one.

    ``unit`` (the customer's key and the experiments' secret) lets a share of customers
    be explored; None explores nobody.
    """
    best = decision.best_offer
    if best is None:
        return decision
    explore_at = explore_position(unit, decision.rule) if unit and best.explore else None
    index, reason, short = pick(best, model, segment, explore_at)
    chosen = best.candidates[index]
    choice = OfferChoice(index, reason, short, model.version if model else None)
    return decision.with_offer(chosen.offer_type, chosen.discount_pct, choice)


@dataclass(frozen=True)
class CandidateRow:
    """One candidate as ``personalize rules explain`` shows it."""

    offer: str
    offer_type: str
    discount_pct: float
    value: float
    exposures: int
    accepted: int
    p_accept: float | None
    expected_value: float | None
    chosen: bool


@dataclass(frozen=True)
class OfferExplanation:
    """The candidates of a ``best`` offer with what the model knows, the choice and why.

    ``reason`` is a :data:`ChoiceReason`, or ``no_marketing_consent`` (no offer at all).
    """

    segment: str
    rows: tuple[CandidateRow, ...]
    reason: str
    why: str
    min_exposures: int | None
    model_version: str | None
    explore: float

    @property
    def chosen(self) -> CandidateRow | None:
        """The candidate shown, None when no offer is made."""
        return next((row for row in self.rows if row.chosen), None)

    def lines(self) -> list[str]:
        """Printable lines: the candidates, then the choice."""
        model = (
            f"model {self.model_version}, at least {self.min_exposures} exposures per offer"
            if self.model_version is not None
            else "no model"
        )
        result = [f"Best offer for segment {self.segment!r} ({model}):"]
        for row in self.rows:
            mark = "->" if row.chosen else "  "
            p = "-" if row.p_accept is None else f"{row.p_accept:.3f}"
            expected = "-" if row.expected_value is None else f"{row.expected_value:.3f}"
            result.append(
                f"  {mark} {row.offer:<18} p={p:<6} x value {row.value:g} = {expected:<7} "
                f"({row.accepted}/{row.exposures} accepted)"
            )
        result.append(f"Chosen: {self.why}")
        return result

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the candidates, the chosen offer's label (None: no offer), why."""
        chosen = self.chosen
        return {
            "segment": self.segment,
            "model_version": self.model_version,
            "min_exposures": self.min_exposures,
            "explore": self.explore,
            "candidates": [
                {
                    "offer": row.offer,
                    "offer_type": row.offer_type,
                    "discount_pct": row.discount_pct,
                    "value": row.value,
                    "p_accept": row.p_accept,
                    "expected_value": row.expected_value,
                    "exposures": row.exposures,
                    "accepted": row.accepted,
                }
                for row in self.rows
            ],
            "chosen": chosen.offer if chosen is not None else None,
            "reason": self.reason,
            "why": self.why,
        }


_WHY: Final[Mapping[str, str]] = {
    "expected_value": "{offer!r}: the highest expected value (p x value)",
    "explore": "{offer!r}: this customer is among the {share} explored, shown a candidate "
    "drawn at random",
    "no_model": "{offer!r}, the rule's first offer: no acceptance model yet "
    "(run `personalize offers train`)",
    "too_little_data": "{offer!r}, the rule's first offer: {short!r} has {exposures} "
    "exposures in segment {segment!r}, fewer than {needed}",
    "no_marketing_consent": "no offer: the customer does not allow marketing",
}


def explain_offer_choice(
    best: BestOffer,
    choice: OfferChoice | None,
    model: AcceptanceModel | None,
    segment: str,
) -> OfferExplanation:
    """What :func:`choose_offer` saw and did (``choice`` None: no offer was made, as for
    a customer without marketing consent)."""
    rows = []
    for index, candidate in enumerate(best.candidates):
        estimate = model.estimate(candidate.label, segment) if model is not None else None
        rows.append(
            CandidateRow(
                offer=candidate.label,
                offer_type=candidate.offer_type,
                discount_pct=candidate.discount_pct,
                value=candidate.value,
                exposures=estimate.exposures if estimate else 0,
                accepted=estimate.accepted if estimate else 0,
                p_accept=estimate.p_accept if estimate else None,
                expected_value=estimate.p_accept * candidate.value if estimate else None,
                chosen=choice is not None and choice.chosen == index,
            )
        )
    reason = choice.reason if choice is not None else "no_marketing_consent"
    short = choice.short if choice is not None else None
    short_row = next((row for row in rows if row.offer == short), None)
    why = _WHY[reason].format(
        offer=best.candidates[choice.chosen].label if choice is not None else None,
        share=f"{best.explore:.0%}",
        short=short,
        exposures=short_row.exposures if short_row else 0,
        segment=segment,
        needed=model.min_exposures if model is not None else 0,
    )
    return OfferExplanation(
        segment=segment,
        rows=tuple(rows),
        reason=reason,
        why=why,
        min_exposures=model.min_exposures if model is not None else None,
        model_version=model.version if model is not None else None,
        explore=best.explore,
    )
