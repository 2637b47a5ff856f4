"""The acceptance model: per (offer, segment) rates shrunk towards the offer's rate, on
counts whose right answer is worked out by hand."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from rasa_personalize.offers.errors import OfferInputError
from rasa_personalize.offers.model import OfferModel, OfferParams
from rasa_personalize.rules.offers import OfferEstimate
from rasa_personalize.store.offers import OfferCount

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
# 200 exposures, 30 accepted: every offer's rate m = 0.15.
COUNTS = [
    OfferCount("discount_10", "at_risk", 100, 20),
    OfferCount("discount_10", "browser", 50, 5),
    OfferCount("bundle", "at_risk", 40, 4),
    OfferCount("bundle", "browser", 10, 1),
]


def test_rates_are_shrunk_towards_the_offer_then_towards_every_offer() -> None:
    """kappa = 20. discount_10: mu = (25 + 20 x 0.15) / (150 + 20) = 28/170; bundle:
    mu = (5 + 3) / (50 + 20) = 8/70. Then p = (k + 20 mu) / (n + 20)."""
    model = OfferModel.fit(COUNTS, OfferParams(prior_strength=20), NOW)
    assert model.overall_rate == pytest.approx(0.15)
    assert model.offer_rates == pytest.approx({"discount_10": 28 / 170, "bundle": 8 / 70})
    assert model.estimate("discount_10", "at_risk") == OfferEstimate(
        100,
        20,
        pytest.approx(33 / 170),  # (20 + 56/17) / 120
    )
    assert model.estimate("discount_10", "browser").p_accept == pytest.approx(141 / 1190)
    assert model.estimate("bundle", "at_risk").p_accept == pytest.approx(11 / 105)
    assert model.estimate("bundle", "browser").p_accept == pytest.approx(23 / 210)


def test_an_unseen_pair_has_no_exposures_and_the_prior() -> None:
    model = OfferModel.fit(COUNTS, OfferParams(prior_strength=20), NOW)
    # A segment the offer was never shown in: the offer's rate.
    assert model.estimate("bundle", "loyal") == OfferEstimate(0, 0, pytest.approx(8 / 70))
    # An offer never shown: every offer's rate.
    assert model.estimate("free_shipping", "at_risk") == OfferEstimate(0, 0, pytest.approx(0.15))


def test_a_weak_prior_lets_the_counts_speak_and_a_strong_one_pools_them() -> None:
    weak = OfferModel.fit(COUNTS, OfferParams(prior_strength=0.001), NOW)
    assert weak.estimate("bundle", "browser").p_accept == pytest.approx(0.1, abs=1e-3)
    strong = OfferModel.fit(COUNTS, OfferParams(prior_strength=1e9), NOW)
    assert strong.estimate("bundle", "browser").p_accept == pytest.approx(0.15, abs=1e-6)


def test_no_exposures_at_all_gives_zero_rates() -> None:
    model = OfferModel.fit([], OfferParams(), NOW)
    assert model.estimate("bundle", "at_risk") == OfferEstimate(0, 0, 0.0)


def test_the_model_keeps_its_counts_in_order_and_its_threshold() -> None:
    model = OfferModel.fit(list(reversed(COUNTS)), OfferParams(min_exposures=45), NOW)
    assert [(c.offer, c.segment) for c in model.counts] == [
        ("bundle", "at_risk"), ("bundle", "browser"),
        ("discount_10", "at_risk"), ("discount_10", "browser"),
    ]  # fmt: skip
    assert (model.min_exposures, model.version, model.trained_at) == (45, "", NOW)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        # More accepted than shown.
        ([OfferCount("bundle", "loyal", 3, 4)], "accepted must be from 0 to the exposures (3)"),
        # A negative count.
        ([OfferCount("bundle", "loyal", 3, -1)], "accepted must be from 0 to the exposures"),
        # One cell twice.
        ([OfferCount("bundle", "loyal", 3, 1)] * 2, "'bundle' in segment 'loyal' is counted twice"),
    ],
)
def test_impossible_counts_are_refused(counts: list[OfferCount], message: str) -> None:
    with pytest.raises(OfferInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OfferModel.fit(counts, OfferParams(), NOW)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"goal": "view"}, "goal must be one of purchase, cart, got 'view'"),
        ({"window_days": 0}, "window_days must be from 1 to 90, got 0"),
        ({"window_days": 91}, "window_days must be from 1 to 90, got 91"),
        ({"min_exposures": 0}, "min_exposures must be at least 1, got 0"),
        ({"prior_strength": 0}, "prior_strength must be above 0, got 0"),
        ({"prior_strength": float("nan")}, "prior_strength must be above 0, got nan"),
    ],
)
def test_parameters_out_of_range_are_refused(params: dict[str, object], message: str) -> None:
    with pytest.raises(OfferInputError) as raised:
        OfferParams(**params)  # type: ignore[arg-type]
    assert str(raised.value) == message
