"""`personalize evaluate` and `personalize import movielens` on small stores (no download).

The commands run on a Typer app of their own (each module's ``register_commands``),
exactly as ``rasa_personalize.cli`` registers them. MovieLens is replaced by the small look-alike of
``test_movielens_import`` wherever the loader is called, so nothing is fetched.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from rasa_personalize.cli import imports as import_cli
from rasa_personalize.cli import train as train_cli
from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.recommend import datasets, demo_data, training
from rasa_personalize.recommend.demo_data import (
    EmptyStoreError,
    ShopTuning,
    load_store_events,
    shop_positives,
    tune_for_store,
)
from rasa_personalize.recommend.errors import DatasetUnavailableError
from rasa_personalize.recommend.evaluation import EvaluationData, random_split
from rasa_personalize.store.repository import rebuild_profile_metrics
from tests.conftest import TEST_SECRET, migrated_store
from tests.mid_shop import GOOD_ALS
from tests.recommend.test_movielens_import import fake_movielens

runner = CliRunner()
SMALL_SHOP = DemoShopConfig(customers=150, products=40, interactions=5_000, days=150, seed=3)
SEEDED_AT = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
METRICS = {"precision", "map", "ndcg", "coverage"}


def make_app() -> typer.Typer:
    app = typer.Typer()
    train_cli.register_commands(app)
    import_cli.register_commands(app)
    return app


APP = make_app()


async def _seed(url: str) -> None:
    store = await migrated_store(url)
    try:
        async with store.sessions.begin() as session:
            await seed_demo_shop(session, SMALL_SHOP, secret_key=TEST_SECRET, now=SEEDED_AT)
            await rebuild_profile_metrics(session)
    finally:
        await store.dispose()


async def _migrate(url: str) -> None:
    store = await migrated_store(url)
    await store.dispose()


async def _events(url: str) -> EvaluationData:
    store = await migrated_store(url)
    try:
        async with store.sessions() as session:
            return await load_store_events(session)
    finally:
        await store.dispose()


@pytest.fixture(scope="module")
def shop_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small seeded demo shop in a SQLite file, shared by this module's tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('shop') / 'shop.db'}"
    asyncio.run(_seed(url))
    return url


@pytest.fixture
def empty_url(tmp_path: Path) -> str:
    """A migrated SQLite store without rows."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    asyncio.run(_migrate(url))
    return url


@pytest.fixture(scope="module")
def demo_json(shop_url: str) -> dict[str, Any]:
    """`evaluate --dataset demo --json` on the seeded shop, run once for several checks."""
    result = runner.invoke(
        APP, ["evaluate", "--dataset", "demo", "--json", "--database-url", shop_url]
    )
    assert result.exit_code == 0, result.output
    parsed: dict[str, Any] = json.loads(result.stdout)  # the whole stdout is one object
    return parsed


@pytest.fixture
def fake_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MovieLens loader returns the small look-alike instead of downloading."""
    monkeypatch.setattr(datasets, "load_movielens_100k", fake_movielens)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The MovieLens loader fails as it does without network."""

    def unavailable() -> None:
        raise DatasetUnavailableError("pip could not download recbole==1.2.1: no network")

    monkeypatch.setattr(datasets, "load_movielens_100k", unavailable)


# -- evaluate --dataset demo -----------------------------------------------------------------


def test_demo_json_has_the_documented_shape(demo_json: dict[str, Any]) -> None:
    """dataset, k and the three required models with four metrics each, plus the ratios."""
    assert demo_json["dataset"] == "demo"
    assert demo_json["k"] == 10
    assert demo_json["seed"] == 42
    assert {"popularity", "als_untuned", "recommender"} <= set(demo_json["results"])
    for figures in demo_json["results"].values():
        assert set(figures) == METRICS
    assert set(demo_json["ratios"]) == {"precision_vs_popularity", "precision_vs_als_untuned"}
    assert demo_json["recommender_config"]["model"] in {"als", "als+ease"}


def test_demo_figures_are_in_range(demo_json: dict[str, Any]) -> None:
    """Every metric is within 0..1, every model covers some of the catalogue, users > 0."""
    assert demo_json["users"] > 0
    for name, figures in demo_json["results"].items():
        assert all(0.0 <= value <= 1.0 for value in figures.values()), name
        assert figures["coverage"] > 0, name
    # The popularity list is the same for everyone but the seen items: narrow coverage.
    results = demo_json["results"]
    assert results["recommender"]["coverage"] > results["popularity"]["coverage"]
    assert results["recommender"]["precision"] > 0


def test_evaluate_says_the_served_model_is_the_recommender(
    shop_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After `train`, `evaluate --dataset demo` names the served artifact and finds it is
    the configuration it evaluated as "recommender" (chosen on the same validation)."""
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    trained = runner.invoke(APP, ["train", "--database-url", shop_url])
    assert trained.exit_code == 0, trained.output
    assert "chosen on validation" in trained.stdout
    result = runner.invoke(
        APP, ["evaluate", "--dataset", "demo", "--json", "--database-url", shop_url]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    served = report["served"]
    assert served["chosen_by"] == "validation"
    assert served["same_as_recommender"] is True
    assert served["model"] == report["recommender_config"]["model"]


def test_time_validation_serves_what_time_evaluation_reports(
    shop_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train --validation time` chooses on each customer's newest interactions and
    `evaluate --validation time` finds the served artifact is the configuration it
    evaluated, recency included. Both search one ALS point (seconds, not a minute)."""

    def one_point(data: EvaluationData, **options: Any) -> ShopTuning:
        return tune_for_store(
            data,
            grid=[GOOD_ALS],
            blend_l2_grid=(50.0,),
            progress=options.get("progress"),
            validation=options["validation"],
        )

    monkeypatch.setattr(training, "tune_for_store", one_point)
    monkeypatch.setattr(demo_data, "tune_for_store", one_point)
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    trained = runner.invoke(APP, ["train", "--validation", "time", "--database-url", shop_url])
    assert trained.exit_code == 0, trained.output
    assert "chosen on validation carved from the store's interactions (time split)" in (
        " ".join(trained.stdout.split())
    )
    arguments = ["evaluate", "--dataset", "demo", "--validation", "time", "--json"]
    result = runner.invoke(APP, [*arguments, "--database-url", shop_url])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["protocol"] == "time"
    served, evaluated = report["served"], report["recommender_config"]
    assert served["same_as_recommender"] is True
    # On this seeded shop time validation blends in EASE with recency: the served
    # artifact's weighted input came from the store's columns, the evaluated one from
    # its events.
    assert served["model"] == evaluated["model"] == "als+ease"
    assert served["ease_recency"] == evaluated["ease_recency"] > 0


def test_demo_table_names_models_and_k(shop_url: str) -> None:
    """Without --json: a table with precision@k for each model, and the chosen parameters."""
    result = runner.invoke(
        APP, ["evaluate", "--dataset", "demo", "--k", "5", "--database-url", shop_url]
    )
    assert result.exit_code == 0, result.output
    for text in ("P@5", "MAP@5", "NDCG@5", "popularity", "als_untuned", "recommender"):
        assert text in result.stdout
    assert "recommender: ALS with" in result.stdout
    assert "target:" not in result.stdout  # the targets are MovieLens figures


def test_empty_store_says_to_seed(empty_url: str) -> None:
    """A migrated but empty store: one line naming `personalize seed-demo`, exit 1."""
    result = runner.invoke(
        APP, ["evaluate", "--dataset", "demo", "--json", "--database-url", empty_url]
    )
    assert result.exit_code == 1
    assert "personalize seed-demo" in result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_unmigrated_store_says_to_upgrade(tmp_path: Path) -> None:
    """A database without the schema is reported as such, not as a traceback."""
    url = f"sqlite:///{tmp_path / 'blank.db'}"
    result = runner.invoke(APP, ["evaluate", "--dataset", "demo", "--database-url", url])
    assert result.exit_code == 1
    assert "personalize db upgrade" in result.output


def test_k_must_be_positive(shop_url: str) -> None:
    """Typer rejects --k 0 before anything runs."""
    result = runner.invoke(
        APP, ["evaluate", "--dataset", "demo", "--k", "0", "--database-url", shop_url]
    )
    assert result.exit_code == 2


# -- evaluate --dataset movielens-100k -------------------------------------------------------


@pytest.mark.usefixtures("no_network")
def test_unavailable_dataset_is_one_line_and_exit_1() -> None:
    """No network: exit 1 with one line that says what is missing, and no JSON."""
    result = runner.invoke(APP, ["evaluate", "--dataset", "movielens-100k", "--json"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "MovieLens-100k is unavailable" in lines[0]
    assert "no network" in lines[0]
    assert result.stdout == ""


@pytest.mark.usefixtures("fake_dataset")
def test_movielens_json_reports_the_hybrid_and_its_als_part() -> None:
    """--dataset movielens-100k: the tuned hybrid, the ALS part alone, the usual shape."""
    result = runner.invoke(APP, ["evaluate", "--dataset", "movielens-100k", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"] == "movielens-100k"
    assert set(report["results"]) == {"popularity", "als_untuned", "recommender", "als_tuned"}
    for figures in report["results"].values():
        assert set(figures) == METRICS
        assert all(0.0 <= value <= 1.0 for value in figures.values())
    config = report["recommender_config"]
    assert config["model"] == "als+ease"
    assert (config["ease_l2"], config["ease_weight"]) == (500.0, 0.2)
    assert config["als"]["factors"] == 64


@pytest.mark.usefixtures("fake_dataset")
def test_movielens_table_prints_the_targets() -> None:
    """The table run states both of the issue's targets with the measured ratios."""
    result = runner.invoke(APP, ["evaluate", "--dataset", "movielens-100k"])
    assert result.exit_code == 0, result.output
    assert "target: precision@10 >= 2x popularity" in result.stdout
    assert "target: precision@10 >= 1.3x untuned ALS" in result.stdout


# -- import movielens ------------------------------------------------------------------------


@pytest.mark.usefixtures("fake_dataset")
def test_import_twice_counts_then_skips_everything(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First run inserts every row; the rerun inserts nothing and skips every row."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    ratings = len(fake_movielens().ratings)
    command = ["import", "movielens", "--json", "--database-url", empty_url]

    first = runner.invoke(APP, command)
    assert first.exit_code == 0, first.output
    counts = json.loads(first.stdout)
    assert counts["customers"] == {"read": 12, "inserted": 12, "skipped": 0}
    assert counts["products"] == {"read": 10, "inserted": 10, "skipped": 0}
    assert counts["ratings"] == {"read": ratings, "inserted": ratings, "skipped": 0}
    assert counts["profiles"] == 12

    again = runner.invoke(APP, command)
    assert again.exit_code == 0, again.output
    counts = json.loads(again.stdout)
    assert counts["customers"] == {"read": 12, "inserted": 0, "skipped": 12}
    assert counts["ratings"] == {"read": ratings, "inserted": 0, "skipped": ratings}

    # The imported ratings are what `evaluate --dataset demo` reads from the store.
    events = asyncio.run(_events(empty_url))
    assert len(events) == ratings
    assert set(events.kinds.tolist()) == {"rating"}


@pytest.mark.usefixtures("fake_dataset")
def test_import_table_reports_read_inserted_skipped(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --json: a table of the three counts per kind of row."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    result = runner.invoke(APP, ["import", "movielens", "--database-url", empty_url])
    assert result.exit_code == 0, result.output
    for text in ("customers", "products", "ratings", "inserted", "skipped", "12 profiles"):
        assert text in result.stdout


@pytest.mark.usefixtures("no_network")
def test_import_without_the_dataset_writes_nothing(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network: exit 1 with one line; the store stays empty."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    result = runner.invoke(APP, ["import", "movielens", "--database-url", empty_url])
    assert result.exit_code == 1
    assert "MovieLens-100k is unavailable" in result.output
    with pytest.raises(EmptyStoreError):
        asyncio.run(_events(empty_url))


# -- the demo protocol's parts -----------------------------------------------------------------


SHOP_EVENTS = [
    # (kind, value, counts as liked)
    ("purchase", np.nan, True),
    ("cart", np.nan, True),
    ("feedback", 1.0, True),  # "yes, I like that recommendation"
    ("feedback", -1.0, False),
    ("view", np.nan, False),
    ("search", np.nan, False),
    ("chat_click", np.nan, False),
    ("rating", 4.0, True),  # imported MovieLens: 4-5 stars
    ("rating", 3.0, False),
]


def test_shop_positives() -> None:
    """Purchases, carts, positive feedback and 4-5 stars are positives; nothing else is."""
    kinds = np.array([kind for kind, _, _ in SHOP_EVENTS])
    values = np.array([value for _, value, _ in SHOP_EVENTS])
    expected = [liked for _, _, liked in SHOP_EVENTS]
    assert shop_positives(kinds, values).tolist() == expected


def test_store_tuning_never_touches_the_test_rows(shop_url: str) -> None:
    """Mark the seed-42 test rows with a kind the weights do not know: tuning still runs."""
    data = asyncio.run(_events(shop_url))
    kinds = data.kinds.astype(object)
    kinds[random_split(len(data)).test] = "test-only"
    marked = EvaluationData.from_events(
        data.user_ids,
        data.item_ids,
        kinds.astype(str),
        data.values,
        data.positive,
        catalogue_size=data.catalogue_size,
    )
    tuning = tune_for_store(marked)
    assert tuning.als_results
    assert tuning.blend_results
    assert tuning.als.params == tuning.als_results[0].params
