"""`personalize segment` and `personalize tag` on a real SQLite file."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rasa_personalize.cli.segments import register_commands
from tests.segments.conftest import DemoShop
from tests.shops import NOW

runner = CliRunner()
DEMO_RULES = Path(__file__).resolve().parents[2] / "tags.yml"
AS_OF = NOW.isoformat()  # the demo shop was seeded at NOW


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """An app with just the two commands, registered as rasa_personalize.cli registers them."""
    application = typer.Typer()
    register_commands(application)
    return application


@pytest.fixture
def shop(demo_shop: DemoShop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the demo shop; the environment points the CLI at it and at a model dir."""
    copy = tmp_path / "shop.db"
    shutil.copyfile(demo_shop.path, copy)
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{copy}")
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path


def test_segment_stores_assignments_and_writes_a_report(app: typer.Typer, shop: Path) -> None:
    """`segment --report DIR --json`: exit 0, every customer stored, report files written."""
    result = runner.invoke(
        app, ["segment", "--report", str(shop / "report"), "--json", "--as-of", AS_OF]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["method"] == "kmeans"
    assert summary["stored"] == summary["customers"] == 2000
    assert set(summary["sizes"]) == {
        "new_visitor", "frequent_buyer", "price_sensitive", "loyal", "at_risk", "browser",
    }  # fmt: skip
    assert summary["model_path"] == str(shop / "models" / "segments" / "kmeans.json")
    for name in ("segments.csv", "segments.md", "segments.png"):
        assert (shop / "report" / name).stat().st_size > 0
    with sqlite3.connect(shop / "shop.db") as connection:
        stored = connection.execute("SELECT count(*) FROM segment_assignments").fetchone()
    assert stored == (2000,)


def test_segment_prints_sizes_and_the_agreement_with_the_truth(
    app: typer.Typer, shop: Path
) -> None:
    """The human summary names the segments and the adjusted Rand index."""
    result = runner.invoke(app, ["segment", "--method", "gmm", "--seed", "2", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    assert "price_sensitive" in result.stdout
    assert "Adjusted Rand index vs true groups" in result.stdout
    ari = float(result.stdout.split("Adjusted Rand index vs true groups: ")[1].split()[0])
    assert ari >= 0.7


def test_a_bad_as_of_time_is_a_usage_error(app: typer.Typer, shop: Path) -> None:
    """--as-of must be an ISO time; the message shows one."""
    result = runner.invoke(app, ["segment", "--as-of", "yesterday"])
    assert result.exit_code == 2
    assert "2026-06-01T12:00:00+00:00" in result.output


def test_an_unknown_method_is_a_usage_error(app: typer.Typer, shop: Path) -> None:
    """Typer refuses a method outside kmeans, gmm, dbscan."""
    result = runner.invoke(app, ["segment", "--method", "spectral"])
    assert result.exit_code == 2


def test_tag_applies_the_demo_rules(app: typer.Typer, shop: Path) -> None:
    """`tag --rules tags.yml --json`: one outcome per rule."""
    result = runner.invoke(app, ["tag", "--rules", str(DEMO_RULES), "--json", "--as-of", AS_OF])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert [t["tag"] for t in outcome["tags"]][:2] == [
        "interested_in_running", "interested_in_outdoor",
    ]  # fmt: skip
    bargain = next(t for t in outcome["tags"] if t["tag"] == "bargain_hunter")
    assert bargain["tagged"] > 0


def test_tag_check_reports_problems_and_exits_1(app: typer.Typer, tmp_path: Path) -> None:
    """`tag --check` on a broken file lists each problem with its line; exit 1."""
    broken = tmp_path / "tags.yml"
    broken.write_text("tags:\n  - tag: a\n    when: {count: {kind: veiw, at_least: 1}}\n")
    result = runner.invoke(app, ["tag", "--rules", str(broken), "--check"])
    assert result.exit_code == 1
    assert f"{broken}:3: tag 'a': unknown kind 'veiw' (did you mean 'view'?)" in result.output
    ok = runner.invoke(app, ["tag", "--rules", str(DEMO_RULES), "--check"])
    assert ok.exit_code == 0
    assert "OK" in ok.stdout
