"""`personalize serve` as a real process: starts with the store down, recovers by itself."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rasa_personalize.identity import customer_key
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.store.migrate import upgrade
from rasa_personalize.testing import action_call, slots_from_events, tracker_state

pytestmark = pytest.mark.server


def post(url: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def store_folder(tmp_path: Path) -> Path:
    return tmp_path / "not-yet"


@pytest.fixture
def server(store_folder: Path) -> Iterator[str]:
    """A server whose SQLite store's folder does not exist yet (a store that is down)."""
    port = free_port()
    log = store_folder.parent / "server.log"
    env = {
        **os.environ,
        "PERSONALIZE_DATABASE_URL": f"sqlite:///{store_folder / 'store.db'}",
        "PERSONALIZE_SECRET_KEY": "process-test-secret-key",
        "PERSONALIZE_STORE_RETRY_AFTER_S": "0",
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rasa_personalize.cli", "serve", "--host", "127.0.0.1"]
    with ServerProcess([*command, "--port", str(port)], f"{base}/health", env=env, log_path=log):
        yield base
    # Nothing from the conversation may reach the log, even while the store is down.
    assert "jane.doe" not in log.read_text()


def test_server_starts_with_store_down_and_recovers(server: str, store_folder: Path) -> None:
    """Defaults while the store is down; the customer's data once it is back, no restart."""
    body = action_call(
        "action_refresh_personalization",
        tracker_state(sender_id="jane.doe@example.com", user_id="jane.doe"),
    )
    status, down = post(f"{server}/webhook", body)
    assert status == 200
    assert slots_from_events(down["events"])["customer_segment"] == "new_visitor"

    store_folder.mkdir()
    upgrade(f"sqlite:///{store_folder / 'store.db'}")
    with sqlite3.connect(store_folder / "store.db") as db:
        db.execute(
            "INSERT INTO customers (customer_key, created_at, loyalty_tier) VALUES (?, ?, ?)",
            (customer_key("process-test-secret-key", "jane.doe"), "2026-01-01 00:00:00", "gold"),
        )
    status, back = post(f"{server}/webhook", body)
    assert status == 200
    assert slots_from_events(back["events"])["loyalty_tier"] == "gold"


def test_malformed_body_over_real_http(server: str) -> None:
    """The real server (not only the test client) refuses a bad body with a short 400."""
    request = urllib.request.Request(
        f"{server}/webhook",
        data=b'{"next_action": 1, "tracker": "jane.doe"}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    body = refused.value.read().decode()
    assert "jane.doe" not in body
    assert "next_action" in body
