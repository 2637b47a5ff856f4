"""`personalize serve --workers 2` as a real process: /metrics sums its workers, holds no
customer data, and a real Prometheus scrapes it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.identity import customer_key
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.testing import action_call, tracker_state
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import add_customer, add_product
from tests.prometheus_tools import PrometheusServer, http_get, value_in, wait_until
from tests.prometheus_tools import counts_by_process as process_counts
from tests.test_plugin_layout import HELLO_WORLD, rasa_init_project

pytestmark = pytest.mark.server

TOKEN = "metrics-serve-test-webhook-token-0123"  # a test value, not a secret
ACTION = "action_refresh_personalization"
CANARY = "canary-3b9e41@example.com"


@dataclass(frozen=True)
class Served:
    """A running server: its URL, its multi-process directory and an ingest key."""

    base: str
    multiproc_dir: Path
    api_key: str


def _seed(url: str) -> str:
    """Migrate, add a customer and a product; returns an ingest API key."""

    async def seed() -> str:
        store = await migrated_store(url)
        try:
            async with store.sessions.begin() as session:
                await add_product(session, "SKU-1", "shoes", price=100.0)
                await add_customer(session, "ada", tier="gold")
                _, issued = await create_api_key(session, "ingest", label="metrics test")
                return issued
        finally:
            await store.dispose()

    return asyncio.run(seed())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve-metrics")
    url = f"sqlite:///{folder / 'store.db'}"
    api_key = _seed(url)
    multiproc_dir = folder / "prometheus-multiproc"
    port = free_port()
    env = os.environ | {
        "PERSONALIZE_DATABASE_URL": url,
        "PERSONALIZE_SECRET_KEY": TEST_SECRET,
        "PERSONALIZE_WEBHOOK_TOKEN": TOKEN,
        "PERSONALIZE_MODEL_DIR": str(folder / "models"),
        # Named here so that the test can read each process's own file.
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rasa_personalize.cli", "serve", "--workers", "2"]
    log = folder / "server.log"
    with ServerProcess([*command, "--port", str(port)], f"{base}/health", env=env, log_path=log):
        yield Served(base, multiproc_dir, api_key)
    # Nothing of the canary reached the log either.
    assert CANARY not in log.read_text()


def post(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def call_action(served: Served, sender: str = "web-1", user: str = "ada") -> int:
    body = action_call(ACTION, tracker_state(sender_id=sender, user_id=user))
    return post(f"{served.base}/webhook?token={TOKEN}", body)


def scraped_count(served: Served) -> float:
    status, text = http_get(f"{served.base}/metrics")
    assert status == 200
    return value_in(text, "personalize_action_seconds_count", action=ACTION) or 0.0


def counts_by_process(folder: Path) -> dict[str, float]:
    """Each worker's own count of ACTION, read from its histogram file."""
    return process_counts(folder, "personalize_action_seconds_bucket", action=ACTION)


def test_metrics_on_any_worker_sum_every_worker(served: Served) -> None:
    """Calls spread over two processes; every scrape, whichever answers, sees them all."""
    start = scraped_count(served)
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        # New connections in parallel until both workers have served some (bounded).
        while sent < 800:
            statuses = list(pool.map(lambda n: call_action(served, f"web-{n}"), range(40)))
            assert statuses == [200] * 40
            sent += 40
            busy = [c for c in counts_by_process(served.multiproc_dir).values() if c > 0]
            if len(busy) >= 2:
                break
    scrapes = [scraped_count(served) for _ in range(8)]
    per_process = counts_by_process(served.multiproc_dir)

    assert len([c for c in per_process.values() if c > 0]) == 2
    assert sum(per_process.values()) == start + sent
    assert scrapes == [start + sent] * 8


def test_metrics_need_no_token_and_hold_no_customer_data(served: Served) -> None:
    """A canary customer through the webhook and the events API: /metrics never names it."""
    assert call_action(served, sender=CANARY, user=CANARY) == 200
    event = {
        "event_id": "canary-event-1",
        "customer": CANARY,
        "product": "SKU-1",
        "kind": "view",
        "timestamp": "2026-01-01T10:00:00Z",
    }
    assert (
        post(
            f"{served.base}/personalize/events",
            {"events": [event]},
            {"Authorization": f"Bearer {served.api_key}"},
        )
        == 200
    )
    status, text = http_get(f"{served.base}/metrics")

    assert status == 200
    assert value_in(text, "personalize_events_total", stage="api", outcome="accepted") == 1
    assert "canary" not in text
    assert customer_key(TEST_SECRET, CANARY) not in text
    assert http_get(f"{served.base}/ready")[0] in {200, 503}  # open, like /metrics


@pytest.mark.prometheus
def test_a_real_prometheus_scrapes_the_server(served: Served, tmp_path: Path) -> None:
    """Prometheus (1 s interval) ends up with the count /metrics reports."""
    for number in range(10):
        assert call_action(served, f"prometheus-{number}") == 200
    expected = scraped_count(served)
    target = served.base.removeprefix("http://")

    with PrometheusServer(tmp_path / "prometheus", {"personalize": target}) as prometheus:

        def counted() -> float | None:
            found = prometheus.query('sum(personalize_action_seconds_count{job="personalize"})')
            value = float(found[0]["value"][1]) if found else None
            return value if value == expected else None

        seen = wait_until(counted, 60, f"Prometheus to report {expected:.0f} action calls")
        up = prometheus.query('up{job="personalize"}')

    assert seen == expected
    assert [float(series["value"][1]) for series in up] == [1.0]


def test_rasa_sdks_own_server_serves_metrics_too(tmp_path: Path) -> None:
    """`python -m rasa_sdk` (what `rasa run actions` runs): one process, its own registry,
    the user's action and ours timed alike."""
    project = rasa_init_project(tmp_path / "assistant", HELLO_WORLD)
    port = free_port()
    env = os.environ | {
        "PERSONALIZE_DATABASE_URL": f"sqlite:///{project / 'store.db'}",
        "PERSONALIZE_SECRET_KEY": TEST_SECRET,
        "SANIC_HOST": "127.0.0.1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)]
    with ServerProcess(command, f"{base}/health", env=env, cwd=project, log_path=tmp_path / "log"):
        for action in ("action_hello_world", ACTION, ACTION):
            assert post(f"{base}/webhook", action_call(action, tracker_state())) == 200
        status, text = http_get(f"{base}/metrics")

    assert status == 200
    assert value_in(text, "personalize_action_seconds_count", action="action_hello_world") == 1
    assert value_in(text, "personalize_action_seconds_count", action=ACTION) == 2
    assert value_in(text, "personalize_defaults_total", reason="unknown_customer") == 2
