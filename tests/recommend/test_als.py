"""AlsRecommender: known answers on block data, invariants, strict checks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.ease import EaseBlend
from rasa_personalize.recommend.errors import NotFittedError, UnknownIdError
from rasa_personalize.recommend.filters import ItemCatalogue, RecommendationFilters
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.interactions import InteractionData
from rasa_personalize.recommend.served import ServedModel
from tests.recommend.conftest import HELD_OUT, block_items, block_users, seen_items


def block_of(item_id: str) -> str:
    return item_id.split("-", 1)[0]


@pytest.mark.parametrize(
    "params",
    [
        # the plain model
        {},
        # BM25 weighting keeps the block structure
        {"weighting": "bm25", "bm25_k1": 1.2, "bm25_b": 0.75},
        # log weighting and a larger alpha
        {"weighting": "log", "alpha": 5.0},
    ],
)
def test_block_users_get_their_block_items(
    checkerboard_data: InteractionData, params: dict[str, object]
) -> None:
    """Every user's unseen recommendations are exactly the items left in their block."""
    # Two factors for two blocks: with more, ALS may also learn "position in the block",
    # which both blocks share, and the known answer would no longer be the only one.
    model = AlsRecommender(
        factors=2, regularization=0.1, iterations=20, random_state=0, num_threads=1, **params
    ).fit(checkerboard_data)
    for block in ("A", "B"):
        for user in block_users(block):
            seen = seen_items(checkerboard_data, user)
            result = model.recommend(user, HELD_OUT, exclude=seen)
            assert {scored.item_id for scored in result} == set(block_items(block)) - seen


def test_learned_state_and_id_maps(checkerboard_model: AlsRecommender) -> None:
    """fit sets factors whose rows follow the sorted id maps."""
    model = checkerboard_model
    assert list(model.user_ids_) == sorted(block_users("A") + block_users("B"))
    assert list(model.item_ids_) == sorted(block_items("A") + block_items("B"))
    assert model.user_factors_.shape == (20, 2)
    assert model.item_factors_.shape == (20, 2)
    assert model.user_factors_.dtype == np.float32


def test_same_seed_same_factors(checkerboard_data: InteractionData) -> None:
    """Training is deterministic with a fixed random_state, whatever the thread count."""
    first = AlsRecommender(factors=4, random_state=3, num_threads=1).fit(checkerboard_data)
    second = AlsRecommender(factors=4, random_state=3, num_threads=2).fit(checkerboard_data)
    np.testing.assert_array_equal(first.item_factors_, second.item_factors_)
    np.testing.assert_array_equal(first.user_factors_, second.user_factors_)


def test_batch_equals_one_by_one(
    checkerboard_model: AlsRecommender,
    checkerboard_data: InteractionData,
    checkerboard_catalogue: ItemCatalogue,
) -> None:
    """recommend_batch returns exactly what recommend returns for each user."""
    users = block_users("A") + block_users("B")
    excludes = [seen_items(checkerboard_data, user) for user in users]
    candidates = RecommendationFilters(max_price=80.0).candidates(checkerboard_catalogue)
    for n in (1, 3, 20):
        batch = checkerboard_model.recommend_batch(
            users, n, exclude=excludes, candidates=candidates
        )
        single = [
            checkerboard_model.recommend(user, n, exclude=exclude, candidates=candidates)
            for user, exclude in zip(users, excludes, strict=True)
        ]
        assert batch == single
    assert checkerboard_model.recommend_batch(users, 5) == [
        checkerboard_model.recommend(user, 5) for user in users
    ]
    # top_batch (precompute) gives the same lists as plain values, for ALS and the blend.
    pairs = scipy.sparse.csr_matrix(
        (
            np.ones(len(checkerboard_data)),
            (
                np.searchsorted(checkerboard_model.user_ids_.ids, checkerboard_data.user_ids),
                np.searchsorted(checkerboard_model.item_ids_.ids, checkerboard_data.item_ids),
            ),
        ),
        shape=(len(checkerboard_model.user_ids_), len(checkerboard_model.item_ids_)),
    )
    blend = ServedModel(checkerboard_model, EaseBlend.fit(pairs, l2=10.0, weight=0.5))
    for served in (ServedModel(checkerboard_model), blend):
        lists = served.recommend_batch(users, 7, exclude=excludes)
        assert served.top_batch(users, 7, exclude=excludes) == [
            ([s.item_id for s in scored], [s.score for s in scored]) for scored in lists
        ]


def test_filters_apply_to_als(
    checkerboard_model: AlsRecommender, checkerboard_catalogue: ItemCatalogue
) -> None:
    """In stock (even positions), at most 50 (positions 0-4), block A: only A-sku-00/02/04."""
    filters = RecommendationFilters(n=10, max_price=50.0, category="block-a")
    result = checkerboard_model.recommend(
        "A-user-00", filters.n, candidates=filters.candidates(checkerboard_catalogue)
    )
    assert sorted(s.item_id for s in result) == ["A-sku-00", "A-sku-02", "A-sku-04"]


def test_recalculated_vector_ranks_like_the_model(
    checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """A known user's own items give (nearly) their model vector and the same top items."""
    model = checkerboard_model
    for user in ("A-user-00", "B-user-07"):
        rows = checkerboard_data.user_ids == user
        vector = model.user_vector_from_items(
            checkerboard_data.item_ids[rows].tolist(), checkerboard_data.weights[rows]
        )
        stored = model.user_factors_[model.user_ids_.row(user)]
        cosine = vector @ stored / (np.linalg.norm(vector) * np.linalg.norm(stored))
        assert cosine > 0.99
        seen = seen_items(checkerboard_data, user)
        from_vector = model.recommend_for_vector(vector, HELD_OUT, exclude=seen)
        from_model = model.recommend(user, HELD_OUT, exclude=seen)
        assert [s.item_id for s in from_vector] == [s.item_id for s in from_model]


def test_new_customer_from_session_items(checkerboard_model: AlsRecommender) -> None:
    """Someone who only looked at two B items gets B items; unknown items are ignored."""
    vector = checkerboard_model.user_vector_from_items(["B-sku-01", "B-sku-05", "new-sku"])
    result = checkerboard_model.recommend_for_vector(vector, 5, exclude={"B-sku-01", "B-sku-05"})
    assert {block_of(s.item_id) for s in result} == {"B"}


def test_vector_from_rows_equals_vector_from_items(checkerboard_model: AlsRecommender) -> None:
    """Summing per item first and passing rows gives the same vector as passing events."""
    model = checkerboard_model
    from_items = model.user_vector_from_items(
        ["B-sku-01", "B-sku-05", "B-sku-01", "new-sku"], [1.0, 2.0, 3.0, 5.0]
    )
    rows = [model.item_ids_.row("B-sku-01"), model.item_ids_.row("B-sku-05")]
    from_rows = model.user_vector_from_rows(rows, [4.0, 2.0])
    np.testing.assert_allclose(from_rows, from_items, rtol=1e-6)


@pytest.mark.parametrize(
    ("rows", "weights", "message"),
    [
        ([1, 1], [1.0, 2.0], "must be distinct"),  # not summed per item
        ([1, 99], [1.0, 2.0], "must be in"),  # no such item
        ([1, 2], [1.0, 0.0], "finite and > 0"),  # a pair training would have dropped
        ([], [], "non-empty"),  # nothing to solve from
    ],
)
def test_vector_from_rows_checks_its_input(
    checkerboard_model: AlsRecommender, rows: list[int], weights: list[float], message: str
) -> None:
    """Rows that repeat, do not exist or carry no weight are refused, naming the problem."""
    with pytest.raises(InvalidInputError, match=message):
        checkerboard_model.user_vector_from_rows(rows, weights)


def test_trained_vectors_are_the_exact_solve_of_their_items(
    checkerboard_model: AlsRecommender, checkerboard_data: InteractionData
) -> None:
    """Training ends with an exact user solve: recalculating a user returns their vector."""
    model = checkerboard_model
    for user in model.user_ids_:
        rows = checkerboard_data.user_ids == user
        vector = model.user_vector_from_items(
            checkerboard_data.item_ids[rows].tolist(), checkerboard_data.weights[rows]
        )
        np.testing.assert_allclose(
            vector, model.user_factors_[model.user_ids_.row(user)], rtol=1e-3, atol=1e-5
        )


def test_vector_from_unknown_items_only_is_not_found(checkerboard_model: AlsRecommender) -> None:
    """With no known item there is no vector; the caller falls back."""
    with pytest.raises(UnknownIdError, match="none of the 2 items"):
        checkerboard_model.user_vector_from_items(["x", "y"])


def test_similar_items_stay_in_block_and_skip_the_item(
    checkerboard_model: AlsRecommender,
) -> None:
    """Cosine neighbours of an A item are A items, and never the item itself."""
    result = checkerboard_model.similar_items("A-sku-03", 9)
    assert len(result) == 9
    assert "A-sku-03" not in {s.item_id for s in result}
    assert {block_of(s.item_id) for s in result} == {"A"}
    assert all(-1.0001 <= s.score <= 1.0001 for s in result)


def test_unfitted_model_raises_not_fitted() -> None:
    """Every use before fit raises NotFittedError, which is a PersonalizeError."""
    model = AlsRecommender()
    for call in (
        lambda: model.recommend("u"),
        lambda: model.recommend_batch(["u"]),
        lambda: model.similar_items("i"),
        lambda: model.user_vector_from_items(["i"]),
        lambda: model.has_user("u"),
    ):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_unknown_user_is_not_found(checkerboard_model: AlsRecommender) -> None:
    """A customer not in the model raises UnknownIdError (one and in a batch)."""
    assert not checkerboard_model.has_user("stranger")
    with pytest.raises(UnknownIdError, match="'stranger'"):
        checkerboard_model.recommend("stranger")
    with pytest.raises(UnknownIdError, match="'stranger'"):
        checkerboard_model.recommend_batch(["A-user-00", "stranger"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        # no factors
        ({"factors": 0}, "factors must be an int >= 1"),
        # negative regularization
        ({"regularization": -1.0}, "regularization"),
        # unknown weighting
        ({"weighting": "tfidf"}, "weighting must be one of"),
        # BM25 B outside [0, 1]
        ({"bm25_b": 1.5}, "bm25_b"),
        # alpha must be positive
        ({"alpha": 0.0}, "alpha"),
    ],
)
def test_invalid_params_fail_at_fit(
    checkerboard_data: InteractionData, params: dict[str, object], message: str
) -> None:
    """Like scikit-learn, __init__ stores anything and fit says what is wrong."""
    model = AlsRecommender(**params)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=message):
        model.fit(checkerboard_data)


def test_batch_exclude_must_match_users(checkerboard_model: AlsRecommender) -> None:
    """One exclude entry per user, or an error that gives both counts."""
    with pytest.raises(InvalidInputError, match="2 users, 1 entries"):
        checkerboard_model.recommend_batch(["A-user-00", "A-user-01"], exclude=[set()])


def test_n_is_respected_and_checked(checkerboard_model: AlsRecommender) -> None:
    """n caps the list; n=0 gives an empty list; a negative n is an error."""
    assert len(checkerboard_model.recommend("A-user-00", 4)) == 4
    assert checkerboard_model.recommend("A-user-00", 0) == []
    with pytest.raises(InvalidInputError, match="n must be"):
        checkerboard_model.recommend("A-user-00", -1)


def test_progress_callback_counts_iterations(checkerboard_data: InteractionData) -> None:
    """The callback sees (done, total) once per iteration."""
    seen: list[tuple[int, int]] = []
    AlsRecommender(factors=2, iterations=3, num_threads=1).fit(
        checkerboard_data, callback=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_params_round_trip() -> None:
    """params / from_params / get_params describe the same model."""
    params = AlsParams(factors=8, regularization=2.0, weighting="bm25", bm25_k1=1.2)
    model = AlsRecommender.from_params(params)
    assert model.params == params
    assert model.get_params()["bm25_k1"] == 1.2
    assert "factors=8" in repr(model)


def test_from_factors_checks_shapes() -> None:
    """Stored factors must match the id maps and the factor count."""
    with pytest.raises(InvalidInputError, match="item_factors must have shape"):
        AlsRecommender.from_factors(
            AlsParams(factors=2),
            user_ids=IdMap.from_ids(["u"]),
            item_ids=IdMap.from_ids(["a", "b"]),
            user_factors=np.zeros((1, 2)),
            item_factors=np.zeros((3, 2)),
        )


@pytest.mark.parametrize("weighting", ["none", "bm25", "log"])
def test_recalculation_uses_the_training_weighting(weighting: str) -> None:
    """On random overlapping data, every weighting's recalculated vectors match the model.

    The vector is rebuilt with the stored BM25 idf / length norm (or log), so a user's
    own history gives back their vector and their top 10.
    """
    rng = np.random.default_rng(0)
    users = rng.integers(0, 100, 3000)
    items = (users // 10 * 5 + rng.integers(0, 30, 3000)) % 60
    data = InteractionData.from_pairs(
        [f"u{u}" for u in users], [f"i{i}" for i in items], rng.integers(1, 4, 3000)
    )
    model = AlsRecommender(
        factors=8, regularization=1.0, alpha=2.0, weighting=weighting, random_state=0, num_threads=1
    ).fit(data)  # type: ignore[arg-type]
    for user in list(model.user_ids_)[:20]:
        rows = data.user_ids == user
        vector = model.user_vector_from_items(data.item_ids[rows].tolist(), data.weights[rows])
        stored = model.user_factors_[model.user_ids_.row(user)]
        assert vector @ stored / (np.linalg.norm(vector) * np.linalg.norm(stored)) > 0.999
        seen = set(data.item_ids[rows].tolist())
        assert {s.item_id for s in model.recommend_for_vector(vector, 10, exclude=seen)} == {
            s.item_id for s in model.recommend(user, 10, exclude=seen)
        }
