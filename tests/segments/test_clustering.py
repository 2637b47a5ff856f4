"""Clustering: determinism, recovery of the demo groups, naming, stability, DBSCAN noise."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import adjusted_rand_score

from rasa_personalize.segments.clustering import CLUSTER_FEATURES, CustomerSegmenter, assign
from rasa_personalize.segments.errors import FeatureMismatchError, NotFittedError, SegmentationError
from rasa_personalize.segments.features import BASE_FEATURES, CustomerFeatures
from rasa_personalize.segments.model import NOISE_CLUSTER, SegmentModel
from rasa_personalize.slots import CUSTOMER_SEGMENTS
from tests.segments.conftest import DemoShop, features_from
from tests.shops import NOW


def segment_ari(demo_shop: DemoShop, segmenter: CustomerSegmenter) -> float:
    """Adjusted Rand index of the segmenter's segments against the true groups."""
    return float(adjusted_rand_score(demo_shop.truth, segmenter.segmentation_.segment_codes))


@pytest.mark.parametrize("method", ["kmeans", "gmm", "dbscan"])
def test_same_seed_same_segmentation(demo_shop: DemoShop, method: str) -> None:
    """Two fits with one seed agree on every cluster, segment, score and centre."""
    first = CustomerSegmenter(method, random_state=3).fit(demo_shop.features)
    second = CustomerSegmenter(method, random_state=3).fit(demo_shop.features)
    a, b = first.segmentation_, second.segmentation_
    np.testing.assert_array_equal(a.clusters, b.clusters)
    np.testing.assert_array_equal(a.segment_codes, b.segment_codes)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert first.model_.centroids == second.model_.centroids
    assert first.model_.archetypes == second.model_.archetypes


@pytest.mark.parametrize(
    "method",
    [
        "kmeans",  # the default: the bar is ARI >= 0.7
        "gmm",  # full covariances fit the groups' shapes better still
    ],
)
def test_true_groups_are_recovered_on_the_demo_shop(demo_shop: DemoShop, method: str) -> None:
    """The segments agree with the generator's six groups: adjusted Rand index >= 0.7."""
    segmenter = CustomerSegmenter(method).fit(demo_shop.features)
    assert segment_ari(demo_shop, segmenter) >= 0.7


def test_big_clusters_are_named_after_their_true_group(demo_shop: DemoShop) -> None:
    """Every cluster holding >= 10 % of customers is named after most of its members' group,
    and every true group ends up mostly in its own segment."""
    segmenter = CustomerSegmenter().fit(demo_shop.features)
    model, segmentation = segmenter.model_, segmenter.segmentation_
    truth = np.array(demo_shop.truth)
    for cluster_id, archetype in zip(model.cluster_ids, model.archetypes, strict=True):
        members = segmentation.clusters == cluster_id
        if members.sum() >= 0.1 * len(truth):
            assert Counter(truth[members]).most_common(1)[0][0] == archetype
    segments = np.array(segmentation.segments())
    for group in CUSTOMER_SEGMENTS:
        assert Counter(segments[truth == group]).most_common(1)[0][0] == group


def test_k_is_chosen_by_silhouette_within_the_range(demo_shop: DemoShop) -> None:
    """K-Means tries every k of the range and keeps the best silhouette."""
    model = CustomerSegmenter(k_range=(4, 8)).fit(demo_shop.features).model_
    candidates = {int(k): v for k, v in model.metrics["k_candidates"].items()}
    assert sorted(candidates) == [4, 5, 6, 7, 8]
    assert model.metrics["k"] == max(candidates, key=lambda k: candidates[k])
    assert len(model.cluster_ids) == model.metrics["k"]


def test_gmm_chooses_k_by_bic(demo_shop: DemoShop) -> None:
    """The mixture keeps the k with the lowest BIC and scores by posterior probability."""
    segmenter = CustomerSegmenter("gmm", k_range=(5, 7)).fit(demo_shop.features)
    candidates = {int(k): v for k, v in segmenter.model_.metrics["k_candidates"].items()}
    assert segmenter.model_.metrics["k"] == min(candidates, key=lambda k: candidates[k])
    scores = segmenter.segmentation_.scores
    assert ((scores >= 1 / 7) & (scores <= 1.0)).all()  # the best of k posteriors


def perturbed(features: CustomerFeatures, seed: int) -> tuple[CustomerFeatures, np.ndarray]:
    """The same shop a little later: money and recency jittered by 3 %, 3 % of customers gone."""
    rng = np.random.default_rng(seed)
    matrix = np.array(features.matrix)
    for name in ("monetary", "recency_days", "relative_price"):
        column = features.names.index(name)
        matrix[:, column] *= rng.uniform(0.97, 1.03, len(matrix))
    kept = rng.random(len(matrix)) > 0.03
    return CustomerFeatures(
        features.customer_ids[kept], matrix[kept], features.names, features.computed_at
    ), kept


@pytest.mark.parametrize(
    ("method", "kept_share"),
    [
        ("kmeans", 0.98),
        # A mixture's soft boundaries move a few more of the customers between clusters
        # near them (0.978 on the demo shop with complementary purchases).
        ("gmm", 0.97),
    ],
)
def test_labels_stay_stable_when_refitted_with_the_previous_model(
    demo_shop: DemoShop, method: str, kept_share: float
) -> None:
    """Slightly changed data and another seed: with the previous model, customers keep their
    cluster id and segment (>= 98 % with k-means, 97 % with a mixture), and every cluster
    is matched."""
    before = CustomerSegmenter(method, random_state=0).fit(demo_shop.features)
    later, kept = perturbed(demo_shop.features, seed=5)
    after = CustomerSegmenter(method, random_state=1).fit(later, previous=before.model_)
    same_cluster = before.segmentation_.clusters[kept] == after.segmentation_.clusters
    same_segment = before.segmentation_.segment_codes[kept] == after.segmentation_.segment_codes
    assert same_cluster.mean() >= kept_share
    assert same_segment.mean() >= kept_share
    assert after.model_.metrics["matched_previous"] == len(before.model_.cluster_ids)
    assert after.model_.metrics["previous_version"] == before.model_.version
    assert set(after.model_.cluster_ids) == set(before.model_.cluster_ids)


def test_a_previous_model_of_another_method_is_ignored(demo_shop: DemoShop) -> None:
    """Only a model of the same method and columns steers ids; others are not matched."""
    gmm = CustomerSegmenter("gmm").fit(demo_shop.features).model_
    kmeans = CustomerSegmenter("kmeans").fit(demo_shop.features, previous=gmm).model_
    assert kmeans.metrics["matched_previous"] == 0
    assert kmeans.metrics["previous_version"] is None


def test_new_clusters_get_ids_never_used_before(demo_shop: DemoShop) -> None:
    """A cluster with no previous counterpart gets a fresh id, not a recycled one."""
    before = CustomerSegmenter(k_range=(6, 6)).fit(demo_shop.features).model_
    after = CustomerSegmenter(k_range=(9, 9), match_distance=0.0).fit(
        demo_shop.features, previous=before
    )
    assert after.model_.metrics["matched_previous"] == 0
    assert min(after.model_.cluster_ids) > max(before.cluster_ids)


def blobs_with_outliers() -> CustomerFeatures:
    """Two tight groups of 60 buyers each, and three far-away customers at the end."""
    rng = np.random.default_rng(0)
    n = 60
    frequency = np.concatenate([rng.normal(3, 0.2, n), rng.normal(11, 0.5, n), [40, 60, 80]])
    recency = np.concatenate([rng.normal(10, 1, n), rng.normal(115, 5, n), [1, 300, 2]])
    monetary = np.concatenate([rng.normal(60, 3, n), rng.normal(1000, 40, n), [9e4, 5, 3e5]])
    sessions = frequency * 3.0
    return features_from(
        {
            "frequency": frequency,
            "recency_days": recency,
            "monetary": monetary,
            "sessions": sessions,
        }
    )


def test_dbscan_noise_goes_to_browser_with_score_zero() -> None:
    """Customers far from every dense group are noise: cluster -1, segment browser, score 0."""
    segmenter = CustomerSegmenter("dbscan", min_samples=10, eps_quantile=0.95).fit(
        blobs_with_outliers()
    )
    segmentation = segmenter.segmentation_
    assert len(segmenter.model_.cluster_ids) == 2
    assert segmentation.clusters[-3:].tolist() == [NOISE_CLUSTER] * 3
    assert segmentation.segments()[-3:] == ["browser"] * 3
    assert segmentation.scores[-3:].tolist() == [0.0, 0.0, 0.0]
    assert (segmentation.clusters[:-3] != NOISE_CLUSTER).all()


def test_dbscan_noise_can_stay_unassigned() -> None:
    """With noise_segment=None, noise customers get no segment at all."""
    segmenter = CustomerSegmenter("dbscan", min_samples=10, eps_quantile=0.95, noise_segment=None)
    segmentation = segmenter.fit(blobs_with_outliers()).segmentation_
    assert segmentation.segments()[-3:] == [None, None, None]
    assert segmentation.sizes()["unassigned"] == 3


def test_a_stored_model_assigns_exactly_like_the_fitted_one(demo_shop: DemoShop) -> None:
    """JSON round trip: the model reads back equal and assigns everyone identically."""
    for method in ("kmeans", "gmm", "dbscan"):
        segmenter = CustomerSegmenter(method).fit(demo_shop.features)
        loaded = SegmentModel.from_json(segmenter.model_.to_json())
        assert loaded == segmenter.model_
        again = assign(loaded, demo_shop.features)
        np.testing.assert_array_equal(again.clusters, segmenter.segmentation_.clusters)
        np.testing.assert_allclose(again.scores, segmenter.segmentation_.scores)


def test_kmeans_scores_are_confidences_between_zero_and_one(demo_shop: DemoShop) -> None:
    """1 - d1/d2: every identical new visitor sits on its centre (score 1)."""
    segmenter = CustomerSegmenter().fit(demo_shop.features)
    scores = segmenter.segmentation_.scores
    assert ((scores >= 0) & (scores <= 1)).all()
    new = np.array(demo_shop.truth) == "new_visitor"
    assert scores[new] == pytest.approx(1.0)


def test_using_an_unfitted_segmenter_is_a_clear_error(demo_shop: DemoShop) -> None:
    """predict before fit raises NotFittedError saying what to do."""
    with pytest.raises(NotFittedError, match="call fit"):
        CustomerSegmenter().predict(demo_shop.features)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "spectral"}, "method must be one of kmeans, gmm, dbscan"),
        ({"k_range": (5, 3)}, "k_range"),
        ({"noise_segment": "vip"}, "noise_segment"),
        ({"eps_quantile": 0.0}, "eps_quantile"),  # a zero radius would make everyone noise
    ],
)
def test_bad_parameters_are_refused_on_fit(
    demo_shop: DemoShop, params: dict[str, object], message: str
) -> None:
    """Parameters are checked when fit runs (the constructor only stores them)."""
    segmenter = CustomerSegmenter(**params)  # type: ignore[arg-type]
    with pytest.raises(SegmentationError, match=message):
        segmenter.fit(demo_shop.features)


def test_features_without_a_clustering_column_are_refused() -> None:
    """A missing column is named in the error."""
    features = CustomerFeatures(np.array([1, 2]), np.zeros((2, 1)), ("frequency",), NOW)
    with pytest.raises(FeatureMismatchError, match="recency_days"):
        CustomerSegmenter().fit(features)


def test_no_customers_is_an_error() -> None:
    """Nothing to segment is said plainly."""
    empty = CustomerFeatures(
        np.zeros(0, np.int64), np.zeros((0, len(BASE_FEATURES))), BASE_FEATURES, NOW
    )
    with pytest.raises(SegmentationError, match="no customers"):
        CustomerSegmenter().fit(empty)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=arrays(
        np.float64,
        st.tuples(st.integers(1, 30), st.just(len(CLUSTER_FEATURES))),
        elements=st.floats(0, 500, allow_nan=False),
    ),
    method=st.sampled_from(["kmeans", "gmm", "dbscan"]),
)
def test_any_small_shop_is_segmented_into_contract_segments(data: np.ndarray, method: str) -> None:
    """Whatever the (non-negative) features, fitting works and yields contract segments."""
    features = features_from(dict(zip(CLUSTER_FEATURES, data.T, strict=True)))
    segmenter = CustomerSegmenter(method, k_range=(2, 4), sample_size=20).fit(features)
    segments = segmenter.segmentation_.segments()
    assert len(segments) == len(features)
    assert set(segments) <= set(CUSTOMER_SEGMENTS)
    assert set(segmenter.model_.archetypes) <= set(CUSTOMER_SEGMENTS)
    scores = segmenter.segmentation_.scores
    assert ((scores >= 0) & (scores <= 1)).all()


def test_a_shop_of_one_customer_is_segmented_by_every_method() -> None:
    """Found by the property test above: a Gaussian mixture cannot fit one point."""
    one = np.zeros((1, len(CLUSTER_FEATURES)))
    for method in ("kmeans", "gmm", "dbscan"):
        test_any_small_shop_is_segmented_into_contract_segments.hypothesis.inner_test(  # type: ignore[attr-defined]
            one, method
        )
