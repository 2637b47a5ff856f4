"""The plugin beside a user's own ``actions`` package, served both ways, as real processes.

The folder is laid out like ``rasa init`` output: its own ``actions/__init__.py`` with
``action_hello_world``. ``personalize serve`` and ``python -m rasa_sdk --actions actions``
(what ``rasa run actions`` runs) must both serve that action and every plugin action, the
``/personalize/*`` API and the webhook hardening.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rasa_personalize.plugin import plugin_action_names
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.store.migrate import upgrade
from rasa_personalize.testing import action_call, tracker_state

pytestmark = pytest.mark.server

HELLO_WORLD = """
from rasa_sdk import Action


class ActionHelloWorld(Action):
    def name(self):
        return "action_hello_world"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text="Hello World!")
        return []
"""

# A user's own session start that does not build on ours: it replaces it.
OWN_SESSION_START = """
from rasa_sdk import Action
from rasa_sdk.events import SessionStarted, SlotSet, ActionExecuted


class ShopSessionStart(Action):
    def name(self):
        return "action_session_start"

    async def run(self, dispatcher, tracker, domain):
        return [SessionStarted(), SlotSet("shop_greeting", "own"), ActionExecuted("action_listen")]
"""


def request(
    url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    prepared = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(prepared, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def personalize_script() -> str:
    script = Path(sys.executable).with_name("personalize")
    if not script.exists():
        pytest.skip("the personalize console script is not installed (pip install -e .)")
    return str(script)


def serve_commands(port: int) -> dict[str, list[str]]:
    loopback = ["--port", str(port)]
    return {
        "personalize serve": [personalize_script(), "serve", "--host", "127.0.0.1", *loopback],
        "python -m rasa_sdk": [sys.executable, "-m", "rasa_sdk", "--actions", "actions", *loopback],
    }


def rasa_init_project(folder: Path, actions_source: str) -> Path:
    """A project folder with its own actions package and a migrated SQLite store."""
    (folder / "actions").mkdir(parents=True)
    (folder / "actions" / "__init__.py").write_text(textwrap.dedent(actions_source))
    upgrade(f"sqlite:///{folder / 'store.db'}")
    return folder


@pytest.fixture(scope="module", params=["personalize serve", "python -m rasa_sdk"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server started in a rasa-init-like folder by one of the two commands (read-only)."""
    tmp_path = tmp_path_factory.mktemp("served")
    project = rasa_init_project(tmp_path / "assistant", HELLO_WORLD)
    port = free_port()
    command = serve_commands(port)[request.param]
    env = {
        **os.environ,
        "PERSONALIZE_DATABASE_URL": f"sqlite:///{project / 'store.db'}",
        "PERSONALIZE_SECRET_KEY": "layout-test-secret-key",
        "SANIC_HOST": "127.0.0.1",  # rasa-sdk's own server binds where this says
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with ServerProcess(command, f"{base}/health", env=env, cwd=project, log_path=log):
        yield base


def test_serves_the_users_action_and_every_plugin_action(served: str) -> None:
    """GET /actions lists action_hello_world and all of ours."""
    status, actions = request(f"{served}/actions")
    assert status == 200
    names = {entry["name"] for entry in actions}
    assert names == {"action_hello_world", *plugin_action_names()}


def test_users_action_answers(served: str) -> None:
    """The user's own action runs through the hardened webhook."""
    body = json.dumps(action_call("action_hello_world", tracker_state())).encode()
    status, answer = request(f"{served}/webhook", body)
    assert status == 200
    assert answer["responses"][0]["text"] == "Hello World!"


def test_plugin_action_answers_with_slots(served: str) -> None:
    """A plugin action answers with the contract's slots (an unknown customer: defaults)."""
    call = action_call("action_refresh_personalization", tracker_state(user_id="nobody"))
    status, answer = request(f"{served}/webhook", json.dumps(call).encode())
    assert status == 200
    slots = {e["name"]: e["value"] for e in answer["events"] if e["event"] == "slot"}
    assert slots["customer_segment"] == "new_visitor"


def test_events_api_needs_a_key(served: str) -> None:
    """The /personalize API is mounted, and refuses a request without a key."""
    status, answer = request(f"{served}/personalize/events", b'{"events": []}')
    assert status == 401
    assert "key" in answer["error"].lower()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/webhook", b"{not json"),  # not JSON at all
        ("/webhook", b'{"next_action": 5}'),  # JSON, but not an action call
        ("/webhook/", b'{"tracker": {}}'),  # the trailing-slash route gets the same checks
    ],
)
def test_malformed_webhook_bodies_get_a_short_4xx(served: str, path: str, body: bytes) -> None:
    """Malformed action calls are refused before any action runs, without echoing them."""
    status, answer = request(f"{served}{path}", body)
    assert 400 <= status < 500
    assert set(answer) == {"error"}
    assert len(json.dumps(answer)) < 300


@pytest.mark.parametrize("command", ["personalize serve", "python -m rasa_sdk"])
def test_a_users_action_of_the_same_name_wins(tmp_path: Path, command: str) -> None:
    """The user's own action_session_start replaces ours, whichever way the server runs."""
    project = rasa_init_project(tmp_path / "assistant", HELLO_WORLD + OWN_SESSION_START)
    port = free_port()
    env = {
        **os.environ,
        "PERSONALIZE_DATABASE_URL": f"sqlite:///{project / 'store.db'}",
        "PERSONALIZE_SECRET_KEY": "layout-test-secret-key",
        "SANIC_HOST": "127.0.0.1",
    }
    base = f"http://127.0.0.1:{port}"
    with ServerProcess(serve_commands(port)[command], f"{base}/health", env=env, cwd=project):
        call = action_call("action_session_start", tracker_state(user_id="nobody"))
        status, answer = request(f"{base}/webhook", json.dumps(call).encode())
    assert status == 200
    slots = {e["name"]: e["value"] for e in answer["events"] if e["event"] == "slot"}
    assert slots == {"shop_greeting": "own"}


def test_personalize_serve_names_a_missing_package(tmp_path: Path) -> None:
    """--actions naming a package that is not there: one line, exit code 2, no traceback."""
    result = subprocess.run(
        [personalize_script(), "serve", "--actions", "my_actions"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "PERSONALIZE_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
            "PERSONALIZE_SECRET_KEY": "layout-test-secret-key",
        },
        check=False,
    )
    assert result.returncode == 2
    assert "action package 'my_actions' not found" in result.stderr
    assert "Traceback" not in result.stderr
