"""The `personalize` command on a real SQLite file: upgrade, seed, stats, profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rasa_personalize
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
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", "oracle://db/shop")
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
    assert explained["experiment"] is None  # the demo's experiment is a draft


def test_rules_explain_names_the_experiment_arm(seeded: str, tmp_path: Path) -> None:
    """With the demo's draft experiment running, demo-bargain's arm shows, and its slots."""
    rules = tmp_path / "personalization.yml"
    demo = Path("personalization.yml").read_text(encoding="utf-8")
    rules.write_text(demo.replace("status: draft", "status: running"), encoding="utf-8")
    result = runner.invoke(
        app, ["rules", "explain", "demo-bargain", "--rules", str(rules), "--json"]
    )
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout.strip().splitlines()[-1])
    arm = explained["experiment"]["arm"]
    assert explained["experiment"]["name"] == "bigger_discount"
    assert explained["slots"]["discount_pct"] == {"control": 15, "twenty": 20}[arm]
    assert explained["rules"]  # the rules' explanation is still there
    text = runner.invoke(app, ["rules", "explain", "demo-bargain", "--rules", str(rules)])
    assert f"Experiment 'bigger_discount': arm {arm!r}" in text.output


@pytest.mark.parametrize("denied", ["marketing", "personalization"])
def test_rules_explain_leaves_out_a_customer_the_engine_leaves_out(
    seeded: str, tmp_path: Path, denied: str
) -> None:
    """As in a conversation: without marketing consent the discount experiment does not
    take demo-bargain (and no offer is made); without personalization consent no
    experiment does."""
    rules = tmp_path / "personalization.yml"
    demo = Path("personalization.yml").read_text(encoding="utf-8")
    rules.write_text(demo.replace("status: draft", "status: running"), encoding="utf-8")
    consent = runner.invoke(app, ["privacy", "consent", "demo-bargain", "--deny", denied])
    assert consent.exit_code == 0, consent.output
    result = runner.invoke(
        app, ["rules", "explain", "demo-bargain", "--rules", str(rules), "--json"]
    )
    assert result.exit_code == 0, result.output
    explained = json.loads(result.stdout.strip().splitlines()[-1])
    assert explained["experiment"] is None
    if denied == "marketing":
        assert explained["slots"]["offer_type"] == "none"


def test_rules_explain_rejects_an_unknown_context_field(seeded: str) -> None:
    """--context with a typo is refused with a suggestion, not a traceback."""
    result = runner.invoke(app, ["rules", "explain", "demo-loyal", "--context", "devise=mobile"])
    assert result.exit_code == 1
    assert "did you mean 'device'?" in result.output


# -- the command itself: help, version, missing extras ----------------------------------------


def test_help_loads_no_numeric_or_sql_library() -> None:
    """`personalize --help` answers without importing numpy, SQLAlchemy or scikit-learn."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rasa_personalize.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    assert "seed-demo" in result.stdout
    # -X importtime lists every imported module on stderr: "import time: self | cumulative | name"
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "typer" in imported  # the listing works
    assert imported & {"numpy", "sqlalchemy", "sklearn", "scipy", "pandas"} == set()


def test_help_lists_commands_in_workflow_order() -> None:
    """Set-up first, then models, decisions, serving and the demo."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    names = ["db", "seed-demo", "import", "train", "evaluate", "segment", "tag", "propensity",
             "rules", "profile", "stats", "domain", "serve", "worker", "apikey", "demo",
             "chat"]  # fmt: skip
    listed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ")]
    assert [name for name in listed if name in names] == names


def test_version() -> None:
    """`personalize --version` prints the distribution's name and version."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"rasa-personalize {rasa_personalize.__version__}"


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("module", "variables", "extra"),
    [
        # Redis configured, the client not installed
        ("redis", {"PERSONALIZE_REDIS_URL": "redis://127.0.0.1:6379/0"}, "redis"),
        # a PostgreSQL store without its driver
        ("asyncpg", {"PERSONALIZE_DATABASE_URL": "postgresql://127.0.0.1/shop"}, "postgres"),
    ],
)
def test_a_missing_extra_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, module: str, variables: dict[str, str], extra: str
) -> None:
    """A configured feature without its extra: one line naming the extra, before any work."""
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["stats"])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert line.startswith("error: ")
    assert f"pip install 'rasa-personalize[{extra}]'" in line


def test_worker_without_redis_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`personalize worker` with Redis configured but not installed: the redis extra."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    result = runner.invoke(app, ["worker", "--until-idle"])
    assert result.exit_code == 2
    assert "'redis' extra" in one_error_line(result.output)


def test_segment_report_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--report needs the reports extra: said before the clustering starts."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    result = runner.invoke(app, ["segment", "--report", str(tmp_path / "report")])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "personalize segment --report needs the 'reports' extra" in line
    assert not (tmp_path / "report").exists()


# Each command that writes or serves customer data, with what it does once past the check.
SECRET_GUARDED = {
    "serve": ["serve"],
    "worker": ["worker", "--until-idle"],
    "import customers": ["import", "customers"],
    "import interactions": ["import", "interactions"],
}


def _guarded_command(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command line, its input file written and the server replaced by a stub."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setattr("rasa_personalize.server.serve", lambda **_: print("serving"))
    args = list(SECRET_GUARDED[name])
    if name.startswith("import"):
        data = tmp_path / "rows.csv"
        # A header only: the import runs and finds nothing to store.
        header = {"import customers": "customer,name", "import interactions": "customer,sku"}
        data.write_text(header[name] + "\n", encoding="utf-8")
        args.append(str(data))
    return args


@pytest.mark.parametrize("name", sorted(SECRET_GUARDED))
def test_development_secret_is_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without PERSONALIZE_SECRET_KEY: one line saying how to set one, and exit 2."""
    result = runner.invoke(app, _guarded_command(name, tmp_path, monkeypatch))
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "PERSONALIZE_SECRET_KEY is not set" in line
    assert "export PERSONALIZE_SECRET_KEY=" in line
    assert "PERSONALIZE_ALLOW_DEV_SECRET=true" in line


@pytest.mark.parametrize(
    "variable",
    [
        # The demo's opt-in keeps the development key.
        ("PERSONALIZE_ALLOW_DEV_SECRET", "true"),
        # A real key needs no opt-in.
        ("PERSONALIZE_SECRET_KEY", "a-real-secret-key-of-this-shop"),
    ],
)
@pytest.mark.parametrize("name", sorted(SECRET_GUARDED))
def test_development_secret_override_or_real_key_is_accepted(
    name: str, variable: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the override or a key of its own, the command gets past the check."""
    monkeypatch.setenv(*variable)
    args = _guarded_command(name, tmp_path, monkeypatch)
    if name.startswith("import"):
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, args)
    assert "PERSONALIZE_SECRET_KEY is not set" not in result.output
    if name == "serve":
        assert result.exit_code == 0
        assert "serving" in result.output
    elif name == "worker":  # past the check: the next one wants Redis
        assert result.exit_code == 1
        assert "PERSONALIZE_REDIS_URL" in result.output
    else:
        assert result.exit_code == 0, result.output


def test_development_secret_refusal_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    """As users see it (logging on): no development-key warning before the one error line."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PERSONALIZE_")},
        "PERSONALIZE_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "rasa_personalize.cli", "-v", "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "PERSONALIZE_SECRET_KEY is not set" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    "arguments",
    [
        ["rules", "check", "/nowhere/[/red]rules.yml"],  # a path that reads as markup
        ["rules", "explain", "someone", "--context", "[/red]"],  # an argument that does too
    ],
)
def test_errors_quote_what_was_typed_as_text(arguments: list[str], tmp_path: Path) -> None:
    """Brackets in a path or argument are printed, not read as console markup (a crash)."""
    database = ["--database-url", f"sqlite:///{tmp_path / 'store.db'}"]
    result = runner.invoke(app, arguments + (database if arguments[1] == "explain" else []))
    assert result.exit_code in (1, 2)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "[/red]" in result.output
