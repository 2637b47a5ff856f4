"""Features as of a moment: values worked out by hand, and no interaction at or after the
moment ever reaches them (the time split cannot leak the label)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from rasa_personalize.propensity.errors import PropensityInputError
from rasa_personalize.propensity.features import (
    DAYS_CAP,
    FeatureLayout,
    PropensityFeatures,
    compute_features,
    feature_layout,
)
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.propensity import purchasers_between
from rasa_personalize.store.sql_store import SqlStore
from tests.propensity.conftest import CUTOFF, NOW, at, seed_history

# The buyer, as of the cut-off (see seed_history): last purchase 9 days 13 hours before
# it, first seen 60 days 4 hours before it.
BUYER_AS_OF_CUTOFF = {
    "recency_days": 9 + 13 / 24,
    "frequency": 2.0,
    "monetary": 115.0,
    "sessions": 3.0,  # 26 March, 5 May, 15 May
    "tenure_days": 60 + 4 / 24,
    "account_age_days": 100.0,
    "days_since_last_seen": 9 + 13 / 24,
    "interactions": 6.0,  # the assistant's "shown" is not the customer's doing
    "views": 3.0,
    "carts": 1.0,
    "views_14d": 1.0,
    "carts_14d": 1.0,
    "purchases_30d": 1.0,
    "discount_share": 0.5,  # the book at 15 of 20
    "loyalty_tier": 2.0,  # gold
    "hour.morning": 2 / 6,  # 8:00, 9:00
    "hour.afternoon": 0.0,
    "hour.evening": 3 / 6,  # 19:00, 20:00, 21:00
    "hour.night": 1 / 6,  # 23:00
    "channel.app": 4 / 6,
    "channel.web": 2 / 6,
    "device.mobile": 4 / 6,
    "device.desktop": 2 / 6,
    # weights: view 1, cart 3, purchase 5; running 1 + 5 + 1 + 3, books 1 + 5
    "affinity.books": 6 / 16,
    "affinity.running": 10 / 16,
}


async def features_at(store: SqlStore, *, as_of_cutoff: bool = True) -> PropensityFeatures:
    async with store.sessions() as session:
        layout = await feature_layout(session, CUTOFF)
        return await compute_features(session, layout, as_of=CUTOFF if as_of_cutoff else NOW)


async def test_hand_made_history_gives_the_values_worked_out_by_hand(store: SqlStore) -> None:
    """Every column of the buyer, and the zeros and caps of a customer without history."""
    async with store.sessions.begin() as session:
        ids = await seed_history(session)

    features = await features_at(store)

    assert features.names == tuple(BUYER_AS_OF_CUTOFF)
    # The customer created inside the label week is not a training customer.
    assert features.customer_ids.tolist() == [ids.buyer, ids.quiet]
    buyer = dict(zip(features.names, features.matrix[0].tolist(), strict=True))
    assert buyer == pytest.approx(BUYER_AS_OF_CUTOFF, abs=1e-6)
    quiet = dict(zip(features.names, features.matrix[1].tolist(), strict=True))
    capped = {"recency_days": DAYS_CAP, "days_since_last_seen": DAYS_CAP, "account_age_days": 30.0}
    assert quiet == pytest.approx({name: capped.get(name, 0.0) for name in features.names})


async def test_the_label_is_a_purchase_in_the_week(store: SqlStore) -> None:
    """Only the buyer bought between the cut-off and now."""
    async with store.sessions.begin() as session:
        ids = await seed_history(session)
        buyers = await purchasers_between(session, CUTOFF, NOW)
    assert buyers.tolist() == [ids.buyer]


async def test_nothing_at_or_after_the_cut_off_feeds_a_feature(sqlite_store: SqlStore) -> None:
    """Interactions at the cut-off and later (another channel, device and category too)
    change neither the layout nor any value as of the cut-off."""
    async with sqlite_store.sessions.begin() as session:
        ids = await seed_history(session)
    before = await features_at(sqlite_store)
    async with sqlite_store.sessions() as session:
        layout_before = await feature_layout(session, CUTOFF)

    async with sqlite_store.sessions.begin() as session:
        moments = [CUTOFF, CUTOFF + timedelta(microseconds=1), NOW - timedelta(hours=1)]
        session.add_all(
            Interaction(
                event_id=f"late-{customer}-{n}",
                customer_id=customer,
                product_id=None,
                kind=kind,
                quantity=1,
                price=12.0 if kind == "purchase" else None,
                channel="kiosk",
                device="tv",
                category="garden",
                occurred_at=moment,
            )
            for customer in (ids.buyer, ids.quiet)
            for n, (moment, kind) in enumerate(
                [(m, k) for m in moments for k in ("purchase", "view", "cart")]
            )
        )
    after = await features_at(sqlite_store)
    async with sqlite_store.sessions() as session:
        layout_after = await feature_layout(session, CUTOFF)

    assert layout_after == layout_before
    assert after.customer_ids.tolist() == before.customer_ids.tolist()
    np.testing.assert_array_equal(after.matrix, before.matrix)


async def test_features_as_of_now_see_the_label_week(sqlite_store: SqlStore) -> None:
    """Scoring features end at now: the week's purchase is the buyer's latest."""
    async with sqlite_store.sessions.begin() as session:
        ids = await seed_history(session)
    features = await features_at(sqlite_store, as_of_cutoff=False)
    assert features.customer_ids.tolist() == [ids.buyer, ids.quiet, ids.late]
    frequency = features.column("frequency").tolist()
    recency = features.column("recency_days")[0]
    assert frequency == [3.0, 0.0, 0.0]
    # The week's purchase at 11:00, five days and one hour before now.
    assert recency == pytest.approx(5 + 1 / 24)


def test_a_layout_names_its_columns_in_matrix_order() -> None:
    """Base columns, hours, channels, devices, categories, then "other" when some are left."""
    layout = FeatureLayout(("web",), ("mobile",), ("books",), has_other=True)
    assert layout.names()[-6:] == (
        "hour.evening",
        "hour.night",
        "channel.web",
        "device.mobile",
        "affinity.books",
        "affinity.other",
    )


async def test_a_naive_moment_is_refused(sqlite_store: SqlStore) -> None:
    """Times in the store are UTC: a naive as_of is a bug in the caller."""
    async with sqlite_store.sessions() as session:
        with pytest.raises(PropensityInputError, match="timezone-aware"):
            await compute_features(
                session, FeatureLayout((), (), (), False), as_of=at(0).replace(tzinfo=None)
            )
