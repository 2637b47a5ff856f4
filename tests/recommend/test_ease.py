"""The served blend: EASE as sparse rows, ALS + EASE per customer, in the artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import load_artifact, save_artifact
from rasa_personalize.recommend.ease import (
    RECENCY_FLOOR,
    EaseBlend,
    blended_scores,
    ease_item_weights,
    recency_weights,
    sparse_weights,
    standardized,
)
from rasa_personalize.recommend.evaluation import (
    EvaluationData,
    HybridConfig,
    RecommenderConfig,
    _HybridParts,
    pair_ranks,
    tune_blend_on_validation,
    tuned_params,
)
from rasa_personalize.recommend.interactions import InteractionData
from rasa_personalize.recommend.protocols import time_split
from rasa_personalize.recommend.served import ServedModel
from tests.recommend.conftest import block_ratings, seen_items


def pairs_of(model: AlsRecommender, data: InteractionData) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix(
        (
            np.ones(len(data)),
            (
                np.searchsorted(model.user_ids_.ids, data.user_ids),
                np.searchsorted(model.item_ids_.ids, data.item_ids),
            ),
        ),
        shape=(len(model.user_ids_), len(model.item_ids_)),
    )


def test_sparse_weights_are_exact_for_small_catalogues_and_keep_the_largest_else() -> None:
    """Up to MAX_DENSE_ITEMS every weight is kept; pruned rows keep the largest |w|."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(6, 6))
    np.fill_diagonal(dense, 0.0)
    np.testing.assert_allclose(sparse_weights(dense).toarray(), dense, rtol=1e-6)
    pruned = sparse_weights(dense, partners=2).toarray()
    for row in range(6):
        kept = np.flatnonzero(pruned[row])
        assert set(kept) == set(np.argsort(-np.abs(dense[row]))[:2])


def test_customer_scores_are_the_sum_of_their_products_rows(
    checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """scores_for_user equals x @ B computed densely."""
    pairs = pairs_of(checkerboard_model, checkerboard_data)
    blend = EaseBlend.fit(pairs, l2=1.0, weight=0.5)
    dense = ease_item_weights(pairs, 1.0)
    for row in (0, 7, 15):
        expected = pairs[row].toarray().ravel() @ dense
        np.testing.assert_allclose(blend.scores_for_user(row), expected, rtol=1e-4, atol=1e-5)


def test_blend_of_weight_0_ranks_like_als(
    checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """ServedModel with EASE weighted 0 recommends what ALS alone recommends."""
    blend = EaseBlend.fit(pairs_of(checkerboard_model, checkerboard_data), l2=1.0, weight=0.0)
    served, alone = ServedModel(checkerboard_model, blend), ServedModel(checkerboard_model)
    assert (served.kind, alone.kind) == ("als+ease", "als")
    for user in ("A-user-00", "B-user-04"):
        seen = seen_items(checkerboard_data, user)
        ours = [s.item_id for s in served.recommend(user, 3, exclude=seen)]
        theirs = [s.item_id for s in alone.recommend(user, 3, exclude=seen)]
        assert ours == theirs


def test_served_blend_is_what_evaluation_ranks() -> None:
    """The evaluation's hybrid ranker and the served model give the same lists."""
    data = block_ratings()
    config = HybridConfig(tuned_params(), ease_l2=10.0, ease_weight=0.5)
    parts = _HybridParts.fit(data, config.als)
    ranker = parts.ranker(parts.ease(config.ease_l2, config.ease_weight), fallback=None)
    served = ServedModel(
        parts.als, EaseBlend.fit(parts.pairs, l2=config.ease_l2, weight=config.ease_weight)
    )
    for user in ("A-user-00", "B-user-09"):
        assert ranker(user, 5, frozenset()) == [s.item_id for s in served.recommend(user, 5)]


def test_standardized_scores_ignore_disallowed_items() -> None:
    """z-scores use the allowed items' mean and spread; all-equal scores give zeros."""
    scores = np.array([1.0, 2.0, 3.0, 100.0])
    allowed = np.array([True, True, True, False])
    np.testing.assert_allclose(standardized(scores, allowed)[:3], [-1.2247, 0.0, 1.2247], 1e-4)
    assert not standardized(np.ones(4), None).any()
    blended = blended_scores(scores, -scores, 1.0, allowed)
    np.testing.assert_allclose(blended[:3], 0.0, atol=1e-12)


def test_artifact_keeps_the_blend(
    checkerboard_model: AlsRecommender, checkerboard_data: InteractionData, tmp_path: Path
) -> None:
    """Saved with EASE, the artifact loads back as the same blend and recommends alike."""
    blend = EaseBlend.fit(pairs_of(checkerboard_model, checkerboard_data), l2=1.0, weight=0.4)
    saved = save_artifact(checkerboard_model, tmp_path / "als", ease=blend)
    loaded = load_artifact(saved.path)
    assert loaded.metadata.blend == {
        "model": "als+ease",
        "ease_l2": 1.0,
        "ease_weight": 0.4,
        "ease_recency": 0.0,
    }
    assert loaded.served.kind == "als+ease"
    assert loaded.ease is not None
    assert (loaded.ease.weights != blend.weights).nnz == 0
    for user in ("A-user-03", "B-user-08"):
        seen = seen_items(checkerboard_data, user)
        assert [s.item_id for s in loaded.served.recommend(user, 3, exclude=seen)] == [
            s.item_id for s in saved.served.recommend(user, 3, exclude=seen)
        ]
    plain = load_artifact(save_artifact(checkerboard_model, tmp_path / "plain").path)
    assert (plain.ease, plain.served.kind, plain.metadata.blend) == (None, "als", {})


def test_blend_rejects_mismatched_shapes() -> None:
    """Weights and customers' products must agree on the number of items."""
    with pytest.raises(InvalidInputError):
        EaseBlend(scipy.sparse.csr_matrix((3, 3)), scipy.sparse.csr_matrix((2, 4)), 0.2, 1.0)


def test_recency_weights_fade_to_the_floor() -> None:
    """Newest counts 1, ``recency`` places back floor + (1 - floor)/e, far back the
    floor; 0 is off."""
    floor = RECENCY_FLOOR
    assert 0 < floor < 1
    np.testing.assert_allclose(
        recency_weights([0, 10, 1_000], 10.0),
        [1.0, floor + (1 - floor) / np.e, floor],
        rtol=1e-6,
    )
    np.testing.assert_array_equal(recency_weights([0, 5], 0.0), [1.0, 1.0])
    with pytest.raises(InvalidInputError):
        recency_weights([0], -1.0)


def chain_ratings(users: int = 120, items: int = 30, length: int = 10) -> EvaluationData:
    """Each user rates ``length`` consecutive items of a chain, in chain order (5 stars):
    what they rate next follows their newest items, not their oldest."""
    rng = np.random.default_rng(3)
    user_ids, item_ids, times = [], [], []
    for user in range(users):
        start = int(rng.integers(0, items - length + 1))
        for step in range(length):
            user_ids.append(f"user-{user:03d}")
            item_ids.append(f"item-{start + step:02d}")
            times.append(float(user * 100 + step))
    count = len(user_ids)
    return EvaluationData.from_events(
        user_ids,
        item_ids,
        ["rating"] * count,
        [5.0] * count,
        np.ones(count, dtype=bool),
        catalogue_size=items,
        times=times,
    )


def test_pair_ranks_count_from_each_users_newest_pair() -> None:
    """Ranks follow the newest row of each pair, per user; without times all are 0."""
    data = EvaluationData.from_events(
        ["u", "u", "u", "u", "v"],
        ["a", "b", "a", "c", "a"],
        ["rating"] * 5,
        [5.0] * 5,
        np.ones(5, dtype=bool),
        catalogue_size=3,
        times=[0.0, 1.0, 3.0, 2.0, 0.0],
    )
    interactions = InteractionData.from_pairs(["u", "u", "u", "v"], ["a", "b", "c", "a"])
    ranks = pair_ranks(data, interactions, np.array([0, 0, 0, 1]))
    np.testing.assert_array_equal(ranks, [0.0, 2.0, 1.0, 0.0])
    untimed = EvaluationData.from_events(["u"], ["a"], ["rating"], [5.0], [True], catalogue_size=1)
    single = InteractionData.from_pairs(["u"], ["a"])
    np.testing.assert_array_equal(pair_ranks(untimed, single, np.array([0])), [0.0])


def test_served_recency_blend_is_what_evaluation_ranks(tmp_path: Path) -> None:
    """With recency, a customer's EASE input is their products weighted by recency_weights;
    the served model (also after an artifact round trip) ranks as the evaluation does."""
    data = chain_ratings()
    config = HybridConfig(tuned_params(), ease_l2=10.0, ease_weight=1.0, ease_recency=2.0)
    parts = _HybridParts.fit(data, config.als)
    evaluated = parts.ease(config.ease_l2, config.ease_weight, config.ease_recency)
    ranker = parts.ranker(evaluated, fallback=None)
    blend = EaseBlend.fit(
        parts.pairs, l2=10.0, weight=1.0, recency=2.0, ranks=scipy.sparse.csr_matrix(parts.ranks)
    )
    row = parts.als.user_ids_.row("user-000")
    start, end = parts.pairs.indptr[row], parts.pairs.indptr[row + 1]
    expected = recency_weights(parts.ranks.data[start:end] - 1.0, 2.0)
    np.testing.assert_allclose(np.sort(blend.user_items[row].data), np.sort(expected))
    dense = blend.user_items[row].toarray().ravel() @ blend.weights.toarray()
    np.testing.assert_allclose(blend.scores_for_user(row), dense, rtol=1e-5, atol=1e-6)
    saved = save_artifact(parts.als, tmp_path / "als", ease=blend)
    loaded = load_artifact(saved.path)
    assert loaded.metadata.blend["ease_recency"] == 2.0
    assert loaded.ease is not None
    np.testing.assert_allclose(loaded.ease.user_items.toarray(), blend.user_items.toarray())
    for user in ("user-000", "user-050", "user-119"):
        seen = frozenset(data.item_ids[data.user_ids == user].tolist())
        assert ranker(user, 5, seen) == [
            s.item_id for s in loaded.served.recommend(user, 5, exclude=seen)
        ]


def test_time_validation_chooses_recency_when_the_newest_products_predict() -> None:
    """On chains, the newest 20% of each customer's rows follow their newest products:
    validation on a time split picks recency; the customer's whole history does not."""
    data = chain_ratings()
    als = RecommenderConfig(
        AlsParams(factors=8, regularization=1.0, iterations=10, alpha=1.0),
        tuned_params().confidence,
    )
    results = tune_blend_on_validation(
        data,
        als=als,
        l2_grid=(10.0,),
        weight_grid=(0.0, 1.0, 5.0),
        recency_grid=(0.0, 2.0),
        # Two held-out rows per customer: at k 2 a list is either right or not.
        k=2,
        split=time_split,
    )
    assert len(results) == 6
    best = results[0]
    assert (best.config.ease_recency, best.config.ease_weight) == (2.0, 5.0)
    without = max(r.metrics.precision for r in results if r.config.ease_recency == 0.0)
    assert best.metrics.precision > without + 0.3


def test_recency_without_ranks_is_refused() -> None:
    """A blend weighted by recency needs each pair's rank: no silent unweighted input."""
    pairs = scipy.sparse.csr_matrix(np.eye(3))
    with pytest.raises(InvalidInputError):
        EaseBlend.fit(pairs, l2=1.0, weight=1.0, recency=5.0)
    assert EaseBlend.fit(pairs, l2=1.0, weight=1.0).recency == 0.0
