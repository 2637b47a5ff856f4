"""`personalize offers train` as a function: a hand-made store with known acceptance rates
gives known estimates, written as a version servers can load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rasa_personalize.offers.artifacts import load_offer_model, offers_dir
from rasa_personalize.offers.errors import NotEnoughDataError
from rasa_personalize.offers.model import OfferParams
from rasa_personalize.offers.training import train_offer_model
from rasa_personalize.recommend.versions import current_version
from rasa_personalize.store.models import OfferExposure
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer, add_interactions, add_product


async def seed_shop(store: SqlStore) -> None:
    """40 at-risk customers shown a 10% discount 10 days ago, 10 of whom bought 2 days
    later; 20 shown a bundle, 8 of whom bought; and one shown a bundle yesterday."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes")
        for index in range(61):
            customer = await add_customer(session, f"customer-{index}")
            offer = "discount_10" if index < 40 else "bundle"
            days_ago = 1 if index == 60 else 10
            at = NOW - timedelta(days=days_ago)
            session.add(
                OfferExposure(
                    customer_key=customer.customer_key,
                    offer=offer,
                    shown_on=at.date(),
                    segment="at_risk",
                    shown_at=at,
                )
            )
            if index < 10 or 40 <= index < 48:
                await add_interactions(session, customer, shoes, "purchase", 1, days_ago=8)


async def test_known_rates_give_known_estimates(sqlite_store: SqlStore, tmp_path: Path) -> None:
    """m = 18/60 = 0.3; kappa = 10: discount mu = (10 + 3) / 50 = 0.26 and
    p = (10 + 2.6) / 50 = 0.252; bundle mu = (8 + 3) / 30 = 11/30 and
    p = (8 + 110/30) / 30 = 0.3889."""
    await seed_shop(sqlite_store)
    params = OfferParams(min_exposures=20, prior_strength=10)
    async with sqlite_store.sessions() as session:
        run = await train_offer_model(session, model_dir=tmp_path, params=params, now=NOW)
    assert (run.exposures, run.accepted, run.outcomes.pending, run.outcomes.customers) == (
        60, 18, 1, 61,
    )  # fmt: skip
    model = run.model
    assert model.overall_rate == pytest.approx(0.3)
    assert model.estimate("discount_10", "at_risk").p_accept == pytest.approx(0.252)
    assert model.estimate("bundle", "at_risk").p_accept == pytest.approx((8 + 110 / 30) / 30)
    assert (model.estimate("bundle", "at_risk").exposures, model.min_exposures) == (20, 20)
    # Written and served: the version on disk loads back the same.
    assert current_version(offers_dir(tmp_path)) == model.version
    loaded = load_offer_model(offers_dir(tmp_path) / model.version)
    assert loaded.estimates == model.estimates
    assert run.seconds > 0


async def test_nothing_old_enough_writes_nothing(sqlite_store: SqlStore, tmp_path: Path) -> None:
    """Every exposure is inside its window: an error that says so, and no version."""
    await seed_shop(sqlite_store)
    async with sqlite_store.sessions() as session:
        with pytest.raises(NotEnoughDataError) as raised:
            await train_offer_model(
                session, model_dir=tmp_path, params=OfferParams(window_days=30), now=NOW
            )
    assert str(raised.value) == (
        "no offer exposure is older than the 30-day window yet (61 still inside it): offers "
        "are recorded while a rule says 'offer_type: best'"
    )
    assert current_version(offers_dir(tmp_path)) is None
