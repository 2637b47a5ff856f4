"""`personalize propensity train` on a real SQLite file: --json, the picture, the errors."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rasa_personalize.cli.propensity import register_commands
from tests.conftest import migrated_store
from tests.propensity.conftest import NOW

runner = CliRunner()
AS_OF = NOW.isoformat()  # the demo shop was seeded at NOW


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """An app with just the propensity group, registered as rasa_personalize.cli does."""
    application = typer.Typer()
    register_commands(application)

    @application.callback()
    def main() -> None:
        """Keep "propensity" a group of its own (typer flattens a lone sub-app)."""

    return application


@pytest.fixture
def shop(demo_shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo shop; the environment points the CLI at it and at a model dir."""
    copy = tmp_path / "shop.db"
    shutil.copyfile(demo_shop, copy)
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{copy}")
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path


def test_json_has_the_issue_keys_and_the_picture_is_written(app: typer.Typer, shop: Path) -> None:
    """--json: one object with auc, pr_auc, brier, both baselines, customers and seconds."""
    picture = shop / "report" / "calibration.png"
    result = runner.invoke(
        app, ["propensity", "train", "--json", "--as-of", AS_OF, "--plot", str(picture)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"auc", "pr_auc", "brier", "baselines", "customers", "seconds"} <= set(summary)
    for name in ("recency", "segment_rule"):
        assert {"auc", "brier"} <= set(summary["baselines"][name])
        assert 0.5 <= summary["baselines"][name]["auc"] <= 1.0
    assert summary["auc"] >= 0.80
    assert summary["customers"] == 2_000
    assert summary["seconds"] > 0
    assert summary["cutoffs"]["source"] == "terciles"
    assert summary["model_path"].startswith(str(shop / "models" / "propensity" / "purchase_7d"))
    assert summary["plot"] == str(picture)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fixed_cut_offs_are_used_and_reported(app: typer.Typer, shop: Path) -> None:
    """--cutoffs 0.1,0.4 bands by those probabilities."""
    result = runner.invoke(
        app, ["propensity", "train", "--json", "--as-of", AS_OF, "--cutoffs", "0.1,0.4"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["cutoffs"] == {"low": 0.1, "high": 0.4, "source": "fixed"}
    assert sum(summary["bands"].values()) == 2_000


def test_bad_cut_offs_are_a_usage_error(app: typer.Typer, shop: Path) -> None:
    """Exit 2 with the rule, before any work."""
    result = runner.invoke(app, ["propensity", "train", "--cutoffs", "0.5,0.2"])
    assert result.exit_code == 2
    assert "0 < LOW < HIGH < 1" in result.output


def test_an_empty_store_is_one_line_and_exit_1(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migrated store without customers: exit 1, one line saying what to do."""
    path = tmp_path / "empty.db"

    async def create() -> None:
        store = await migrated_store(f"sqlite:///{path}")
        await store.dispose()

    asyncio.run(create())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    result = runner.invoke(app, ["propensity", "train"])
    assert result.exit_code == 1
    assert "error: the store has no customers" in result.output
    assert "Traceback" not in result.output


def test_a_store_without_schema_asks_for_the_upgrade(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No tables: the store error names `personalize db upgrade`."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'blank.db'}")
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    result = runner.invoke(app, ["propensity", "train"])
    assert result.exit_code == 1
    assert "personalize db upgrade" in result.output


def test_help_names_the_label_and_the_outputs(app: typer.Typer) -> None:
    """--help explains the split, the baselines and where the score goes."""
    result = runner.invoke(app, ["propensity", "train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for phrase in ("last 7 days", "recency-only", "propensity_purchase_7d", "--cutoffs", "--plot"):
        assert phrase in result.output
