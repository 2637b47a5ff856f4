"""`personalize train` tells what the guardrail decided, and `--force` overrides it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rasa_personalize.cli import train as train_cli
from rasa_personalize.recommend import training
from rasa_personalize.recommend.als import AlsParams
from rasa_personalize.recommend.artifacts import als_dir
from rasa_personalize.recommend.demo_data import ShopTuning, tune_for_store
from rasa_personalize.recommend.evaluation import EvaluationData
from rasa_personalize.recommend.versions import current_version, list_versions
from tests.mid_shop import BAD_ALS, GOOD_ALS, copy_of_mid_shop

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    application = typer.Typer()
    train_cli.register_commands(application)
    return application


@pytest.fixture
def model_dir(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The mid-sized shop as the store, models in the test's directory."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", copy_of_mid_shop(tmp_path_factory, tmp_path))
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "train-cli-test-secret")
    return tmp_path / "models"


def tuning_picks(monkeypatch: pytest.MonkeyPatch, params: AlsParams) -> None:
    """Validation searches ``params`` alone (seconds instead of a minute)."""

    def one_point(data: EvaluationData, **options: Any) -> ShopTuning:
        return tune_for_store(
            data, grid=[params], blend_l2_grid=(50.0,), progress=options.get("progress")
        )

    monkeypatch.setattr(training, "tune_for_store", one_point)


def test_train_reports_the_verdict_and_force_overrides_a_refusal(
    app: typer.Typer, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first model serves; a worse one is kept as a candidate with a warning naming
    both figures and how to serve it anyway (exit 0); --force serves it."""
    tuning_picks(monkeypatch, GOOD_ALS)
    first = runner.invoke(app, ["train"], env={"COLUMNS": "300"})
    assert first.exit_code == 0, first.output
    assert "serves: no model serves yet: the first one serves." in first.stdout
    serving = current_version(als_dir(model_dir))

    tuning_picks(monkeypatch, BAD_ALS)
    refused = runner.invoke(app, ["train", "--precompute"], env={"COLUMNS": "300"})
    assert refused.exit_code == 0, refused.output
    candidate = next(v for v in list_versions(als_dir(model_dir)) if v != serving)
    warning = refused.stderr.strip().splitlines()[-1]  # after the progress bars
    assert warning.startswith(
        f"warning: recommender {candidate} kept as a candidate: precision@10 "
    )
    assert warning.endswith(
        f"`personalize models promote {candidate}` serves it anyway (nothing was precomputed "
        "from it)."
    )
    assert current_version(als_dir(model_dir)) == serving

    forced = runner.invoke(app, ["train", "--force"], env={"COLUMNS": "300"})
    assert forced.exit_code == 0, forced.output
    assert "serves: forced: precision@10 " in forced.stderr.strip().splitlines()[-1]
    assert current_version(als_dir(model_dir)) != serving
