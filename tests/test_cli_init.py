"""`personalize init`: the plugin added to a Rasa project, idempotently, nothing of theirs lost.

Rasa itself runs on the result in tests/e2e/test_init.py; here the files are checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.cli.domain_merge import EXAMPLE_RESPONSES
from rasa_personalize.cli.init import ACTION_ENDPOINT, RULES_STARTER, TAGS_STARTER
from rasa_personalize.plugin import plugin_action_names
from rasa_personalize.responses import PLUGIN_RESPONSES
from rasa_personalize.rules import check_file
from rasa_personalize.segments.tag_rules import check_tag_file
from rasa_personalize.slots import SLOT_CONTRACT

runner = CliRunner()

# What `rasa init` writes (Rasa 3.6), trimmed: its indentation, comments and greeting.
RASA_INIT_DOMAIN = """\
version: "3.1"

intents:
  - greet
  - goodbye

responses:
  utter_greet:
  - text: "Hey! How are you?"

  utter_goodbye:
  - text: "Bye"

session_config:
  session_expiration_time: 60
  carry_over_slots_to_new_session: true
"""
RASA_INIT_ENDPOINTS = """\
# This file contains the different endpoints your bot can use.

# Server which runs your custom actions.
# https://rasa.com/docs/rasa/custom-actions

#action_endpoint:
#  url: "http://localhost:5055/webhook"

#tracker_store:
#    type: redis
"""
RASA_INIT_CONFIG = "recipe: default.v1\nlanguage: en\npipeline:\npolicies:\n"


def load(text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder laid out like `rasa init` output."""
    folder = tmp_path / "shop"
    (folder / "actions").mkdir(parents=True)
    (folder / "actions" / "__init__.py").write_text("", encoding="utf-8")
    (folder / "config.yml").write_text(RASA_INIT_CONFIG, encoding="utf-8")
    (folder / "domain.yml").write_text(RASA_INIT_DOMAIN, encoding="utf-8")
    (folder / "endpoints.yml").write_text(RASA_INIT_ENDPOINTS, encoding="utf-8")
    return folder


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder``, by relative path."""
    return {
        path.relative_to(folder).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def init(*args: str) -> Any:
    return runner.invoke(app, ["init", *args])


def test_init_adds_the_plugin_and_keeps_the_users_domain(project: Path) -> None:
    """Slots, actions, the plugin's responses and the missing examples are added; the
    user's greeting, intents and session config stay."""
    result = init(str(project))
    assert result.exit_code == 0, result.output
    domain = load((project / "domain.yml").read_text(encoding="utf-8"))
    before = load(RASA_INIT_DOMAIN)
    assert list(domain["slots"]) == list(SLOT_CONTRACT)
    assert domain["actions"] == plugin_action_names()
    assert domain["intents"] == before["intents"]
    assert domain["session_config"] == before["session_config"]
    # utter_greet is theirs: its wording stays, and no example replaces it.
    assert domain["responses"]["utter_greet"] == [{"text": "Hey! How are you?"}]
    assert domain["responses"] == {
        **before["responses"],
        **{name: [{"text": text}] for name, text in PLUGIN_RESPONSES.items()},
        "utter_offer": EXAMPLE_RESPONSES["utter_offer"],
        "utter_loyalty_status": EXAMPLE_RESPONSES["utter_loyalty_status"],
    }
    assert f"{len(SLOT_CONTRACT)} slots, {len(plugin_action_names())} actions" in result.stdout


def test_init_writes_starters_that_validate(project: Path) -> None:
    """personalization.yml and tags.yml pass the checks the shop's own files go through."""
    assert init(str(project)).exit_code == 0
    assert (project / "personalization.yml").read_text(encoding="utf-8") == RULES_STARTER
    assert (project / "tags.yml").read_text(encoding="utf-8") == TAGS_STARTER
    assert check_file(project / "personalization.yml") == []
    assert check_tag_file(project / "tags.yml") == []
    checked = runner.invoke(app, ["rules", "check", str(project / "personalization.yml")])
    assert checked.exit_code == 0, checked.output
    tags = runner.invoke(app, ["tag", "--check", "--rules", str(project / "tags.yml")])
    assert tags.exit_code == 0, tags.output


def test_init_appends_the_action_endpoint_keeping_every_comment(project: Path) -> None:
    """The commented-out endpoint of `rasa init` stays; ours follows it, with the token."""
    assert init(str(project)).exit_code == 0
    text = (project / "endpoints.yml").read_text(encoding="utf-8")
    assert text == RASA_INIT_ENDPOINTS + "\n" + ACTION_ENDPOINT
    endpoint = load(text)["action_endpoint"]
    assert endpoint == {
        "url": "http://localhost:5055/webhook",
        "token": "${PERSONALIZE_WEBHOOK_TOKEN}",
    }


def test_init_writes_nothing_into_an_existing_actions_package(project: Path) -> None:
    """rasa-sdk's plugin hook serves our actions: the user's package needs no line."""
    result = init(str(project))
    assert result.exit_code == 0
    assert (project / "actions" / "__init__.py").read_text(encoding="utf-8") == ""
    assert sorted(p.name for p in (project / "actions").iterdir()) == ["__init__.py"]
    assert "actions: nothing to add (rasa-sdk's plugin hook" in result.stdout


def test_a_project_without_actions_gets_a_package(project: Path) -> None:
    """`rasa run actions` stops without a package to import: init creates an empty one."""
    (project / "actions" / "__init__.py").unlink()
    (project / "actions").rmdir()
    result = init(str(project))
    assert result.exit_code == 0, result.output
    package = (project / "actions" / "__init__.py").read_text(encoding="utf-8")
    assert "rasa-sdk's plugin hook" in package
    compile(package, "actions/__init__.py", "exec")  # a valid module


def test_second_run_changes_nothing(project: Path) -> None:
    """Idempotent: every file byte for byte as after the first run."""
    assert init(str(project)).exit_code == 0
    after_first = snapshot(project)
    result = init(str(project))
    assert result.exit_code == 0, result.output
    assert snapshot(project) == after_first
    assert f"Nothing to do: {project} is set up already." in result.stdout
    assert "wrote" not in result.stdout


def test_dry_run_prints_the_diffs_and_writes_nothing(project: Path) -> None:
    """One unified diff per file; applied for real, the new files hold the added lines."""
    before = snapshot(project)
    result = init(str(project), "--dry-run")
    assert result.exit_code == 0, result.output
    assert snapshot(project) == before
    output = result.stdout
    for header in (
        "--- a/domain.yml\n+++ b/domain.yml\n",
        "--- /dev/null\n+++ b/personalization.yml\n",
        "--- /dev/null\n+++ b/tags.yml\n",
        "--- a/endpoints.yml\n+++ b/endpoints.yml\n",
    ):
        assert header in output
    assert f"would write {project / 'tags.yml'}: starter written" in output
    hunk = output.split("+++ b/tags.yml\n")[1].splitlines()[: 1 + TAGS_STARTER.count("\n")]
    assert hunk[0] == f"@@ -0,0 +1,{TAGS_STARTER.count(chr(10))} @@"
    assert all(line.startswith("+") for line in hunk[1:])
    assert "".join(f"{line[1:]}\n" for line in hunk[1:]) == TAGS_STARTER
    assert "+  token: ${PERSONALIZE_WEBHOOK_TOKEN}" in output
    assert "Next steps" not in output


def test_examples_fill_only_missing_responses(project: Path) -> None:
    """A domain without utter_greet gets the example, conditioned on customer_segment."""
    (project / "domain.yml").write_text('version: "3.1"\nintents: [greet]\n', encoding="utf-8")
    assert init(str(project)).exit_code == 0
    responses = load((project / "domain.yml").read_text(encoding="utf-8"))["responses"]
    greet = responses["utter_greet"]
    assert greet == EXAMPLE_RESPONSES["utter_greet"]
    loyal = next(v for v in greet if v.get("condition", [{}])[0].get("value") == "loyal")
    assert loyal["condition"] == [{"type": "slot", "name": "customer_segment", "value": "loyal"}]
    assert "condition" not in greet[-1]  # the unconditional fallback comes last


def test_every_example_condition_is_in_the_slot_contract() -> None:
    """Conditions name contract slots and values the action server can set, one slot per
    response (two conditions holding at once would make Rasa choose at random)."""
    for name, variations in EXAMPLE_RESPONSES.items():
        slots = set()
        for variation in variations[:-1]:
            (condition,) = variation["condition"]
            spec = SLOT_CONTRACT[condition["name"]]
            assert condition["type"] == "slot"
            assert condition["value"] in spec.values, (name, condition)
            slots.add(condition["name"])
        assert len(slots) == 1, name
        assert set(variations[-1]) == {"text"}, name


def test_a_domain_directory_gets_a_file_of_its_own(project: Path) -> None:
    """With domain/ instead of domain.yml, the user's files stay and ours joins them."""
    (project / "domain.yml").unlink()
    (project / "domain").mkdir()
    (project / "domain" / "shop.yml").write_text(RASA_INIT_DOMAIN, encoding="utf-8")
    assert init(str(project)).exit_code == 0
    assert (project / "domain" / "shop.yml").read_text(encoding="utf-8") == RASA_INIT_DOMAIN
    ours = load((project / "domain" / "rasa_personalize.yml").read_text(encoding="utf-8"))
    assert list(ours["slots"]) == list(SLOT_CONTRACT)
    assert "utter_greet" not in ours["responses"]  # shop.yml declares it
    again = init(str(project))
    assert "declares the plugin's slots, actions and responses already" in again.stdout


def test_existing_files_are_kept_and_checked(project: Path) -> None:
    """The shop's own rule files and endpoint are never replaced; problems are reported."""
    (project / "personalization.yml").write_text(
        "version: 1\nrules:\n  - {name: x, when: {segmnt: loyal}, then: {offer_type: none}}\n",
        encoding="utf-8",
    )
    (project / "tags.yml").write_text(TAGS_STARTER, encoding="utf-8")
    (project / "endpoints.yml").write_text(
        'action_endpoint:\n  url: "http://actions:5055/webhook"\n', encoding="utf-8"
    )
    before = snapshot(project)
    result = init(str(project))
    assert result.exit_code == 0, result.output
    after = snapshot(project)
    for kept in ("personalization.yml", "tags.yml", "endpoints.yml"):
        assert after[kept] == before[kept]
    assert "personalization.yml: kept as it is, with 1 problem(s):" in result.stdout
    assert "did you mean 'segment'?" in result.stdout
    assert "tags.yml: kept as it is\n" in result.stdout
    assert "action_endpoint kept as it is (it sends no webhook token" in result.stdout


def test_a_missing_endpoints_file_is_created(project: Path) -> None:
    """No endpoints.yml: one holding only the action endpoint."""
    (project / "endpoints.yml").unlink()
    assert init(str(project)).exit_code == 0
    assert (project / "endpoints.yml").read_text(encoding="utf-8") == ACTION_ENDPOINT


@pytest.mark.parametrize(
    ("remove", "expected"),
    [
        ("config.yml", "not a Rasa project (no config.yml)"),  # a folder of YAML files
        ("domain.yml", "not a Rasa project (no domain.yml or domain/ directory"),
    ],
)
def test_not_a_rasa_project_is_a_usage_error(project: Path, remove: str, expected: str) -> None:
    """Exit 2, one line naming the folder, nothing written."""
    (project / remove).unlink()
    before = snapshot(project)
    result = init(str(project))
    assert result.exit_code == 2
    assert f"{project}: {expected}" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert snapshot(project) == before


def test_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    """A folder that does not exist: exit 2 naming it."""
    result = init(str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "nope: no such directory" in result.output


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        # a YAML syntax error in the domain: file and line
        ("domain.yml", "intents:\n  - greet\nslots: [a\n", "domain.yml:4: not valid YAML"),
        # the same in endpoints.yml
        ("endpoints.yml", "models:\n  url: [x\n", "endpoints.yml:3: not valid YAML"),
        # endpoints.yml as a list
        ("endpoints.yml", "- action_endpoint\n", "endpoints.yml: not a Rasa endpoints file"),
        # a flow-style top level cannot take an appended block
        ("endpoints.yml", "{models: {url: x}}\n", "endpoints.yml: the action_endpoint cannot"),
    ],
)
def test_unreadable_yaml_is_one_line_and_writes_nothing(
    project: Path, name: str, content: str, expected: str
) -> None:
    """Exit 2 with the file (and line); no other file written either."""
    (project / name).write_text(content, encoding="utf-8")
    before = snapshot(project)
    result = init(str(project))
    assert result.exit_code == 2
    assert expected in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert snapshot(project) == before


def test_a_conflicting_slot_is_refused(project: Path) -> None:
    """Their loyalty_tier of another type: exit 2 naming slot and file, nothing written."""
    (project / "domain.yml").write_text(
        RASA_INIT_DOMAIN + "slots:\n  loyalty_tier:\n    type: text\n", encoding="utf-8"
    )
    before = snapshot(project)
    result = init(str(project))
    assert result.exit_code == 2
    assert re.search(r"domain\.yml: slot 'loyalty_tier' has type 'text'", result.output)
    assert snapshot(project) == before


def test_a_file_that_cannot_be_written_is_a_one_line_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write refused by the system: exit 1 naming the file, no traceback."""
    write_text = Path.write_text

    def refuse_tags(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.name == "tags.yml":
            raise PermissionError(13, "Permission denied")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refuse_tags)
    result = init(str(project))
    assert result.exit_code == 1
    assert f"{project / 'tags.yml'}: cannot be written (Permission denied)" in result.output
    assert "Traceback" not in result.output
