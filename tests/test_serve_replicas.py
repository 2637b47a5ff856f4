"""`personalize serve --workers 2` as a real process: both workers give a customer the same
slots, before and after a write, whichever of them answers.

Each worker times its actions in its own file of the multi-process metrics directory, so
the test knows that both answered (a response does not say which process sent it). On
SQLite always; on PostgreSQL + Redis (the profile cache) when both are configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.testing import action_call, tracker_state
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import add_customer
from tests.prometheus_tools import counts_by_process

pytestmark = pytest.mark.server

ACTION = "action_session_start"
BATCH = 40
# /health answers as soon as one worker serves; the other may still be starting (seconds
# on a busy machine), and until then the first takes every connection. The test fails,
# rather than passes vacuously, if one worker never answers within this time.
BOTH_WORKERS_WITHIN_S = 30.0


@dataclass(frozen=True)
class Replicas:
    """A server with two workers: its URL, its metrics directory, an admin key, and the
    external id of its one customer (unique, since a shared Redis outlives the test)."""

    base: str
    multiproc_dir: Path
    admin_key: str
    customer: str


def _seed(url: str, customer: str) -> str:
    """Migrate, add a gold customer; returns an admin API key."""

    async def seed() -> str:
        store = await migrated_store(url)
        try:
            async with store.sessions.begin() as session:
                await add_customer(session, customer, tier="gold")
                _, issued = await create_api_key(session, "admin", label="replicas test")
                return issued
        finally:
            await store.dispose()

    return asyncio.run(seed())


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Replicas]:
    env = dict(os.environ)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        env["PERSONALIZE_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["PERSONALIZE_EVENT_STREAM"] = f"test:replicas:{uuid.uuid4().hex}"
    customer = f"replica-{uuid.uuid4().hex[:12]}"
    admin_key = _seed(url, customer)
    multiproc_dir = tmp_path / "prometheus-multiproc"
    port = free_port()
    env |= {
        "PERSONALIZE_DATABASE_URL": url,
        "PERSONALIZE_SECRET_KEY": TEST_SECRET,
        "PERSONALIZE_MODEL_DIR": str(tmp_path / "models"),
        # Named here so that the test can read each worker's own file.
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rasa_personalize.cli", "serve", "--workers", "2"]
    log = tmp_path / "server.log"
    with ServerProcess([*command, "--port", str(port)], f"{base}/health", env=env, log_path=log):
        yield Replicas(base, multiproc_dir, admin_key, customer)


def request_json(
    method: str, url: str, payload: dict[str, Any], token: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def session_slots(replicas: Replicas, call: int) -> list[tuple[str, Any]]:
    """The slot events of one session start of the customer, in order (a new connection:
    either worker may take it), but ``time_of_day``: it follows the clock, and a batch may
    straddle the hour it changes at."""
    tracker = tracker_state(sender_id=f"web-{call}", user_id=replicas.customer)
    status, answer = request_json("POST", f"{replicas.base}/webhook", action_call(ACTION, tracker))
    assert status == 200
    return [
        (e["name"], e["value"])
        for e in answer["events"]
        if e["event"] == "slot" and e["name"] != "time_of_day"
    ]


def answers_from_both_workers(replicas: Replicas) -> list[list[tuple[str, Any]]]:
    """Session starts of the customer, in parallel batches, until each worker has answered
    some since the call began; every answer."""

    def counts() -> dict[str, float]:
        return counts_by_process(
            replicas.multiproc_dir, "personalize_action_seconds_bucket", action=ACTION
        )

    before = counts()
    answers: list[list[tuple[str, Any]]] = []
    deadline = time.monotonic() + BOTH_WORKERS_WITHIN_S
    with ThreadPoolExecutor(max_workers=8) as pool:
        while time.monotonic() < deadline:
            answers += pool.map(lambda n: session_slots(replicas, n), range(BATCH))
            after = counts()
            if len([pid for pid, n in after.items() if n > before.get(pid, 0.0)]) >= 2:
                return answers
    raise AssertionError(f"{len(answers)} calls, but not both workers answered: {counts()}")


def distinct(answers: list[list[tuple[str, Any]]]) -> list[dict[str, Any]]:
    """The different answers, as slot dictionaries."""
    found: list[dict[str, Any]] = []
    for answer in answers:
        if dict(answer) not in found:
            found.append(dict(answer))
    return found


def test_both_workers_agree_before_and_after_writes(replicas: Replicas) -> None:
    """The same slots from either worker; after a profile write and a consent change
    through one of them, every answer from either has the new values."""
    first = distinct(answers_from_both_workers(replicas))
    assert len(first) == 1
    assert first[0]["loyalty_tier"] == "gold"

    profile_url = f"{replicas.base}/personalize/profiles/{replicas.customer}"
    status, _ = request_json("PUT", profile_url, {"loyalty_tier": "platinum"}, replicas.admin_key)
    assert status == 200
    upgraded = distinct(answers_from_both_workers(replicas))

    status, _ = request_json(
        "PUT", f"{profile_url}/consent", {"deny": ["personalization"]}, replicas.admin_key
    )
    assert status == 200
    denied = distinct(answers_from_both_workers(replicas))

    assert upgraded == [{**first[0], "loyalty_tier": "platinum"}]
    assert len(denied) == 1
    assert denied[0]["personalization_consent"] == "denied"
    assert denied[0]["loyalty_tier"] != "platinum"
