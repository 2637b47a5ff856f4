"""MovieLens-100k: the loader, and the issue's targets measured in one run.

Skipped with the reason when the recbole wheel cannot be fetched (no network). The
evaluation test fits three models on 80,000 ratings; it takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actions.recommend.datasets import (
    MovieLens100k,
    data_dir,
    fetch_recbole_wheel,
    load_movielens_100k,
)
from actions.recommend.errors import DatasetUnavailableError
from actions.recommend.evaluation import EvaluationData, evaluate_models

# Reached on the seed-42 split: 1.97x and 1.44x. The guards leave a little room for
# BLAS rounding on other machines, and catch real regressions.
REACHED_VS_POPULARITY = 1.9
REACHED_VS_UNTUNED_ALS = 1.35


@pytest.fixture(scope="module")
def movielens() -> MovieLens100k:
    try:
        return load_movielens_100k()
    except DatasetUnavailableError as error:
        pytest.skip(f"MovieLens-100k unavailable (recbole wheel not fetched): {error}")


@pytest.fixture(scope="module")
def report(movielens: MovieLens100k) -> dict:
    data = EvaluationData.from_ratings(
        movielens.ratings, catalogue_size=len(movielens.items.item_ids)
    )
    return evaluate_models(data, dataset="movielens-100k", k=10)


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


@pytest.mark.xfail(
    strict=True,
    reason=(
        "target 2.0x popularity not reached: 1.97x (0.276 vs 0.141) with the parameters "
        "tuned on validation; see actions/recommend/evaluation.py"
    ),
)
def test_recommender_beats_popularity_by_2x(report: dict) -> None:
    """Target: precision@10 >= 2.0x popularity, same split, same run."""
    assert report["ratios"]["precision_vs_popularity"] >= 2.0


def test_figures_do_not_regress(report: dict) -> None:
    """The reached ratios hold (a guard against silent regressions), coverage is broad."""
    assert report["ratios"]["precision_vs_popularity"] >= REACHED_VS_POPULARITY
    assert report["ratios"]["precision_vs_als_untuned"] >= REACHED_VS_UNTUNED_ALS
    results = report["results"]
    assert results["recommender"]["coverage"] > 5 * results["popularity"]["coverage"]
    assert report["users"] == 923
