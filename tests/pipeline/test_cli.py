"""`personalize pipeline run|schedule` on real SQLite files: --json, exit codes, signals."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rasa_personalize.cli.pipeline import Stage, register_commands
from rasa_personalize.pipeline import STAGES
from rasa_personalize.recommend import training
from rasa_personalize.recommend.demo_data import ShopTuning, tune_for_store
from rasa_personalize.recommend.evaluation import EvaluationData
from rasa_personalize.recommend.versions import als_dir
from tests.conftest import migrated_store
from tests.mid_shop import GOOD_ALS, SEEDED_AT, copy_of_mid_shop
from tests.pipeline.test_run import TAG_RULES

runner = CliRunner()
SKIP_ALL = [argument for stage in STAGES for argument in ("--skip", stage)]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """An app with just the pipeline group, registered as rasa_personalize.cli does."""
    application = typer.Typer()
    register_commands(application)

    @application.callback()
    def main() -> None:
        """Keep "pipeline" a group of its own (typer flattens a lone sub-app)."""

    return application


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Models and tag rules in the test's directory, a secret of its own."""
    rules = tmp_path / "tags.yml"
    rules.write_text(TAG_RULES)
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PERSONALIZE_TAGS_PATH", str(rules))
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "pipeline-cli-test-secret")
    return tmp_path


@pytest.fixture
def shop(
    environment: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A copy of the mid-sized shop as the store; tuning searches one grid point only,
    so that `train` takes seconds (the search itself is tested with evaluate)."""

    def one_point(data: EvaluationData, **options: Any) -> ShopTuning:
        return tune_for_store(
            data, grid=[GOOD_ALS], blend_l2_grid=(50.0,), progress=options.get("progress")
        )

    monkeypatch.setattr(training, "tune_for_store", one_point)
    url = copy_of_mid_shop(tmp_path_factory, environment)
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", url)
    return url


def test_the_stage_choices_are_the_pipeline_stages() -> None:
    """--skip offers exactly the stages, in their order."""
    assert [stage.value for stage in Stage] == list(STAGES)


def test_run_json_lists_every_stage_in_order(app: typer.Typer, shop: str) -> None:
    """One JSON object on stdout: the six stages in order, each ok and timed, and both
    new models promoted; a line per stage on stderr."""
    result = runner.invoke(app, ["pipeline", "run", "--json", "--as-of", SEEDED_AT.isoformat()])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [stage["name"] for stage in document["stages"]] == list(STAGES)
    assert {stage["status"] for stage in document["stages"]} == {"ok"}
    assert all(stage["seconds"] > 0 for stage in document["stages"])
    assert set(document["promoted"]) == {"recommender", "propensity"}
    recommender = document["promoted"]["recommender"]
    assert recommender["promoted"] is True
    assert recommender["reason"] == "no model serves yet: the first one serves"
    assert document["stages"][-1]["detail"] == (
        f"510 lists from recommender {recommender['version']}"
    )
    assert "ok train in " in result.stderr


def test_run_prints_a_summary_table(app: typer.Typer, shop: str) -> None:
    """Without --json: the table of stages and the recommender's verdict."""
    result = runner.invoke(
        app,
        ["pipeline", "run", "--skip", "segment", "--skip", "tag", "--skip", "propensity"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "Pipeline: " in result.stdout
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert [cell.strip() for cell in rows["segment"].split("│")[2:5]] == ["skipped", "-", "--skip"]
    assert "recommender 20" in result.stdout
    assert ": serves" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "protocol"),
    [
        # without the option: the default of `personalize train`
        ([], "random"),
        # the time-based validation, named as the option spells it
        (["--validation", "time"], "time"),
    ],
)
def test_run_validation_reaches_the_train_stage(
    app: typer.Typer,
    shop: str,
    environment: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    protocol: str,
) -> None:
    """--validation is the train stage's: tuning is asked for that split, and the new
    recommender's metadata records it."""
    asked: list[str] = []

    def one_point(data: EvaluationData, **options: Any) -> ShopTuning:
        asked.append(options["validation"])
        return tune_for_store(
            data,
            grid=[GOOD_ALS],
            blend_l2_grid=(50.0,),
            progress=options.get("progress"),
            validation=options["validation"],
        )

    monkeypatch.setattr(training, "tune_for_store", one_point)
    skip = [argument for stage in STAGES if stage != "train" for argument in ("--skip", stage)]
    result = runner.invoke(app, ["pipeline", "run", "--json", *skip, *arguments])
    assert result.exit_code == 0, result.output
    assert asked == [protocol]
    version = json.loads(result.stdout)["promoted"]["recommender"]["version"]
    metadata = json.loads((als_dir(environment / "models") / version / "metadata.json").read_text())
    assert metadata["metrics"]["validation_protocol"] == protocol


def test_schedule_validation_reaches_the_train_stage(
    app: typer.Typer, shop: str, environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pipeline schedule --validation time` trains each run as `pipeline run` would."""
    asked: list[str] = []

    def one_point(data: EvaluationData, **options: Any) -> ShopTuning:
        asked.append(options["validation"])
        return tune_for_store(
            data, grid=[GOOD_ALS], blend_l2_grid=(50.0,), validation=options["validation"]
        )

    monkeypatch.setattr(training, "tune_for_store", one_point)
    skip = [argument for stage in STAGES if stage != "train" for argument in ("--skip", stage)]
    result = runner.invoke(
        app,
        ["pipeline", "schedule", "--every", "1h", "--runs", "1", "--validation", "time", *skip],
    )
    assert result.exit_code == 0, result.output
    assert asked == ["time"]
    [metadata] = (als_dir(environment / "models")).glob("*/metadata.json")
    assert json.loads(metadata.read_text())["metrics"]["validation_protocol"] == "time"


def test_a_failed_stage_is_named_and_exits_1(
    app: typer.Typer, environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty store: train fails; the JSON says so, the error line names the stage."""
    url = f"sqlite:///{environment / 'empty.db'}"

    async def migrate() -> None:
        await (await migrated_store(url)).dispose()

    asyncio.run(migrate())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", url)
    result = runner.invoke(app, ["pipeline", "run", "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["failed"] == "train"
    assert [stage["status"] for stage in document["stages"]] == [
        "ok", "failed", "not run", "not run", "not run", "not run",
    ]  # fmt: skip
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage train failed: the store has no interactions")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        # a stage that does not exist
        (["run", "--skip", "trian"], "'trian' is not one of"),
        # a duration without its unit
        (["schedule", "--every", "24"], "duration '24' has no unit"),
        # a duration too short for any real run
        (["schedule", "--every", "10s"], "shorter than 1m"),
        # an ISO time that is not one
        (["run", "--as-of", "yesterday"], "'yesterday' is not an ISO time"),
        # a validation train does not know
        (["run", "--validation", "recent"], "'recent' is not one of"),
    ],
)
def test_bad_options_exit_2_with_the_reason(
    app: typer.Typer, environment: Path, arguments: list[str], message: str
) -> None:
    """Usage errors: exit 2 before anything runs, the message says what is wrong."""
    result = runner.invoke(app, ["pipeline", *arguments], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_broken_tag_rule_file_exits_2_before_anything_runs(
    app: typer.Typer, environment: Path
) -> None:
    """The tag rules are read first: one error naming the stage, the file and the line."""
    broken = environment / "broken.yml"
    broken.write_text("version: 1\ntags:\n  - tag: x\n    when: {feature: monetry, gte: 1}\n")
    result = runner.invoke(app, ["pipeline", "run", "--tag-rules", str(broken)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: stage tag: {broken}: 1 problem")
    assert "monetry" in result.stderr
    assert not (environment / "models").exists()


def test_schedule_with_a_run_count_stops_by_itself(app: typer.Typer, environment: Path) -> None:
    """--runs 1 with every stage skipped: one run, then the schedule ends (exit 0)."""
    result = runner.invoke(app, ["pipeline", "schedule", "--every", "1h", "--runs", "1", *SKIP_ALL])
    assert result.exit_code == 0, result.output
    lines = result.stderr
    assert "pipeline every 1h (1 run, the first now)" in lines
    assert "run 1 starts." in lines
    assert "run 1 done (0.0 s)." in lines
    assert "schedule stopped after 1 run." in lines


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_schedule_between_runs(
    environment: Path, number: signal.Signals
) -> None:
    """The real process: after its first run it waits; SIGTERM (or Ctrl-C) ends it
    cleanly, with exit code 0 and the number of runs."""
    command = [
        sys.executable, "-m", "rasa_personalize.cli", "pipeline", "schedule",
        "--every", "1h", *SKIP_ALL,
    ]  # fmt: skip
    env = {**os.environ, "PERSONALIZE_DATABASE_URL": f"sqlite:///{environment / 'x.db'}"}
    process = subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stderr is not None
        seen = read_until(process.stderr, "next run in", timeout_s=60)
        assert "run 1 done" in seen
        process.send_signal(number)
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, seen + rest
    assert f"{number.name}: " not in rest  # nothing was running: no "after the current run"
    assert "schedule stopped after 1 run." in rest


def read_until(stream: Any, marker: str, *, timeout_s: float) -> str:
    """What ``stream`` says up to ``marker`` (fails after ``timeout_s``).

    Read from the file descriptor, not the buffered stream: a buffered ``readline`` may
    swallow the marker's line into its buffer, where ``select`` cannot see it.
    """
    descriptor = stream.fileno()
    selector = selectors.DefaultSelector()
    selector.register(descriptor, selectors.EVENT_READ)
    seen = ""
    while marker not in seen:
        if not selector.select(timeout=timeout_s):
            pytest.fail(f"no {marker!r} within {timeout_s} s; got: {seen}")
        chunk = os.read(descriptor, 4096)
        if not chunk:
            pytest.fail(f"the process ended before {marker!r}; got: {seen}")
        seen += chunk.decode()
    return seen
