"""Events, profiles and actions while workers die and Redis restarts or hangs.

10,000 events go through the API while the worker, a real `personalize worker` process,
is killed with SIGKILL three times (no chance to finish its batch) and Redis, our own
instance with an append-only file, is restarted once. At the end every event is stored
exactly once and nothing is left in the stream. Then Redis is frozen mid-run: the API and
the actions answer from SQL meanwhile, and nothing is lost or stale afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from redis import Redis
from redis.exceptions import RedisError
from sanic import Sanic
from sqlalchemy import func, select

from rasa_personalize.cache.profiles import entry_key, version_key
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.events.stream import GROUP
from rasa_personalize.identity import customer_key
from rasa_personalize.processes import free_port
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import action_call, slots_from_events, tracker_state
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.factories import NOW, add_product

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.server]

EVENTS = 10_000
BATCH = 100
PRODUCTS = 20
STREAM = "personalize:events"
# After the batch with this index, SIGKILL the worker and start a new one.
KILL_AFTER = (15, 40, 70)
RESTART_REDIS_AFTER = 55


class RedisServer:
    """A private redis-server that persists every write (appendfsync always)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", str(self.directory), "--daemonize", "no", "--save", ""),
                *("--appendonly", "yes", "--appendfsync", "always"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    # The AOF is loaded before PING answers; nothing more to wait for.
                    client.close()
                    return
            except (OSError, RedisError):  # refused, or still loading its file
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # a clean shutdown flushes the append-only file
            self.process.wait(timeout=20)
            self.process = None


class WorkerProcess:
    """`personalize worker` as its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        personalize = str(Path(sys.executable).parent / "personalize")
        command = [personalize, "-v", "worker", "--batch-size", "200",
                   "--block-ms", "100", "--claim-idle-s", "1", "--no-tags", *extra]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=log, start_new_session=True
            )

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout_s)
        self.process = None
        return code

    def stop_then_drain(self, timeout_s: float) -> None:
        """Stop the running worker cleanly, then run one until the stream is drained."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        assert self.wait(60) == 0
        self.start("--until-idle")
        assert self.wait(timeout_s) == 0, self.log.read_text()[-3000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SqlStore]:
    sql = await migrated_store(postgres_url)
    async with sql.sessions.begin() as session:
        for n in range(PRODUCTS):
            await add_product(session, f"SKU-{n}", "shoes", price=10.0 + n)
    yield sql
    await sql.dispose()


def worker_env(postgres_url: str, redis_server: RedisServer) -> dict[str, str]:
    """The environment of `personalize worker` processes for these stores."""
    return os.environ | {
        "PERSONALIZE_DATABASE_URL": postgres_url,
        "PERSONALIZE_REDIS_URL": redis_server.url,
        "PERSONALIZE_SECRET_KEY": TEST_SECRET,
        "PERSONALIZE_EVENT_STREAM": STREAM,
    }


def assert_stream_drained(redis_server: RedisServer) -> None:
    """Nothing pending in the group, nothing left in the stream."""
    client = Redis.from_url(redis_server.url)
    try:
        assert int(client.xpending(STREAM, GROUP)["pending"]) == 0
        assert client.xlen(STREAM) == 0
    finally:
        client.close()


def event(number: int) -> dict[str, Any]:
    return {
        "event_id": f"chaos-{number}",
        "customer": f"customer-{number % 500}",
        "product": f"SKU-{number % PRODUCTS}",
        "kind": ("view", "cart", "purchase")[number % 3],
        "timestamp": (NOW - timedelta(seconds=number)).isoformat(),
        "channel": "web",
    }


async def test_ten_thousand_events_survive_killed_workers_and_a_redis_restart(
    postgres_url: str,
    store: SqlStore,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    async with store.sessions.begin() as session:
        _, key = await create_api_key(session, "ingest")
    settings = make_settings(
        postgres_url, redis_url=redis_server.url, event_stream=STREAM, redis_retry_after_s=0.5
    )
    install_service(PersonalizationService(settings, store))
    app: Sanic[Any, Any] = attach_event_routes(create_app(ActionExecutor()))
    worker = WorkerProcess(worker_env(postgres_url, redis_server), tmp_path / "worker.log")
    worker.start()
    queued = direct = 0
    try:
        for batch in range(EVENTS // BATCH):
            body = {"events": [event(n) for n in range(batch * BATCH, (batch + 1) * BATCH)]}
            for _attempt in range(20):
                _, response = await app.asgi_client.post(
                    "/personalize/events",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                )
                if response.status == 200:
                    break
                await asyncio.sleep(0.2)  # 503: retrying is safe (idempotent by event id)
            assert response.status == 200, response.text
            assert response.json["rejected"] == []
            if response.json["queued"]:
                queued += 1
            else:
                direct += 1
            if batch in KILL_AFTER:
                await asyncio.sleep(0.3)  # let it take a batch, then kill it mid-work
                worker.kill()
                worker.start()
            if batch == RESTART_REDIS_AFTER:
                redis_server.stop()
                # Events keep arriving while Redis is away: they go straight to SQL.
                for extra in range(2):
                    numbers = range((batch + 1 + extra) * BATCH, (batch + 2 + extra) * BATCH)
                    _, during = await app.asgi_client.post(
                        "/personalize/events",
                        json={"events": [event(n) for n in numbers]},
                        headers={"Authorization": f"Bearer {key}"},
                    )
                    assert during.status == 200
                    assert during.json["queued"] is False
                    assert len(during.json["accepted"]) == BATCH
                    direct += 1
                redis_server.start()
            await asyncio.sleep(0.01)
        # Let the last worker stop cleanly, then drain whatever is left.
        worker.stop_then_drain(240)
    finally:
        worker.stop()
        await shutdown_service()

    print((tmp_path / "worker.log").read_text())  # shown by pytest -rP: kills, claims
    async with store.sessions() as session:
        stored = (await session.execute(select(Interaction.event_id))).scalars().all()
        total = await session.scalar(select(func.count()).select_from(Interaction))
    assert total == EVENTS
    assert len(set(stored)) == EVENTS  # no duplicates
    assert set(stored) == {f"chaos-{n}" for n in range(EVENTS)}
    assert_stream_drained(redis_server)
    # Both paths were used: the stream, and SQL while Redis was restarting.
    assert queued > 0
    assert direct >= 2


async def test_a_hung_redis_mid_run_answers_from_sql_and_loses_nothing(
    postgres_url: str,
    store: SqlStore,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis frozen (SIGSTOP: connections open, no answers) while events, profile writes
    and actions keep coming: every answer comes from SQL while Redis cannot answer at
    all, nothing is lost, and the profile written meanwhile is what the action shows
    after Redis is back (no stale cached snapshot wins)."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    async with store.sessions.begin() as session:
        _, ingest = await create_api_key(session, "ingest")
        _, admin = await create_api_key(session, "admin")
    settings = make_settings(
        postgres_url, redis_url=redis_server.url, event_stream=STREAM, redis_retry_after_s=0.5
    )
    install_service(PersonalizationService(settings, store))
    executor = ActionExecutor()
    executor.register_package("rasa_personalize.handlers")
    # Not create_personalize_app(): the test client starts and stops the app around each
    # request, and that app closes the service when it stops.
    app: Sanic[Any, Any] = attach_event_routes(create_app(executor))
    worker = WorkerProcess(worker_env(postgres_url, redis_server), tmp_path / "worker.log")
    customer = "customer-1"

    async def post_events(numbers: range) -> Any:
        _, response = await app.asgi_client.post(
            "/personalize/events",
            json={"events": [event(n) for n in numbers]},
            headers={"Authorization": f"Bearer {ingest}"},
        )
        assert response.status == 200, response.text
        assert len(response.json["accepted"]) == len(numbers)
        return response.json

    async def refreshed_slots() -> dict[str, Any]:
        call = action_call(
            "action_refresh_personalization", tracker_state(sender_id="s-1", user_id=customer)
        )
        _, response = await app.asgi_client.post("/webhook", json=call)
        assert response.status == 200, response.text
        return slots_from_events(response.json["events"])

    async def stored_count() -> int:
        async with store.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Interaction)) or 0)

    worker.start()
    try:
        assert (await post_events(range(0, BATCH)))["queued"] is True
        for _ in range(300):
            if await stored_count() == BATCH:
                break
            await asyncio.sleep(0.1)
        assert await stored_count() == BATCH
        # The worker refreshes metrics after storing, then invalidates the customer's
        # cache entry (its version key appears): only then is a cached entry left alone.
        client = Redis.from_url(redis_server.url)
        key = customer_key(TEST_SECRET, customer)
        for _ in range(300):
            if client.exists(version_key(key)):
                break
            await asyncio.sleep(0.1)
        assert client.exists(version_key(key))
        assert (await refreshed_slots())["loyalty_tier"] == "none"
        # The action cached the customer's snapshot (written back in the background).
        for _ in range(100):
            if client.exists(entry_key(key)):
                break
            await asyncio.sleep(0.05)
        assert client.exists(entry_key(key))
        client.close()

        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            # Each answer is bounded by the Redis timeout; Redis cannot answer at all here.
            during = await asyncio.wait_for(post_events(range(BATCH, 2 * BATCH)), 20)
            assert during["queued"] is False  # stored in the request instead
            _, put = await asyncio.wait_for(
                app.asgi_client.put(
                    f"/personalize/profiles/{customer}",
                    json={"loyalty_tier": "gold"},
                    headers={"Authorization": f"Bearer {admin}"},
                ),
                20,
            )
            assert put.status == 200, put.text
            assert (await asyncio.wait_for(refreshed_slots(), 20))["loyalty_tier"] == "gold"
            assert await stored_count() == 2 * BATCH
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)

        queued_again = False
        for attempt in range(50):
            numbers = range((2 + attempt) * BATCH, (3 + attempt) * BATCH)
            if (await post_events(numbers))["queued"]:
                queued_again = True
                sent = 3 + attempt
                break
            await asyncio.sleep(0.1)
        assert queued_again, "events never went back to the stream after Redis returned"
        # Once the breaker lets the engine use Redis again, the snapshot cached before the
        # freeze ("none") is still there: the PUT's invalidation, replayed, must beat it.
        await asyncio.sleep(2 * settings.redis_retry_after_s)
        assert (await refreshed_slots())["loyalty_tier"] == "gold"

        worker.stop_then_drain(120)
        assert (await refreshed_slots())["loyalty_tier"] == "gold"
    finally:
        worker.stop()
        await shutdown_service()

    async with store.sessions() as session:
        stored = (await session.execute(select(Interaction.event_id))).scalars().all()
    assert sorted(stored) == sorted(f"chaos-{n}" for n in range(sent * BATCH))
    assert_stream_drained(redis_server)
