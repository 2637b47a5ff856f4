"""Customer features from SQL aggregates: known answers on a tiny shop, on both backends."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from rasa_personalize.segments.errors import FeatureMismatchError
from rasa_personalize.segments.features import (
    BASE_FEATURES,
    RECENCY_CAP_DAYS,
    CustomerFeatures,
    compute_features,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.segments.conftest import DemoShop
from tests.shops import NOW, build_tiny_shop

# Worked out by hand from the events in build_tiny_shop.
ANA = {
    "recency_days": 10.0,
    "frequency": 2.0,
    "monetary": 80.0 * 2 + 20.0,
    "sessions": 3.0,  # days -10, -40 and -3
    "views_per_session": 3 / 3,
    "click_through": 1 / (3 + 1),
    "discount_share": 1 / 2,  # 80 < 0.95 x 100; the book was paid in full
    "relative_price": (80 / 100 + 20 / 15) / 2,  # category medians: running 100, books 15
    "age": 30.0,
    "gender_female": 1.0,
    "gender_male": 0.0,
    "gender_other": 0.0,
    "loyalty_tier": 2.0,
    "affinity.books": 5 / 15,  # one purchase (weight 5)
    "affinity.running": 10 / 15,  # purchase 5 + three views 1 + chat click 2
}
BEN = {
    "recency_days": RECENCY_CAP_DAYS,  # never bought
    "frequency": 0.0,
    "monetary": 0.0,
    "sessions": 0.0,
    "views_per_session": 0.0,
    "click_through": 0.0,
    "discount_share": 0.0,
    "relative_price": 1.0,
    "age": 40.0,  # unknown: the median of 30 and 50
    "gender_female": 0.0,
    "gender_male": 0.0,
    "gender_other": 0.0,
    "loyalty_tier": 0.0,
    "affinity.books": 0.0,
    "affinity.running": 0.0,
}
CLEO = {
    "recency_days": RECENCY_CAP_DAYS,
    "frequency": 0.0,
    "monetary": 0.0,
    "sessions": 3.0,  # days -5, -60 and -70
    "views_per_session": 4 / 3,
    "click_through": 0.0,
    "discount_share": 0.0,
    "relative_price": 1.0,
    "age": 50.0,
    "gender_female": 0.0,
    "gender_male": 1.0,
    "gender_other": 0.0,
    "loyalty_tier": 1.0,
    "affinity.books": 1 / 4,  # the search had no product: it has no category
    "affinity.running": 3 / 4,
}


async def test_features_of_a_tiny_shop_match_hand_computed_values(store: SqlStore) -> None:
    """Every feature of every customer equals the value worked out by hand (both backends)."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        features = await compute_features(session, now=NOW)
    assert features.names == (*BASE_FEATURES, "affinity.books", "affinity.running")
    assert features.customer_ids.tolist() == sorted(shop.customers.values())
    for name, expected in (("ana", ANA), ("ben", BEN), ("cleo", CLEO)):
        row = features.customer_ids.tolist().index(shop.customers[name])
        actual = dict(zip(features.names, features.matrix[row].tolist(), strict=True))
        assert actual == pytest.approx(expected, abs=1e-9), name


async def test_features_of_some_customers_equal_their_rows_of_all(store: SqlStore) -> None:
    """Restricting to customer ids gives the same rows as computing everyone."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        everyone = await compute_features(session, now=NOW)
        some = await compute_features(
            session, now=NOW, customer_ids=[shop.customers["cleo"], shop.customers["ana"], 999]
        )
    assert some.customer_ids.tolist() == sorted([shop.customers["ana"], shop.customers["cleo"]])
    rows = np.isin(everyone.customer_ids, some.customer_ids)
    columns = [n for n in BASE_FEATURES if n != "age"]  # age imputation depends on the set
    np.testing.assert_allclose(some.columns(columns), everyone.take(rows).columns(columns))


async def test_features_of_an_empty_store_are_an_empty_matrix(store: SqlStore) -> None:
    """No customers: zero rows, the base columns, no error."""
    async with store.sessions() as session:
        features = await compute_features(session, now=NOW)
    assert len(features) == 0
    assert features.matrix.shape == (0, len(BASE_FEATURES))


async def test_progress_reports_reach_the_customer_count(store: SqlStore) -> None:
    """Both streamed stages report progress up to the number of customers."""
    seen: dict[str, tuple[int, int]] = {}
    async with store.sessions.begin() as session:
        await build_tiny_shop(session)
        await compute_features(
            session,
            now=NOW,
            progress=lambda stage, done, total: seen.update({stage: (done, total)}),
        )
    assert seen == {"features": (3, 3), "categories": (3, 3)}


async def test_naive_now_is_refused(sqlite_store: SqlStore) -> None:
    """Recency needs an aware 'now': a naive one is an error that says so."""
    async with sqlite_store.sessions() as session:
        with pytest.raises(FeatureMismatchError, match="timezone-aware"):
            await compute_features(session, now=datetime(2026, 1, 1))


def test_demo_features_agree_with_the_profile_metrics(demo_shop: DemoShop) -> None:
    """On the demo shop, the features are finite and the groups differ where they should."""
    features = demo_shop.features
    truth = np.array(demo_shop.truth)
    assert len(features) == 2000
    assert np.isfinite(features.matrix).all()
    frequency = features.column("frequency")
    recency = features.column("recency_days")
    assert (frequency[truth == "new_visitor"] == 0).all()
    assert (features.column("sessions")[truth == "new_visitor"] == 0).all()
    # Lapsed customers were quiet for 100 days; active ones bought within 45.
    assert (recency[truth == "at_risk"] > 90).all()
    assert (recency[truth == "loyal"] < 46).all()
    assert (features.column("discount_share")[truth == "price_sensitive"] >= 0.6).all()


def test_feature_matrix_is_read_only_and_checked() -> None:
    """The arrays of a CustomerFeatures cannot be changed, and bad shapes are refused."""
    features = CustomerFeatures(np.array([1, 2]), np.zeros((2, 1)), ("frequency",), NOW)
    with pytest.raises(ValueError, match="read-only"):
        features.matrix[0, 0] = 1.0
    with pytest.raises(FeatureMismatchError, match="shape"):
        CustomerFeatures(np.array([1]), np.zeros((2, 1)), ("frequency",), NOW)
    with pytest.raises(FeatureMismatchError, match="finite"):
        CustomerFeatures(np.array([1]), np.array([[np.nan]]), ("frequency",), NOW)
    with pytest.raises(FeatureMismatchError, match="'monetary'"):
        features.column("monetary")
