"""The `personalize` command on a real SQLite file: upgrade, seed, stats, profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rasa_personalize.cli import app

runner = CliRunner()


@pytest.fixture
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A small seeded demo shop; the environment points the CLI at it."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    seeded = runner.invoke(
        app, ["seed-demo", "--customers", "60", "--products", "40", "--interactions", "1500"]
    )
    assert seeded.exit_code == 0, seeded.output
    return url


def test_stats_json_has_the_documented_keys(seeded: str) -> None:
    """`stats --json` prints one object with the five documented counts."""
    result = runner.invoke(app, ["stats", "--json"])
    assert result.exit_code == 0
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(counts) == {"customers", "products", "interactions", "tags", "segment_assignments"}
    assert counts["customers"] == 60
    assert counts["products"] == 40
    assert counts["interactions"] == pytest.approx(1500, rel=0.15)
    assert counts["segment_assignments"] == 0


def test_profile_show_for_a_demo_customer(seeded: str) -> None:
    """`profile show demo-loyal --json` gives the gold tier and the slots."""
    result = runner.invoke(app, ["profile", "show", "demo-loyal", "--json"])
    assert result.exit_code == 0
    profile = json.loads(result.stdout.strip().splitlines()[-1])
    assert profile["loyalty_tier"] == "gold"
    assert profile["slots"]["customer_segment"] == "loyal"
    assert profile["slots"]["offer_type"] == "exclusive_access"


def test_profile_show_of_an_unknown_customer_exits_1_with_defaults(seeded: str) -> None:
    """An unknown id is not an error trace: exit 1 and what the assistant would do."""
    result = runner.invoke(app, ["profile", "show", "nobody-at-all"])
    assert result.exit_code == 1
    assert "new_visitor" in result.output


def test_seeding_twice_with_reset_gives_the_same_counts(seeded: str) -> None:
    """--reset (the default) empties the store first, so a rerun does not duplicate."""
    before = json.loads(runner.invoke(app, ["stats", "--json"]).stdout.strip().splitlines()[-1])
    again = runner.invoke(
        app, ["seed-demo", "--customers", "60", "--products", "40", "--interactions", "1500"]
    )
    after = json.loads(runner.invoke(app, ["stats", "--json"]).stdout.strip().splitlines()[-1])
    assert again.exit_code == 0
    assert after == before


def test_unmigrated_store_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """stats on a database without the schema says to run `db upgrade`."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    result = runner.invoke(app, ["stats"])
    assert result.exit_code == 1
    assert "personalize db upgrade" in result.output


def test_bad_database_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsupported URL names the variable instead of a traceback."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", "mysql://db/shop")
    result = runner.invoke(app, ["stats"])
    assert result.exit_code == 1
    assert "PERSONALIZE_DATABASE_URL" in result.output
    assert "Traceback" not in result.output


def test_seed_demo_refuses_too_short_history(seeded: str) -> None:
    """Typer validates option ranges before anything is written."""
    result = runner.invoke(app, ["seed-demo", "--days", "30"])
    assert result.exit_code == 2
    assert "--days" in result.output


def test_rules_check_accepts_the_demo_file() -> None:
    """The shipped personalization.yml is valid."""
    result = runner.invoke(app, ["rules", "check", "personalization.yml"])
    assert result.exit_code == 0
    assert "OK" in result.output


def test_rules_check_reports_a_typo_with_line_and_suggestion(tmp_path: Path) -> None:
    """A misspelt field fails the check with its line and the closest valid name."""
    broken = tmp_path / "rules.yml"
    broken.write_text(
        "rules:\n  - name: oops\n    when:\n      segmnet: loyal\n"
        "    then:\n      offer_type: bundle\n"
    )
    result = runner.invoke(app, ["rules", "check", str(broken)])
    assert result.exit_code == 1
    assert "rules.yml:4" in result.output
    assert "did you mean 'segment'?" in result.output


def test_rules_explain_names_the_deciding_rule_and_the_slots(seeded: str) -> None:
    """explain shows why demo-bargain gets 15% and what the slots become."""
    result = runner.invoke(
        app,
        ["rules", "explain", "demo-bargain", "--rules", "personalization.yml", "--json"],
    )
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout.strip().splitlines()[-1])
    assert explained["slots"]["offer_type"] == "discount"
    assert explained["slots"]["discount_pct"] == 15
    assert explained["slots"]["customer_segment"] == "price_sensitive"


def test_rules_explain_rejects_an_unknown_context_field(seeded: str) -> None:
    """--context with a typo is refused with a suggestion, not a traceback."""
    result = runner.invoke(app, ["rules", "explain", "demo-loyal", "--context", "devise=mobile"])
    assert result.exit_code == 1
    assert "did you mean 'device'?" in result.output
