"""One run of the pipeline on the mid-sized demo shop: order, outcomes, refusals, failures."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rasa_personalize.pipeline import STAGES
from rasa_personalize.pipeline import run as pipeline_run
from rasa_personalize.pipeline.run import (
    PipelineError,
    PipelineOptions,
    StageResult,
    run_pipeline,
)
from rasa_personalize.recommend.versions import als_dir, current_version
from rasa_personalize.settings import Settings
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store
from tests.mid_shop import BAD_ALS, GOOD_ALS, SEEDED_AT, copy_of_mid_shop

TAG_RULES = """\
version: 1
tags:
  - tag: interested_in_running
    when:
      count: {kind: view, category: running, within_days: 30, at_least: 3}
  - tag: premium
    when:
      feature: monetary
      gte: 1500
"""
# Stages that take a while and that a test of something else can leave out.
SLOW = frozenset({"segment", "tag", "propensity"})


class Recorder:
    """A listener that writes down what it is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.steps: set[tuple[str, str]] = set()

    def stage_started(self, name: str) -> None:
        self.events.append(("started", name))

    def stage_progress(self, name: str, step: str, done: int, total: int) -> None:
        self.steps.add((name, step))

    def stage_finished(self, result: StageResult) -> None:
        self.events.append((result.status, result.name))


@pytest.fixture
def shop_url(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> str:
    """A private copy of the mid-sized demo shop."""
    return copy_of_mid_shop(tmp_path_factory, tmp_path)


@pytest.fixture
async def shop(shop_url: str) -> AsyncIterator[SqlStore]:
    store = SqlStore(shop_url)
    yield store
    await store.dispose()


@pytest.fixture
def settings(tmp_path: Path, shop_url: str) -> Settings:
    """Models in the test's directory, its own tag rules."""
    rules = tmp_path / "tags.yml"
    rules.write_text(TAG_RULES)
    return Settings(
        database_url=shop_url,
        model_dir=tmp_path / "models",
        tags_path=rules,
        secret_key=TEST_SECRET,
    )


def options(**changes: Any) -> PipelineOptions:
    """Now is when the shop was seeded; the recommender gets GOOD_ALS unless told."""
    return replace(PipelineOptions(now=SEEDED_AT, train_params=GOOD_ALS), **changes)


async def test_every_stage_runs_in_order_and_reports(shop: SqlStore, settings: Settings) -> None:
    """metrics, train, segment, tag, propensity, precompute: each ok, timed, with a line;
    both new models serve, and precompute uses the recommender just trained."""
    recorder = Recorder()
    report = await run_pipeline(shop, settings, options(), listener=recorder)
    assert [result.name for result in report.stages] == list(STAGES)
    assert [result.status for result in report.stages] == ["ok"] * len(STAGES)
    assert recorder.events == [
        event for name in STAGES for event in (("started", name), ("ok", name))
    ]
    assert {("train", "training"), ("train", "guardrail"), ("precompute", "precomputing")} <= (
        recorder.steps
    )
    assert all(result.seconds > 0 for result in report.stages)
    recommender, verdict = report.promoted["recommender"]
    assert verdict.promoted
    assert current_version(als_dir(settings.model_dir)) == recommender
    assert report.promoted["propensity"][1].promoted
    details = {result.name: result.detail for result in report.stages}
    assert details["segment"].startswith("600 customers in ")
    assert details["tag"].startswith("2 rules: ")
    assert details["propensity"].startswith(f"propensity model {report.promoted['propensity'][0]}")
    # One list per customer the recommender knows (those with interactions).
    metadata = json.loads((als_dir(settings.model_dir) / recommender / "metadata.json").read_text())
    assert metadata["counts"]["users"] == 510
    assert details["precompute"] == f"510 lists from recommender {recommender}"
    assert report.failed is None

    document = report.to_json_dict()
    assert [stage["name"] for stage in document["stages"]] == list(STAGES)
    assert set(document["stages"][0]) == {"name", "seconds", "status", "detail"}
    assert document["promoted"]["recommender"]["version"] == recommender
    assert document["promoted"]["recommender"]["promoted"] is True
    assert document["failed"] is None


async def test_a_refused_recommender_skips_precompute(shop: SqlStore, settings: Settings) -> None:
    """A worse recommender: train ends `refused` with both figures, precompute is skipped,
    the serving model stays; the stages between still run."""
    first = await run_pipeline(shop, settings, options(skip=SLOW))
    serving = first.promoted["recommender"][0]
    report = await run_pipeline(
        shop, settings, options(skip=frozenset({"segment", "tag"}), train_params=BAD_ALS)
    )
    statuses = {result.name: result.status for result in report.stages}
    assert statuses == {
        "metrics": "ok",
        "train": "refused",
        "segment": "skipped",
        "tag": "skipped",
        "propensity": "ok",
        "precompute": "skipped",
    }
    candidate, verdict = report.promoted["recommender"]
    assert not verdict.promoted
    assert verdict.serving_version == serving
    train = report.stages[1]
    assert train.detail.startswith(f"recommender {candidate} kept as a candidate: precision@10 ")
    assert report.stages[-1].detail == (
        "the new recommender was refused: the serving one and its lists stay"
    )
    assert current_version(als_dir(settings.model_dir)) == serving
    assert report.failed is None
    assert report.to_json_dict()["promoted"]["recommender"]["promoted"] is False


async def test_force_serves_the_worse_recommender(shop: SqlStore, settings: Settings) -> None:
    """--force: train ends ok and the forced verdict says so; precompute runs."""
    await run_pipeline(shop, settings, options(skip=SLOW))
    report = await run_pipeline(
        shop, settings, options(skip=SLOW, train_params=BAD_ALS, force=True)
    )
    version, verdict = report.promoted["recommender"]
    assert verdict.forced
    assert [result.status for result in report.stages] == [
        "ok", "ok", "skipped", "skipped", "skipped", "ok",
    ]  # fmt: skip
    assert current_version(als_dir(settings.model_dir)) == version


async def test_a_failed_stage_ends_the_run(tmp_path: Path, settings: Settings) -> None:
    """An empty store: train fails with the reason; the stages after it are not run."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = await migrated_store(url)
    try:
        recorder = Recorder()
        report = await run_pipeline(store, settings, options(), listener=recorder)
    finally:
        await store.dispose()
    assert [(result.name, result.status) for result in report.stages] == [
        ("metrics", "ok"),
        ("train", "failed"),
        ("segment", "not run"),
        ("tag", "not run"),
        ("propensity", "not run"),
        ("precompute", "not run"),
    ]
    assert report.failed is not None
    assert report.failed.name == "train"
    assert report.failed.detail.startswith("the store has no interactions with products")
    assert ("started", "segment") not in recorder.events
    assert report.to_json_dict()["failed"] == "train"


async def test_a_bug_in_a_stage_is_named_and_logged(
    shop: SqlStore,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected exception fails its stage without its message (it may hold data);
    the log has the traceback."""

    async def broken(job: object) -> tuple[str, str]:
        raise RuntimeError("customer 42 exploded")

    monkeypatch.setitem(pipeline_run._RUNNERS, "metrics", broken)
    with caplog.at_level(logging.ERROR, logger="rasa_personalize.pipeline.run"):
        report = await run_pipeline(shop, settings, options())
    assert report.stages[0].status == "failed"
    assert report.stages[0].detail == "unexpected RuntimeError (the log has the traceback)"
    assert report.stages[1].status == "not run"
    assert any(record.exc_info for record in caplog.records)


async def test_without_a_tag_rule_file_the_tag_stage_is_skipped(
    shop: SqlStore, settings: Settings, tmp_path: Path
) -> None:
    """Tags are optional, as for the event worker: no file, the stage says so."""
    missing = tmp_path / "no-such-tags.yml"
    report = await run_pipeline(
        shop,
        settings,
        options(skip=frozenset(STAGES) - {"tag"}, tag_rules=missing),
    )
    assert report.stages[3].status == "skipped"
    assert report.stages[3].detail == f"no tag rule file at {missing}"


async def test_a_broken_tag_rule_file_stops_before_anything_runs(
    shop: SqlStore, settings: Settings, tmp_path: Path
) -> None:
    """The file is checked first, so a typo does not cost a training run."""
    broken = tmp_path / "broken.yml"
    broken.write_text("version: 1\ntags:\n  - tag: x\n    when: {feature: monetry, gte: 1}\n")
    recorder = Recorder()
    with pytest.raises(PipelineError, match=r"^stage tag: .*broken\.yml") as raised:
        await run_pipeline(shop, settings, options(tag_rules=broken), listener=recorder)
    assert "monetry" in str(raised.value)
    assert recorder.events == []


async def test_an_unknown_stage_is_refused_with_the_list(
    shop: SqlStore, settings: Settings
) -> None:
    """--skip of a stage that does not exist: the error lists the stages."""
    with pytest.raises(PipelineError, match="unknown stage 'trian'; the stages are metrics, train"):
        await run_pipeline(shop, settings, options(skip=frozenset({"trian"})))
