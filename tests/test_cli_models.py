"""`personalize models list|promote|rollback`: what it prints, and its errors' exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rasa_personalize.cli.models import register_commands
from rasa_personalize.recommend.versions import als_dir, current_version
from tests.test_registry import version

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """An app with just the models group, registered as rasa_personalize.cli does."""
    application = typer.Typer()
    register_commands(application)

    @application.callback()
    def main() -> None:
        """Keep "models" a group of its own (typer flattens a lone sub-app)."""

    return application


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "models"
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(directory))
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "models-cli-test-secret")
    return directory


@pytest.fixture
def versions(model_dir: Path) -> list[str]:
    """Recommender versions: one that served before, the serving one, a candidate."""
    return [
        version(als_dir(model_dir), hour, serve=serve, metrics={"holdout_precision": figure})
        for hour, serve, figure in ((0, True, 0.05), (1, True, 0.052), (2, False, 0.02))
    ]


def test_list_json_has_every_version_with_its_status(app: typer.Typer, versions: list[str]) -> None:
    """--json: one object; newest first; figure and status per version."""
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["versions"]
    assert [(row["version"], row["status"], row["value"]) for row in rows] == [
        (versions[2], "candidate", 0.02),
        (versions[1], "serving", 0.052),
        (versions[0], "previous", 0.05),
    ]
    assert {row["kind"] for row in rows} == {"recommender"}


def test_list_table_shows_the_figure(app: typer.Typer, versions: list[str]) -> None:
    """The table: kind, version, created, the figure as p@10, the status."""
    result = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    candidate = next(line for line in result.stdout.splitlines() if versions[2] in line)
    cells = [cell.strip() for cell in candidate.split("│")[1:-1]]
    assert cells == ["recommender", versions[2], "2026-06-01 14:00:00", "p@10 0.0200", "candidate"]


def test_an_empty_model_directory_says_what_to_run(app: typer.Typer, model_dir: Path) -> None:
    """No versions: a sentence naming the command that trains them."""
    result = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "No trained model in " in result.stdout
    assert "`personalize train` or `personalize pipeline run`" in result.stdout


def test_promote_then_rollback(app: typer.Typer, model_dir: Path, versions: list[str]) -> None:
    """promote serves the candidate; rollback returns to the version before it."""
    promoted = runner.invoke(app, ["models", "promote", versions[2]])
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.startswith(f"recommender {versions[2]} serves (was {versions[1]})")
    assert "servers switch within 10 s" in promoted.stdout
    assert current_version(als_dir(model_dir)) == versions[2]
    back = runner.invoke(app, ["models", "rollback"])
    assert back.exit_code == 0, back.output
    assert back.stdout.startswith(f"recommender {versions[1]} serves again (was {versions[2]})")
    assert current_version(als_dir(model_dir)) == versions[1]


def test_promoting_the_serving_version_changes_nothing(
    app: typer.Typer, versions: list[str]
) -> None:
    """Already serving: said so, exit 0."""
    result = runner.invoke(app, ["models", "promote", versions[1]])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"recommender {versions[1]} already serves."


@pytest.mark.parametrize(
    ("arguments", "code", "message"),
    [
        # an unknown version
        (["promote", "20990101T000000000000Z-ffffffff"], 1, "error: no model version"),
        # a kind that does not exist
        (["rollback", "--kind", "als"], 1, "error: unknown model kind 'als'; the kinds are"),
        (["list", "--kind", "als"], 2, "error: unknown model kind 'als'"),
    ],
)
def test_errors_are_one_line(
    app: typer.Typer, versions: list[str], arguments: list[str], code: int, message: str
) -> None:
    """Each error is one line on stderr that says what is wrong."""
    result = runner.invoke(app, ["models", *arguments])
    assert result.exit_code == code
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_nothing_to_roll_back_to(app: typer.Typer, model_dir: Path) -> None:
    """One serving version and no other: exit 1, the reason."""
    only = version(als_dir(model_dir), 0, serve=True)
    result = runner.invoke(app, ["models", "rollback"])
    assert result.exit_code == 1
    assert f"nothing to roll back to in {als_dir(model_dir)}" in result.stderr
    assert current_version(als_dir(model_dir)) == only
