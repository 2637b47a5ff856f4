"""The promotion guardrail: the rule itself, and training that keeps a worse model out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from rasa_personalize.recommend import guardrail
from rasa_personalize.recommend.als import AlsParams
from rasa_personalize.recommend.artifacts import als_dir
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.evaluation import EvaluationData, HybridConfig, RecommenderConfig
from rasa_personalize.recommend.guardrail import (
    MIN_HOLDOUT_CUSTOMERS,
    check_recommender,
    config_from_metadata,
    judge,
)
from rasa_personalize.recommend.training import TrainingReport, train_from_store
from rasa_personalize.recommend.versions import (
    METADATA_FILE,
    current_version,
    list_versions,
    serving_history,
)
from rasa_personalize.store.models import PrecomputedRecommendations
from rasa_personalize.store.sql_store import SqlStore
from tests.mid_shop import BAD_ALS, GOOD_ALS, copy_of_mid_shop

# -- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "serving", "force", "promoted", "forced"),
    [
        (0.050, 0.050, False, True, False),  # as good: serves
        (0.0475, 0.050, False, True, False),  # exactly 95 %: serves
        (0.0474, 0.050, False, False, False),  # just below 95 %: a candidate
        (0.020, 0.050, True, True, True),  # far below, but forced
        (0.060, 0.050, True, True, False),  # forced, but not needed: not marked forced
    ],
)
def test_judge_promotes_at_95_percent_of_the_serving_figure(
    candidate: float, serving: float, force: bool, promoted: bool, forced: bool
) -> None:
    """The threshold is 95 % of the serving model's figure, inclusive."""
    verdict = judge("precision@10", candidate, serving, "v-serving", force=force)
    assert verdict.promoted is promoted
    assert verdict.forced is forced
    assert (verdict.candidate, verdict.serving, verdict.serving_version) == (
        candidate,
        serving,
        "v-serving",
    )


def test_a_refusal_names_both_figures_and_the_serving_version() -> None:
    """The reason has the candidate's figure, the serving one's, its version and the bar."""
    verdict = judge("auc", 0.5, 0.75, "v1")
    assert not verdict.promoted
    assert verdict.reason == (
        "kept as a candidate: ROC AUC 0.5000 against 0.7500 for the serving model v1 on "
        "the same hold-out: below 95% of it (0.7125)"
    )


def test_without_a_serving_model_the_first_one_serves() -> None:
    """Nothing to compare with: promoted, and the verdict says why."""
    verdict = judge("precision@10", 0.01, None, None)
    assert verdict.promoted
    assert verdict.serving is None
    assert verdict.reason == "no model serves yet: the first one serves"


def test_config_from_metadata_reads_als_and_the_blend() -> None:
    """ALS parameters from ``params``; a ``blend`` makes it the ALS + EASE hybrid."""
    params = {"factors": 16, "regularization": 10.0, "alpha": 2.0, "weighting": "bm25"}
    als = config_from_metadata({"params": params})
    assert isinstance(als, RecommenderConfig)
    assert als.params == AlsParams(**params)
    blend = config_from_metadata(
        {"params": params, "blend": {"model": "als+ease", "ease_l2": 200.0, "ease_weight": 0.3}}
    )
    assert isinstance(blend, HybridConfig)
    assert (blend.ease_l2, blend.ease_weight, blend.als.params) == (200.0, 0.3, als.params)
    # Without ``ease_recency`` (artifacts older than it) every product counts 1.
    assert blend.ease_recency == 0.0
    recent = config_from_metadata(
        {
            "params": params,
            "blend": {
                "model": "als+ease",
                "ease_l2": 200.0,
                "ease_weight": 2.0,
                "ease_recency": 5.0,
            },
        }
    )
    assert isinstance(recent, HybridConfig)
    assert (recent.ease_weight, recent.ease_recency) == (2.0, 5.0)
    with pytest.raises(ArtifactError, match="parameters"):
        config_from_metadata({"params": {"factors": 0}})


def few_customers() -> EvaluationData:
    """Ten customers with four purchases each, in time order."""
    users = [f"u{n}" for n in range(10) for _ in range(4)]
    items = [f"i{(n + k) % 8}" for n in range(10) for k in range(4)]
    return EvaluationData.from_events(
        users,
        items,
        ["purchase"] * len(users),
        np.full(len(users), np.nan),
        np.ones(len(users), dtype=bool),
        catalogue_size=8,
        times=np.arange(len(users), dtype=np.float64),
    )


def write_serving(directory: Path, metadata: str) -> None:
    version = "20260101T000000000000Z-00000000"
    (directory / version).mkdir(parents=True)
    (directory / version / METADATA_FILE).write_text(metadata)
    (directory / "CURRENT").write_text(version + "\n")


def test_too_few_held_out_customers_are_not_judged(tmp_path: Path) -> None:
    """Fewer than MIN_HOLDOUT_CUSTOMERS customers with a held-out purchase: promoted,
    with the count in the reason, and no figures."""
    write_serving(tmp_path, json.dumps({"params": {"factors": 2}}))
    verdict, figures = check_recommender(
        few_customers(), RecommenderConfig(GOOD_ALS, store_confidence()), tmp_path
    )
    assert verdict.promoted
    assert figures is None
    assert verdict.reason == (
        "too little recent history to compare on (10 customers with a held-out purchase, "
        f"fewer than {MIN_HOLDOUT_CUSTOMERS})"
    )


def test_large_stores_are_compared_on_a_sample_of_customers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above TUNING_CUSTOMERS customers the hold-out is theirs only (here 5 of 10)."""
    monkeypatch.setattr(guardrail, "TUNING_CUSTOMERS", 5)
    write_serving(tmp_path, json.dumps({"params": {"factors": 2}}))
    verdict, _ = check_recommender(
        few_customers(), RecommenderConfig(GOOD_ALS, store_confidence()), tmp_path
    )
    assert verdict.reason.startswith("too little recent history to compare on (5 customers ")


def test_an_unreadable_serving_model_is_replaced(tmp_path: Path) -> None:
    """A serving model whose metadata is broken cannot serve either: the new one does."""
    write_serving(tmp_path, "{not json")
    verdict, _ = check_recommender(
        few_customers(), RecommenderConfig(GOOD_ALS, store_confidence()), tmp_path
    )
    assert verdict.promoted
    assert verdict.reason.startswith("the serving model is unreadable (cannot read")


# -- training behind the guardrail (the mid-sized demo shop) ------------------------------


@pytest.fixture
def shop_url(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> str:
    """A private copy of the mid-sized demo shop."""
    return copy_of_mid_shop(tmp_path_factory, tmp_path)


@pytest.fixture
async def shop(shop_url: str) -> AsyncIterator[SqlStore]:
    """The copy as a store."""
    store = SqlStore(shop_url)
    yield store
    await store.dispose()


async def train(
    store: SqlStore, model_dir: Path, params: AlsParams, *, force: bool = False
) -> TrainingReport:
    return await train_from_store(store, model_dir, params=params, precompute=True, force=force)


async def precomputed_versions(store: SqlStore) -> set[str]:
    async with store.sessions() as session:
        rows = await session.scalars(select(PrecomputedRecommendations.model_version).distinct())
        return set(rows.all())


def holdout_precision(model_dir: Path, version: str) -> float:
    metadata = json.loads((als_dir(model_dir) / version / METADATA_FILE).read_text())
    return float(metadata["metrics"]["holdout_precision"])


async def test_the_first_model_serves_and_keeps_its_holdout_figure(
    shop: SqlStore, tmp_path: Path
) -> None:
    """No model yet: the new one serves; its precision@10 on the hold-out (133 customers'
    newest interactions) is recorded in its metadata."""
    report = await train(shop, tmp_path / "models", GOOD_ALS)
    assert report.promoted
    assert report.guardrail is not None
    assert report.guardrail.reason == "no model serves yet: the first one serves"
    assert current_version(als_dir(tmp_path / "models")) == report.version
    metadata = json.loads(
        (als_dir(tmp_path / "models") / report.version / METADATA_FILE).read_text()
    )
    assert metadata["metrics"]["holdout_users"] == 133
    assert metadata["metrics"]["holdout_precision"] == pytest.approx(0.051, abs=0.003)
    assert metadata["metrics"]["guardrail"]["promoted"] is True


async def test_a_worse_model_is_kept_as_a_candidate(shop: SqlStore, tmp_path: Path) -> None:
    """One ALS sweep of 64 barely regularized factors scores about half the serving
    model's precision@10 on the same hold-out: it stays a candidate, CURRENT and the
    precomputed lists stay with the serving model."""
    models = tmp_path / "models"
    good = await train(shop, models, GOOD_ALS)
    bad = await train(shop, models, BAD_ALS)
    verdict = bad.guardrail
    assert verdict is not None
    assert not bad.promoted
    assert not verdict.promoted
    assert verdict.serving_version == good.version
    assert verdict.serving == pytest.approx(holdout_precision(models, good.version))
    assert verdict.candidate is not None
    assert verdict.serving is not None
    assert verdict.candidate < 0.7 * verdict.serving
    assert verdict.reason.startswith("kept as a candidate: precision@10 ")
    assert f"{verdict.candidate:.4f} against {verdict.serving:.4f}" in verdict.reason
    directory = als_dir(models)
    assert current_version(directory) == good.version
    assert bad.version in list_versions(directory)
    assert serving_history(directory) == [good.version]
    assert bad.precomputed == 0
    assert await precomputed_versions(shop) == {good.version}


async def test_force_serves_a_worse_model_and_says_so(shop: SqlStore, tmp_path: Path) -> None:
    """--force: the worse model serves, its lists are precomputed, the verdict is forced."""
    models = tmp_path / "models"
    good = await train(shop, models, GOOD_ALS)
    forced = await train(shop, models, BAD_ALS, force=True)
    assert forced.promoted
    assert forced.guardrail is not None
    assert forced.guardrail.forced
    assert forced.guardrail.reason.startswith("forced: precision@10 ")
    assert current_version(als_dir(models)) == forced.version
    assert serving_history(als_dir(models)) == [good.version, forced.version]
    assert await precomputed_versions(shop) == {forced.version}


async def test_the_same_configuration_again_serves(shop: SqlStore, tmp_path: Path) -> None:
    """Retrained with the serving model's parameters: the same figure, so it serves."""
    models = tmp_path / "models"
    await train(shop, models, GOOD_ALS)
    again = await train(shop, models, GOOD_ALS)
    assert again.promoted
    assert again.guardrail is not None
    assert again.guardrail.candidate == again.guardrail.serving
