"""The acceptance model: P(accept | offer, segment) from counted exposures and acceptances.

For an offer ``o`` shown ``n`` times in segment ``s``, ``k`` of them accepted (see
:mod:`rasa_personalize.store.offers`), with ``N``, ``K`` the totals over every offer and
segment and ``N_o``, ``K_o`` the offer's totals over its segments::

    m       = K / N                                   every offer's rate, all segments
    mu_o    = (K_o + kappa * m) / (N_o + kappa)       the offer's rate, shrunk towards m
    p(o, s) = (k + kappa * mu_o) / (n + kappa)        the estimate the engine uses

``p(o, s)`` is the posterior mean under a Beta prior of mean ``mu_o`` worth ``kappa``
exposures (``prior_strength``): the prior's mean is learned from the data (empirical
Bayes), so a segment with few exposures leans on what the offer does elsewhere, and a
segment with many speaks for itself. An offer or segment the data has never seen gets
its prior mean and zero exposures, and a rule then falls back to its first offer until
every candidate has ``min_exposures`` in the customer's segment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final

from rasa_personalize.offers.errors import OfferInputError
from rasa_personalize.rules.offers import OfferEstimate
from rasa_personalize.store.offers import ACCEPT_KINDS, OfferCount

MAX_WINDOW_DAYS: Final = 90


@dataclass(frozen=True)
class OfferParams:
    """How the model is trained and how much data a comparison needs.

    Attributes:
        goal: the interaction that accepts an offer: ``purchase`` or ``cart``.
        window_days: how long after a showing the goal may come (1 to 90).
        min_exposures: exposures every candidate needs in the customer's segment before
            the engine compares them; below it, a rule's first offer is shown.
        prior_strength: how many exposures the prior (the offer's rate over all
            segments) is worth (above 0).

    Raises:
        OfferInputError: a value is out of range.
    """

    goal: str = "purchase"
    window_days: int = 7
    min_exposures: int = 30
    prior_strength: float = 20.0

    def __post_init__(self) -> None:
        if self.goal not in ACCEPT_KINDS:
            raise OfferInputError(
                f"goal must be one of {', '.join(ACCEPT_KINDS)}, got {self.goal!r}"
            )
        if not 1 <= self.window_days <= MAX_WINDOW_DAYS:
            raise OfferInputError(
                f"window_days must be from 1 to {MAX_WINDOW_DAYS}, got {self.window_days}"
            )
        if self.min_exposures < 1:
            raise OfferInputError(f"min_exposures must be at least 1, got {self.min_exposures}")
        if not self.prior_strength > 0:
            raise OfferInputError(f"prior_strength must be above 0, got {self.prior_strength}")

    def to_dict(self) -> dict[str, Any]:
        """The parameters as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class OfferModel:
    """Acceptance estimates per (offer label, segment), fitted by :meth:`fit`.

    ``version`` is empty until the model is saved (:mod:`rasa_personalize.offers.artifacts`).
    """

    params: OfferParams
    trained_at: datetime
    counts: tuple[OfferCount, ...]
    overall_rate: float
    offer_rates: Mapping[str, float]
    estimates: Mapping[tuple[str, str], OfferEstimate] = field(repr=False)
    version: str = ""

    @classmethod
    def fit(
        cls,
        counts: Sequence[OfferCount],
        params: OfferParams,
        trained_at: datetime,
        version: str = "",
    ) -> OfferModel:
        """Estimate every (offer, segment) of ``counts`` (see the module for the formulas).

        Raises:
            OfferInputError: a count is negative, accepts more than it exposes, or an
                (offer, segment) is given twice.
        """
        seen: set[tuple[str, str]] = set()
        per_offer: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for count in counts:
            if not 0 <= count.accepted <= count.exposures:
                raise OfferInputError(
                    f"offer {count.offer!r} in segment {count.segment!r}: accepted must be "
                    f"from 0 to the exposures ({count.exposures}), got {count.accepted}"
                )
            if (count.offer, count.segment) in seen:
                raise OfferInputError(
                    f"offer {count.offer!r} in segment {count.segment!r} is counted twice"
                )
            seen.add((count.offer, count.segment))
            per_offer[count.offer][0] += count.exposures
            per_offer[count.offer][1] += count.accepted
        kappa = params.prior_strength
        exposures = sum(total[0] for total in per_offer.values())
        accepted = sum(total[1] for total in per_offer.values())
        overall = accepted / exposures if exposures else 0.0
        offer_rates = {
            offer: (offer_accepted + kappa * overall) / (offer_exposures + kappa)
            for offer, (offer_exposures, offer_accepted) in sorted(per_offer.items())
        }
        estimates = {
            (count.offer, count.segment): OfferEstimate(
                count.exposures,
                count.accepted,
                (count.accepted + kappa * offer_rates[count.offer]) / (count.exposures + kappa),
            )
            for count in counts
        }
        ordered = tuple(sorted(counts, key=lambda count: (count.offer, count.segment)))
        return cls(params, trained_at, ordered, overall, offer_rates, estimates, version)

    @property
    def min_exposures(self) -> int:
        """Exposures a candidate needs in a segment before it may be compared."""
        return self.params.min_exposures

    def estimate(self, offer: str, segment: str) -> OfferEstimate:
        """The estimate for ``offer`` in ``segment`` (one dictionary read); an unseen pair
        has zero exposures and the offer's rate (an unseen offer: the overall rate)."""
        found = self.estimates.get((offer, segment))
        if found is not None:
            return found
        return OfferEstimate(0, 0, self.offer_rates.get(offer, self.overall_rate))
