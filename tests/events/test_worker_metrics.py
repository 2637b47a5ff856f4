"""The stream worker's metrics and its /health, /ready and /metrics, in process and as
`personalize worker --metrics-port`."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis import asyncio as redis_asyncio

from rasa_personalize.events.dead_letters import dead_letter_stream
from rasa_personalize.events.probes import ProbeServer, StreamGauges, worker_readiness
from rasa_personalize.events.stream import FIELD
from rasa_personalize.identity import customer_key
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.readiness import Check, Readiness
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store
from tests.events.test_worker import make_event, publish, worker_for
from tests.factories import add_product
from tests.prometheus_tools import http_get, sample, value_in, wait_until

OUTCOMES = ("accepted", "duplicate", "rejected", "suppressed")
REDIS_PASSWORD = "s3cret-redis-password"  # a test value, not a secret


def worker_counts() -> dict[str, float]:
    return {o: sample("personalize_events_total", stage="worker", outcome=o) for o in OUTCOMES}


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SqlStore]:
    sql = await migrated_store(sqlite_url)
    async with sql.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=50.0)
    yield sql
    await sql.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[redis_asyncio.Redis, str]]:
    """A client and a stream name of this test's own, deleted afterwards."""
    client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
    stream = f"test:events:{uuid.uuid4().hex}"
    yield client, stream
    await client.delete(
        stream,
        f"{stream}:dirty",
        f"{stream}:dirty-version",
        f"{stream}:dirty-latest",
        f"{stream}:dirty-claims",
        dead_letter_stream(stream),
    )
    await client.aclose()


# -- in this process ---------------------------------------------------------------------


@pytest.mark.redis
async def test_the_worker_counts_events_and_times_batches(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """250 events, 10 of them sent twice: the counters say so; one timing per batch."""
    client, stream = redis
    events = [make_event(n, customer=f"c{n % 7}") for n in range(250)]
    await publish(client, stream, events)
    await publish(client, stream, events[:10])
    before, batches = worker_counts(), sample("personalize_worker_batch_seconds_count")

    stats = await worker_for(client, stream, store, batch_size=100).run()

    after = worker_counts()
    assert {o: after[o] - before[o] for o in OUTCOMES} == {
        "accepted": 250,
        "duplicate": 10,
        "rejected": 0,
        "suppressed": 0,
    }
    assert stats.batches > 1
    assert sample("personalize_worker_batch_seconds_count") - batches == stats.batches


@pytest.mark.redis
async def test_stream_gauges_read_backlog_dead_letters_and_dirty_customers(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """Sizes as Redis has them; after the worker ran, the backlog and dirty set are empty."""
    client, stream = redis
    for number in range(3):  # three messages
        await publish(client, stream, [make_event(number)])
    await client.xadd(dead_letter_stream(stream), {FIELD: b"[]"})
    gauges = StreamGauges(client, stream)

    assert await gauges.update()
    waiting = (
        sample("personalize_stream_pending", stream=stream),
        sample("personalize_stream_dead_letters", stream=stream),
    )
    await worker_for(client, stream, store).run()
    assert await gauges.update()

    assert waiting == (3, 1)
    assert sample("personalize_stream_pending", stream=stream) == 0
    assert sample("personalize_stream_dirty_customers", stream=stream) == 0
    assert sample("personalize_stream_dead_letters", stream=stream) == 1


@pytest.mark.redis
async def test_customers_waiting_for_a_refresh_are_counted(
    redis: tuple[redis_asyncio.Redis, str],
) -> None:
    client, stream = redis
    await client.zadd(f"{stream}:dirty", {"11": 1, "12": 1})
    assert await StreamGauges(client, stream).update()
    assert sample("personalize_stream_dirty_customers", stream=stream) == 2


async def test_stream_gauges_keep_their_values_while_redis_is_away() -> None:
    dead = redis_asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    try:
        assert await StreamGauges(dead, "test:away").update() is False
    finally:
        await dead.aclose()


# -- the probe server --------------------------------------------------------------------


async def request(port: int, raw: bytes) -> bytes:
    """Send ``raw`` and read the whole answer (the server closes the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


@pytest.fixture
async def probes() -> AsyncIterator[tuple[ProbeServer, list[Readiness]]]:
    """A probe server on a free port whose readiness answers what the test puts first."""
    answers = [Readiness({"store": Check(True, "ok"), "redis": Check(True, "ok")})]

    async def readiness() -> Readiness:
        return answers[0]

    server = ProbeServer("127.0.0.1", 0, readiness)
    await server.start()
    yield server, answers
    await server.close()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        # liveness
        (get("/health"), b"200 OK"),
        # a query string does not change the route
        (get("/health?x=1"), b"200 OK"),
        # only the three routes exist
        (get("/anything"), b"404 Not Found"),
        # probes are read, never written
        (get("/metrics", "POST"), b"405 Method Not Allowed"),
        # not HTTP at all
        (b"hello there\r\n\r\n", b"400 Bad Request"),
    ],
)
async def test_routes_and_refusals(
    probes: tuple[ProbeServer, list[Readiness]], raw: bytes, status: bytes
) -> None:
    server, _ = probes
    answer = await request(server.port, raw)
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 " + status


async def test_ready_answers_503_with_the_failed_check(
    probes: tuple[ProbeServer, list[Readiness]],
) -> None:
    server, answers = probes
    ok = await request(server.port, get("/ready"))
    answers[0] = Readiness({"store": Check(True, "ok"), "redis": Check(False, "no PING")})
    failing = await request(server.port, get("/ready"))
    assert ok.startswith(b"HTTP/1.1 200 ")
    assert failing.startswith(b"HTTP/1.1 503 ")
    assert b'"redis": {"ok": false, "detail": "no PING"}' in failing


async def test_metrics_and_head(probes: tuple[ProbeServer, list[Readiness]]) -> None:
    """Prometheus' text format; HEAD has the headers and no body."""
    server, _ = probes
    answer = await request(server.port, get("/metrics"))
    head, body = answer.split(b"\r\n\r\n", 1)
    only_head = await request(server.port, get("/metrics", "HEAD"))
    assert b"Content-Type: text/plain" in head
    assert b"# TYPE personalize_events_total counter" in body
    assert only_head.endswith(b"\r\n\r\n")
    assert b"Content-Length: " in only_head


async def test_an_oversized_request_head_gets_no_answer(
    probes: tuple[ProbeServer, list[Readiness]],
) -> None:
    server, _ = probes
    answer = await request(server.port, b"GET /health HTTP/1.1\r\nX: " + b"a" * 20_000)
    assert answer == b""


async def test_the_port_in_use_is_a_clear_error(
    probes: tuple[ProbeServer, list[Readiness]],
) -> None:
    server, answers = probes

    async def readiness() -> Readiness:
        return answers[0]

    with pytest.raises(OSError, match="ddress already in use"):
        await ProbeServer("127.0.0.1", server.port, readiness).start()


@pytest.mark.redis
async def test_worker_readiness_with_real_dependencies(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    client, _ = redis
    assert (await worker_readiness(store, client, timeout_s=1.0)).ready


async def test_worker_readiness_names_a_redis_that_does_not_answer(store: SqlStore) -> None:
    """Not ready, the error's class only: never the URL (it may hold a password)."""
    dead = redis_asyncio.Redis.from_url(
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0", socket_connect_timeout=0.2
    )
    try:
        readiness = await worker_readiness(store, dead, timeout_s=1.0)
    finally:
        await dead.aclose()
    body = readiness.as_json()
    assert body["ready"] is False
    assert body["checks"]["store"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert REDIS_PASSWORD not in str(body)


# -- `personalize worker --metrics-port` as a real process ---------------------------------


@pytest.mark.redis
@pytest.mark.server
async def test_a_running_worker_serves_its_probes_and_metrics(
    sqlite_url: str,
    store: SqlStore,
    redis: tuple[redis_asyncio.Redis, str],
    redis_url: str,
    tmp_path: Path,
) -> None:
    """Events of a canary customer go through a real worker: counted, never named."""
    client, stream = redis
    canary = "canary-worker-5d1e@example.com"
    port = free_port()
    env = os.environ | {
        "PERSONALIZE_DATABASE_URL": sqlite_url,
        "PERSONALIZE_REDIS_URL": redis_url,
        "PERSONALIZE_SECRET_KEY": TEST_SECRET,
        "PERSONALIZE_EVENT_STREAM": stream,
        # A server's multi-process directory in the environment must not confuse it.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "not-for-the-worker"),
    }
    command = [sys.executable, "-m", "rasa_personalize.cli", "worker", "--no-tags"]
    command += ["--block-ms", "100", "--metrics-port", str(port)]
    base = f"http://127.0.0.1:{port}"
    events = [make_event(n, customer=canary) for n in range(40)]

    def metrics_once_stored() -> str | None:
        _, text = http_get(f"{base}/metrics")
        stored = value_in(text, "personalize_events_total", stage="worker", outcome="accepted")
        pending = value_in(text, "personalize_stream_pending", stream=stream)
        return text if (stored, pending) == (40, 0) else None

    with ServerProcess(command, f"{base}/health", env=env, log_path=tmp_path / "worker.log"):
        await publish(client, stream, events[:20])
        await publish(client, stream, events[20:])
        text = await asyncio.to_thread(wait_until, metrics_once_stored, 60, "40 events stored")
        ready_status, ready_body = await asyncio.to_thread(http_get, f"{base}/ready")

    assert ready_status == 200, ready_body
    batches = value_in(text, "personalize_worker_batch_seconds_count")
    assert batches is not None
    assert batches >= 1
    assert value_in(text, "personalize_stream_dead_letters", stream=stream) == 0
    assert "canary" not in text
    assert customer_key(TEST_SECRET, canary) not in text
    assert not (tmp_path / "not-for-the-worker").exists()
