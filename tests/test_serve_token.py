"""The webhook token in real server processes, served both ways, and where serve binds."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.server import is_loopback
from rasa_personalize.testing import action_call, tracker_state
from tests.test_plugin_layout import (
    HELLO_WORLD,
    personalize_script,
    rasa_init_project,
    request,
    serve_commands,
)

TOKEN = "process-webhook-token-0123456789"  # a test value


@pytest.fixture(scope="module", params=["personalize serve", "python -m rasa_sdk"])
def guarded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A server with PERSONALIZE_WEBHOOK_TOKEN set, started by one of the two commands."""
    tmp_path = tmp_path_factory.mktemp("guarded")
    project = rasa_init_project(tmp_path / "assistant", HELLO_WORLD)
    port = free_port()
    env = {
        **os.environ,
        "PERSONALIZE_DATABASE_URL": f"sqlite:///{project / 'store.db'}",
        "PERSONALIZE_SECRET_KEY": "token-test-secret-key",
        "PERSONALIZE_WEBHOOK_TOKEN": TOKEN,
        "SANIC_HOST": "127.0.0.1",  # rasa-sdk's own server binds where this says
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = serve_commands(port)[request.param]
    with ServerProcess(command, f"{base}/health", env=env, cwd=project, log_path=log):
        yield base
    assert TOKEN not in log.read_text()  # the secret never reaches the log


@pytest.mark.server
def test_webhook_needs_the_token(guarded: str) -> None:
    """401 without the token, 200 with it as Rasa's `token:` and as a Basic password."""
    body = json.dumps(action_call("action_hello_world", tracker_state())).encode()
    basic = base64.b64encode(f"rasa:{TOKEN}".encode()).decode()
    without = request(f"{guarded}/webhook", body)
    with_query = request(f"{guarded}/webhook?token={TOKEN}", body)
    with_basic = request(f"{guarded}/webhook", body, {"Authorization": f"Basic {basic}"})
    assert without == (401, {"error": "missing or wrong webhook token"})
    assert with_query[0] == 200
    assert with_query[1]["responses"][0]["text"] == "Hello World!"
    assert with_basic[0] == 200


@pytest.mark.server
def test_actions_need_the_token_and_health_does_not(guarded: str) -> None:
    """/actions is guarded like the webhook; /health answers anyone."""
    refused, _ = request(f"{guarded}/actions")
    listed, names = request(f"{guarded}/actions", headers={"Authorization": f"Bearer {TOKEN}"})
    health, _ = request(f"{guarded}/health")
    assert (refused, listed, health) == (401, 200, 200)
    assert "action_hello_world" in {entry["name"] for entry in names}


@pytest.mark.parametrize(
    "host",
    [
        "0.0.0.0",  # every interface: the address the test refuses
        "192.0.2.10",  # another machine's address
        "shop-actions.internal",  # a host name: it may resolve to any interface
    ],
)
def test_serve_refuses_a_public_host_without_a_token(tmp_path: Path, host: str) -> None:
    """One line on stderr, exit code 2, and no server started."""
    env = {key: value for key, value in os.environ.items() if key != "PERSONALIZE_WEBHOOK_TOKEN"}
    result = subprocess.run(
        [personalize_script(), "serve", "--host", host, "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **env,
            "PERSONALIZE_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}",
            "PERSONALIZE_SECRET_KEY": "token-test-secret-key",  # no development-key warning
        },
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "PERSONALIZE_WEBHOOK_TOKEN" in lines[0]
    assert "--insecure-no-token" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),  # the default
        ("127.0.0.2", True),  # all of 127/8 is loopback
        ("::1", True),  # IPv6 loopback
        ("[::1]", True),  # IPv6 loopback as written in URLs
        ("localhost", True),  # the name every system maps to loopback
        ("0.0.0.0", False),  # every interface
        ("::", False),  # every IPv6 interface
        ("10.1.2.3", False),  # a private network is still other machines
        ("actions.example", False),  # a host name may resolve anywhere
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Only addresses that keep the server on this machine count as loopback."""
    assert is_loopback(host) is loopback
