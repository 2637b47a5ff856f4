"""MovieLens-100k: the loader, and the issue's targets measured in one run.

Skipped with the reason when the recbole wheel cannot be fetched (no network). The
evaluation test fits four models on 80,000 ratings; it takes a few seconds. The
time-split test searches 32 ALS fits and 84 blends on validation: a minute or two. The hybrid's
building blocks are also tested on tiny data here, which needs no download.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from rasa_personalize.recommend.datasets import (
    MovieLens100k,
    data_dir,
    fetch_recbole_wheel,
    load_movielens_100k,
)
from rasa_personalize.recommend.errors import DatasetUnavailableError
from rasa_personalize.recommend.evaluation import (
    TUNED_EASE_L2,
    TUNED_EASE_WEIGHT,
    UNTUNED_ALS_PARAMS,
    EvaluationData,
    EvaluationTask,
    HybridConfig,
    RecommenderConfig,
    Split,
    ease_item_weights,
    evaluate_models,
    hybrid_ranker,
    random_split,
    tune_blend_on_validation,
    tuned_params,
)
from tests.recommend.conftest import block_ratings

# Reached on the seed-42 split: 2.01x and 1.48x. The guards leave a little room for
# BLAS rounding on other machines, and catch real regressions.
REACHED_VS_POPULARITY = 1.95
REACHED_VS_UNTUNED_ALS = 1.4


@pytest.fixture(scope="module")
def movielens() -> MovieLens100k:
    try:
        return load_movielens_100k()
    except DatasetUnavailableError as error:
        pytest.skip(f"MovieLens-100k unavailable (recbole wheel not fetched): {error}")


@pytest.fixture(scope="module")
def report(movielens_data: EvaluationData) -> dict:
    data = movielens_data
    return evaluate_models(
        data, dataset="movielens-100k", k=10, extra={"als_tuned": tuned_params()}
    )


@pytest.fixture(scope="module")
def movielens_data(movielens: MovieLens100k) -> EvaluationData:
    return EvaluationData.from_ratings(
        movielens.ratings, catalogue_size=len(movielens.items.item_ids)
    )


def test_loader_reads_the_whole_dataset(movielens: MovieLens100k) -> None:
    """943 users, 1,682 movies, 100,000 ratings in 1..5, demographics and genres."""
    ratings = movielens.ratings
    assert len(ratings) == 100_000
    assert len(set(ratings.user_ids.tolist())) == 943
    assert len(movielens.items.item_ids) == 1682
    assert set(ratings.ratings.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert movielens.users.user_ids[0] == "1"
    assert movielens.users.ages[0] == 24
    assert movielens.users.occupations[0] == "technician"
    assert movielens.items.titles[0] == "Toy Story"
    assert movielens.items.release_years[0] == 1995
    assert movielens.items.genres[0] == ("Animation", "Children's", "Comedy")


def test_missing_wheel_without_download_is_a_clear_error(tmp_path: Path) -> None:
    """With downloading off and an empty cache, the error names the file."""
    with pytest.raises(DatasetUnavailableError, match="not cached"):
        fetch_recbole_wheel(tmp_path, download=False)


def test_data_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """PERSONALIZE_DATA_DIR overrides the cache directory, read at call time."""
    monkeypatch.setenv("PERSONALIZE_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
    monkeypatch.delenv("PERSONALIZE_DATA_DIR")
    assert data_dir().parts[-2:] == (".cache", "rasa-personalize")


def test_recommender_beats_untuned_als_by_1_3x(report: dict) -> None:
    """Target: precision@10 >= 1.3x the untuned implicit ALS, same split, same run."""
    assert report["ratios"]["precision_vs_als_untuned"] >= 1.3


def test_recommender_beats_popularity_by_2x(report: dict) -> None:
    """Target: precision@10 >= 2.0x popularity, same split, same run."""
    assert report["ratios"]["precision_vs_popularity"] >= 2.0


def test_blend_beats_its_als_part(report: dict) -> None:
    """The EASE blend adds precision over the tuned ALS alone on the test split."""
    results = report["results"]
    assert results["recommender"]["precision"] > results["als_tuned"]["precision"]


def test_blend_parameters_are_the_validation_choice(movielens_data: EvaluationData) -> None:
    """TUNED_EASE_L2 and TUNED_EASE_WEIGHT are what the validation grid picks (no test rows)."""
    results = tune_blend_on_validation(movielens_data, als=tuned_params())
    best = results[0].config
    assert (best.ease_l2, best.ease_weight) == (TUNED_EASE_L2, TUNED_EASE_WEIGHT)
    als_alone = next(r for r in results if r.config.ease_weight == 0)
    assert results[0].metrics.precision > als_alone.metrics.precision


def test_figures_do_not_regress(report: dict) -> None:
    """The reached ratios hold (a guard against silent regressions), coverage is broad."""
    assert report["ratios"]["precision_vs_popularity"] >= REACHED_VS_POPULARITY
    assert report["ratios"]["precision_vs_als_untuned"] >= REACHED_VS_UNTUNED_ALS
    results = report["results"]
    assert results["recommender"]["coverage"] > 5 * results["popularity"]["coverage"]
    assert report["users"] == 923


# -- the hybrid's parts on tiny data ----------------------------------------------------


def test_ease_weights_have_zero_diagonal_and_link_co_occurring_items() -> None:
    """Items bought together get positive weights; the diagonal (self-similarity) is 0."""
    # Users 0-2 have items 0 and 1; users 3-5 items 2 and 3.
    rows = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    cols = [0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3]
    pairs = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(6, 4))
    weights = ease_item_weights(pairs, 1.0)
    assert np.allclose(np.diag(weights), 0.0)
    assert weights[0, 1] > 0.5
    assert weights[2, 3] > 0.5
    assert abs(weights[0, 2]) < 1e-9
    assert abs(weights[1, 3]) < 1e-9


def test_hybrid_recommends_unseen_block_items_and_falls_back() -> None:
    """The blend ranks a user's own block first, never a seen item; strangers get the fallback."""
    data = block_ratings()
    task = EvaluationTask.from_split(data, random_split(len(data)))
    config = HybridConfig(
        RecommenderConfig(UNTUNED_ALS_PARAMS, tuned_params().confidence),
        ease_l2=10.0,
        ease_weight=0.5,
    )
    rank = hybrid_ranker(task.train, config, fallback=lambda _user, _k, _seen: ["fallback"])
    for user in task.users:
        seen = task.seen[user]
        ranked = rank(user, 2, seen)
        assert ranked
        assert not set(ranked) & seen
        assert ranked[0].startswith(user[0])
    assert rank("nobody", 2, frozenset()) == ["fallback"]


def test_hybrid_with_weight_0_ranks_like_its_als_part() -> None:
    """ease_weight 0 keeps ALS's order (z-scores do not reorder one model's scores)."""
    als = RecommenderConfig(UNTUNED_ALS_PARAMS, tuned_params().confidence)
    report = evaluate_models(
        block_ratings(),
        dataset="blocks",
        k=3,
        recommender=HybridConfig(als, 10.0, 0.0),
        extra={"als": als},
    )
    assert report["results"]["recommender"] == report["results"]["als"]
    assert report["results"]["als"]["precision"] > 0.3


def test_relevant_items_leave_out_items_seen_in_training() -> None:
    """A test positive on an item the user already has in training is not relevant."""
    # u1 viewed x and bought it later; the purchase lands in test, the view in training.
    data = EvaluationData.from_events(
        ["u1", "u1", "u1"],
        ["x", "x", "y"],
        ["view", "purchase", "purchase"],
        [np.nan, np.nan, np.nan],
        [False, True, True],
        catalogue_size=2,
    )
    task = EvaluationTask.from_split(data, Split(train=np.array([0]), test=np.array([1, 2])))
    assert task.relevant == {"u1": frozenset({"y"})}


def test_time_split_recommender_is_chosen_on_time_validation(
    movielens_data: EvaluationData,
) -> None:
    """On the time split, validation (each customer's newest training rows) picks EASE
    with recency; on the test rows it beats EASE alone and the random split's blend, and
    reaches the 1.99x popularity it did when recorded (guard 1.9x)."""
    from rasa_personalize.recommend.baselines import ease_ranker  # noqa: PLC0415
    from rasa_personalize.recommend.evaluation import (  # noqa: PLC0415
        Ranker,
        build_ranker,
        evaluate_ranker,
        popularity_ranker,
        tuned_model,
    )
    from rasa_personalize.recommend.protocols import (  # noqa: PLC0415
        time_split,
        tune_for_time_split,
    )

    choice = tune_for_time_split(movielens_data, confidence=tuned_params().confidence)[0]
    assert (choice.config.ease_l2, choice.config.ease_weight, choice.config.ease_recency) == (
        500.0,
        2.0,
        5.0,
    )
    task = EvaluationTask.from_split(movielens_data, time_split(movielens_data))
    popularity = popularity_ranker(task.train)

    def precision(ranker: Ranker) -> float:
        return evaluate_ranker(ranker, task, 10).precision

    ours = precision(build_ranker(task.train, choice.config, fallback=popularity))
    assert ours > precision(ease_ranker(task.train, fallback=popularity))
    assert ours > precision(build_ranker(task.train, tuned_model(), fallback=popularity))
    assert ours >= 1.9 * precision(popularity)
