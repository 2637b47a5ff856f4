"""The served blend: EASE as sparse rows, ALS + EASE per customer, in the artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.artifacts import load_artifact, save_artifact
from rasa_personalize.recommend.ease import (
    EaseBlend,
    blended_scores,
    ease_item_weights,
    sparse_weights,
    standardized,
)
from rasa_personalize.recommend.evaluation import (
    HybridConfig,
    _HybridParts,
    tuned_params,
)
from rasa_personalize.recommend.interactions import InteractionData
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
    assert loaded.metadata.blend == {"model": "als+ease", "ease_l2": 1.0, "ease_weight": 0.4}
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
