"""`personalize domain show|add`: the plugin's part of a Rasa domain, merged without copying."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rasa_personalize import responses
from rasa_personalize.cli import app
from rasa_personalize.plugin import plugin_action_names
from rasa_personalize.responses import PLUGIN_RESPONSES
from rasa_personalize.slots import SLOT_CONTRACT

runner = CliRunner()
DEMO_DOMAIN = Path(__file__).parent.parent / "domain.yml"

# What `rasa init` writes, trimmed: intents, responses in its own indentation, comments.
USER_DOMAIN = """\
version: "3.1"

# My shop's assistant: keep this comment.
intents:
  - greet
  - goodbye  # said at the end

responses:
  utter_greet:
    - text: "Hey! How are you?"

  utter_goodbye:
    - text: "Bye"

slots:
  # my own slot comes first
  name:
    type: text
    mappings:
      - type: from_text

actions:
  - action_my_own

session_config:
  session_expiration_time: 60
  carry_over_slots_to_new_session: true
"""


def load(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@pytest.fixture
def user_domain(tmp_path: Path) -> Path:
    path = tmp_path / "domain.yml"
    path.write_text(USER_DOMAIN, encoding="utf-8")
    return path


def test_show_equals_the_contract_block_of_the_demo_domain() -> None:
    """Every contract slot printed as the demo domain declares it, and the plugin actions."""
    result = runner.invoke(app, ["domain", "show"])
    assert result.exit_code == 0, result.output
    shown = load(result.stdout)
    demo = load(DEMO_DOMAIN.read_text(encoding="utf-8"))
    assert shown["version"] == "3.1"
    assert shown["slots"] == {name: demo["slots"][name] for name in SLOT_CONTRACT}
    assert shown["actions"] == plugin_action_names()
    assert set(shown["actions"]) <= set(demo["actions"])
    # The demo assistant says what a new domain starts from.
    assert shown["responses"] == {name: demo["responses"][name] for name in PLUGIN_RESPONSES}


def test_show_as_json_has_the_same_content() -> None:
    """--format json prints the same fragment as one JSON document."""
    as_yaml = load(runner.invoke(app, ["domain", "show"]).stdout)
    result = runner.invoke(app, ["domain", "show", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == as_yaml


def test_add_keeps_the_users_content_and_comments(user_domain: Path) -> None:
    """All contract slots and plugin actions are added after the user's own, nothing lost."""
    result = runner.invoke(app, ["domain", "add", str(user_domain)])
    assert result.exit_code == 0, result.output
    text = user_domain.read_text(encoding="utf-8")
    merged, before = load(text), load(USER_DOMAIN)
    for comment in ("# My shop's assistant: keep this comment.", "# said at the end",
                    "# my own slot comes first"):  # fmt: skip
        assert comment in text
    assert list(merged) == list(before)  # sections keep their order
    assert {k: v for k, v in merged.items() if k not in ("slots", "actions", "responses")} == {
        k: v for k, v in before.items() if k not in ("slots", "actions", "responses")
    }
    assert merged["responses"] == {
        **before["responses"],
        **{name: [{"text": text}] for name, text in PLUGIN_RESPONSES.items()},
    }
    assert list(merged["slots"]) == ["name", *SLOT_CONTRACT]
    assert merged["slots"]["name"] == before["slots"]["name"]
    shown = load(runner.invoke(app, ["domain", "show"]).stdout)
    assert {name: merged["slots"][name] for name in SLOT_CONTRACT} == shown["slots"]
    assert merged["actions"] == ["action_my_own", *plugin_action_names()]
    assert f"slots added: {', '.join(SLOT_CONTRACT)}" in result.stdout
    assert "already there: none" in result.stdout


def test_second_add_adds_nothing(user_domain: Path) -> None:
    """Idempotent: the second run reports everything as there and leaves the file as is."""
    assert runner.invoke(app, ["domain", "add", str(user_domain)]).exit_code == 0
    after_first = user_domain.read_text(encoding="utf-8")
    result = runner.invoke(app, ["domain", "add", str(user_domain)])
    assert result.exit_code == 0
    assert user_domain.read_text(encoding="utf-8") == after_first
    assert "slots added: none" in result.stdout
    assert "actions added: none" in result.stdout
    assert "responses added: none" in result.stdout
    assert "customer_segment" in result.stdout.split("already there:")[1]


def test_the_demo_domain_needs_nothing() -> None:
    """Our own domain already holds the whole contract (checked in a dry run)."""
    result = runner.invoke(app, ["domain", "add", str(DEMO_DOMAIN), "--dry-run"])
    assert result.exit_code == 0
    assert "slots would add: none" in result.stdout
    assert "actions would add: none" in result.stdout
    assert "responses would add: none" in result.stdout


def test_a_response_the_user_declares_keeps_their_wording(tmp_path: Path) -> None:
    """Only the missing responses are added; a reworded one is left alone."""
    path = tmp_path / "domain.yml"
    path.write_text(
        'version: "3.1"\nresponses:\n  utter_erasure_done:\n    - text: "All gone, friend."\n',
        encoding="utf-8",
    )
    result = runner.invoke(app, ["domain", "add", str(path)])
    assert result.exit_code == 0, result.output
    responses = load(path.read_text(encoding="utf-8"))["responses"]
    assert responses["utter_erasure_done"] == [{"text": "All gone, friend."}]
    assert set(responses) == set(PLUGIN_RESPONSES)
    added = sorted(set(PLUGIN_RESPONSES) - {"utter_erasure_done"}, key=list(PLUGIN_RESPONSES).index)
    assert f"responses added: {', '.join(added)}" in result.stdout


def test_every_response_an_action_utters_is_declared() -> None:
    """The plugin names responses only through `rasa_personalize.responses`, and uses them all:
    so `domain add` writes every response an action can utter."""
    package = Path(responses.__file__).parent
    literal = [
        str(source.relative_to(package))
        for source in package.rglob("*.py")
        if re.search(r"response=[\"']", source.read_text(encoding="utf-8"))
    ]
    assert literal == []
    handlers = "".join(
        source.read_text(encoding="utf-8") for source in (package / "handlers").glob("*.py")
    )
    constants = {
        name
        for name, value in vars(responses).items()
        if isinstance(value, str) and value in PLUGIN_RESPONSES
    }
    assert {value for name, value in vars(responses).items() if name in constants} == set(
        PLUGIN_RESPONSES
    )
    assert {name for name in constants if re.search(rf"\b{name}\b", handlers)} == constants


@pytest.mark.parametrize(
    "declaration",
    [
        # another type
        "customer_segment:\n    type: text\n",
        # the right type, but values the engine never sets
        "customer_segment:\n    type: categorical\n    values: [vip, other]\n",
    ],
)
def test_a_conflicting_slot_is_refused(tmp_path: Path, declaration: str) -> None:
    """Exit 2 naming the file and the slot; the file is not touched."""
    path = tmp_path / "domain.yml"
    original = f'version: "3.1"\nslots:\n  {declaration}'
    path.write_text(original, encoding="utf-8")
    result = runner.invoke(app, ["domain", "add", str(path)])
    assert result.exit_code == 2
    assert str(path) in result.output
    assert "'customer_segment'" in result.output
    assert path.read_text(encoding="utf-8") == original


def test_categorical_values_in_another_order_are_accepted(tmp_path: Path) -> None:
    """The same value set in the user's order is not a conflict and is kept as written."""
    path = tmp_path / "domain.yml"
    values = ", ".join(reversed(SLOT_CONTRACT["time_of_day"].values))
    path.write_text(f"slots:\n  time_of_day:\n    type: categorical\n    values: [{values}]\n")
    result = runner.invoke(app, ["domain", "add", str(path)])
    assert result.exit_code == 0, result.output
    assert f"values: [{values}]" in path.read_text(encoding="utf-8")
    assert "time_of_day" in result.stdout.split("already there:")[1]


def test_directory_gets_a_file_of_its_own(tmp_path: Path) -> None:
    """A domain directory gets rasa_personalize.yml with what none of its files declare."""
    (tmp_path / "intents.yml").write_text(USER_DOMAIN, encoding="utf-8")
    nested = tmp_path / "shop"
    nested.mkdir()
    (nested / "slots.yml").write_text(
        "slots:\n  user_tags:\n    type: list\n    mappings: [{type: custom}]\n"
        "actions: [action_session_start]\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["domain", "add", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "intents.yml").read_text(encoding="utf-8") == USER_DOMAIN
    written = load((tmp_path / "rasa_personalize.yml").read_text(encoding="utf-8"))
    assert written["version"] == "3.1"
    assert list(written["slots"]) == [name for name in SLOT_CONTRACT if name != "user_tags"]
    assert written["actions"] == [a for a in plugin_action_names() if a != "action_session_start"]
    again = runner.invoke(app, ["domain", "add", str(tmp_path)])
    assert "slots added: none" in again.stdout
    assert "actions added: none" in again.stdout


def test_dry_run_writes_nothing(user_domain: Path, tmp_path: Path) -> None:
    """--dry-run prints the slots it would add and leaves file and directory alone."""
    result = runner.invoke(app, ["domain", "add", str(user_domain), "--dry-run"])
    assert result.exit_code == 0
    assert user_domain.read_text(encoding="utf-8") == USER_DOMAIN
    assert "slots would add: customer_segment" in result.stdout
    assert "  customer_segment:\n    type: categorical" in result.stdout
    directory = tmp_path / "domain"
    directory.mkdir()
    assert runner.invoke(app, ["domain", "add", str(directory), "--dry-run"]).exit_code == 0
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # a YAML syntax error: the parser's line
        ("slots:\n  a: [1\n", "domain.yml:3: not valid YAML"),
        # a list, not a mapping of sections
        ("- greet\n", "domain.yml: not a Rasa domain"),
        # slots as a list
        ("intents: []\nslots: [a]\n", "domain.yml:2: `slots` is not a mapping"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, content: str, expected: str) -> None:
    """Exit 2 with one line naming the file (and the line when known); nothing written."""
    path = tmp_path / "domain.yml"
    path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["domain", "add", str(path)])
    assert result.exit_code == 2
    assert expected in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert path.read_text(encoding="utf-8") == content


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    """Neither file nor directory: exit 2 naming it."""
    result = runner.invoke(app, ["domain", "add", str(tmp_path / "nope.yml")])
    assert result.exit_code == 2
    assert "nope.yml: no such file or directory" in result.output
