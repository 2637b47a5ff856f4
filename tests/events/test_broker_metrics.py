"""The broker consumer's metrics and its /health, /ready and /metrics, in process and as
`personalize broker --metrics-port`, against a real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.events.broker import BrokerConsumer, dead_letter_queue
from rasa_personalize.events.probes import broker_readiness, serving
from rasa_personalize.identity import customer_key
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.readiness import Readiness
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store
from tests.events.test_broker import (
    IDENTITY_SECRET,
    bot,
    ingestion,
    publish,
    run_until,
    session_opening,
    signed,
    user,
)
from tests.factories import NOW
from tests.prometheus_tools import http_get, sample, value_in, wait_until

T = TypeVar("T")

OUTCOMES = ("accepted", "duplicate", "rejected", "suppressed")
RESULTS = ("interaction", "ignored", "dead_letter")


def broker_counts() -> dict[str, float]:
    """This process's broker events by outcome and messages by result."""
    events = {o: sample("personalize_events_total", stage="broker", outcome=o) for o in OUTCOMES}
    messages = {r: sample("personalize_broker_messages_total", result=r) for r in RESULTS}
    return events | messages


def conversation() -> list[bytes]:
    """One of each outcome: a session of cust-7 with a message (accepted), that message
    delivered again (duplicate), a broken message (rejected: dead-lettered), a message of a
    customer who denied tracking (suppressed), and the next session of cust-7 (its start,
    and the end of the first session: accepted)."""
    return [
        *session_opening(**signed("cust-7")),  # metadata slot, action, start, action
        user(at=1.0, metadata=signed("cust-7")),
        bot(at=1.5),
        user(at=1.0, metadata=signed("cust-7")),  # redelivered
        b"{broken",
        user(sender="conv-2", at=2.0, metadata=signed("denier")),
        *session_opening(at=600.0, **signed("cust-7")),
    ]


# What conversation() makes: per event outcome, and per message result (13 messages).
EXPECTED = {
    "accepted": 4,  # two session starts, one chat message, one session end
    "duplicate": 1,
    "rejected": 1,
    "suppressed": 1,
    "interaction": 5,  # the messages that made an interaction, whatever its outcome
    "ignored": 7,  # metadata slots, actions, the bot's utterance
    "dead_letter": 1,
}


async def deny_tracking(store: SqlStore, external_id: str) -> None:
    async with store.sessions.begin() as session:
        await set_consent(
            session, customer_key(TEST_SECRET, external_id), {"tracking": False},
            source="api", policy_version=None, now=NOW - timedelta(days=1),
        )  # fmt: skip


@pytest.fixture
async def queue(rabbitmq_url: str) -> AsyncIterator[str]:
    """A queue of this test's own (and its dead letters), deleted afterwards."""
    name = f"test_broker_metrics_{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        for each in (name, dead_letter_queue(name)):
            await channel.queue_delete(each)


# -- in this process ---------------------------------------------------------------------


@pytest.mark.rabbitmq
async def test_the_consumer_counts_events_by_outcome_and_messages_by_result(
    sqlite_store: SqlStore, rabbitmq_url: str, queue: str
) -> None:
    """Each outcome once, read from RabbitMQ: the counters move by exactly that, each
    batch is timed once, and the conversations followed are a gauge."""
    await deny_tracking(sqlite_store, "denier")
    bodies = conversation()
    await publish(rabbitmq_url, queue, bodies)
    before = broker_counts()
    batches = sample("personalize_broker_batch_seconds_count")
    consumer = BrokerConsumer(rabbitmq_url, queue, ingestion(sqlite_store))

    await run_until(consumer, lambda: consumer.stats.messages >= len(bodies))

    after = broker_counts()
    assert {name: after[name] - before[name] for name in after} == EXPECTED
    assert sample("personalize_broker_batch_seconds_count") - batches == consumer.stats.batches
    assert sample("personalize_broker_conversations") == 2  # conv-1 and conv-2


async def test_readiness_needs_the_store_and_a_consuming_connection(
    sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """Ready only when both hold; each failing check is named."""
    ready = await broker_readiness(sqlite_store, lambda: True, timeout_s=1.0)
    unplugged = await broker_readiness(sqlite_store, lambda: False, timeout_s=1.0)
    gone = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
    try:
        no_store = await broker_readiness(gone, lambda: True, timeout_s=1.0)
    finally:
        await gone.dispose()

    assert ready.ready
    assert not unplugged.ready
    assert unplugged.as_json()["checks"]["broker"]["ok"] is False
    assert unplugged.as_json()["checks"]["store"]["ok"] is True
    assert not no_store.ready
    assert no_store.as_json()["checks"]["store"]["ok"] is False
    assert no_store.as_json()["checks"]["broker"]["ok"] is True


async def test_a_port_in_use_is_one_clear_error(sqlite_store: SqlStore) -> None:
    """The command fails with one line naming the address, not a traceback."""

    async def readiness() -> Readiness:
        return await broker_readiness(sqlite_store, lambda: True)

    async with serving("127.0.0.1", 0, readiness, "the broker consumer's") as taken:
        port = taken.port
        with pytest.raises(PersonalizeError) as caught:
            async with serving("127.0.0.1", port, readiness, "the broker consumer's"):
                pass
    assert str(caught.value).startswith(
        f"cannot serve the broker consumer's probes on 127.0.0.1:{port}: "
    )
    assert str(caught.value).endswith("address already in use")


# -- `personalize broker --metrics-port` as a real process ---------------------------------


class CuttableProxy:
    """A TCP proxy to RabbitMQ that the test cuts (every connection dropped, the port
    refusing new ones) and restores: a RabbitMQ outage as the consumer sees it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, upstream_writer)
        self._open.update(pair)
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
            )
        finally:
            for each in pair:
                each.transport.abort()
                self._open.discard(each)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()  # one side gone: so is the other


def through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parsed = urlsplit(url)
    credentials = parsed.netloc.rpartition("@")[0]
    return urlunsplit(parsed._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


def ready_status(base: str, wanted: int) -> tuple[int, dict[str, object]] | None:
    status, body = http_get(f"{base}/ready")
    return (status, json.loads(body)) if status == wanted else None


async def waited(check: Callable[[], T | None], what: str) -> T:
    """:func:`wait_until` off the event loop, where the proxy forwards meanwhile."""
    return await asyncio.to_thread(wait_until, check, 60, what)


@pytest.mark.rabbitmq
@pytest.mark.server
async def test_a_running_broker_serves_its_probes_and_metrics(
    sqlite_url: str, rabbitmq_url: str, queue: str, tmp_path: Path
) -> None:
    """Through a real `personalize broker`: the counters by outcome, /ready 200 while
    RabbitMQ is reachable, 503 naming the broker while it is not, 200 again after it
    returns (and consuming resumes); the customer is never named."""
    canary = "canary-broker-41c7@example.com"
    store = await migrated_store(sqlite_url)
    try:
        await deny_tracking(store, "denier")
    finally:
        await store.dispose()
    target = urlsplit(rabbitmq_url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "PERSONALIZE_DATABASE_URL": sqlite_url,
        "PERSONALIZE_SECRET_KEY": TEST_SECRET,
        "PERSONALIZE_IDENTITY_SECRET": IDENTITY_SECRET,
        # A server's multi-process directory in the environment must not confuse it.
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "not-for-the-broker"),
    }
    env.pop("PERSONALIZE_REDIS_URL", None)
    command = [sys.executable, "-m", "rasa_personalize.cli", "broker", "--no-tags"]
    command += ["--url", through(rabbitmq_url, proxy.port), "--queue", queue]
    command += ["--metrics-port", str(port)]
    bodies = [*conversation(), user(sender="conv-3", at=3.0, metadata=signed(canary))]

    def counted(accepted: float) -> str | None:
        _, text = http_get(f"{base}/metrics")
        found = value_in(text, "personalize_events_total", stage="broker", outcome="accepted")
        return text if found == accepted else None

    process = ServerProcess(command, f"{base}/health", env=env, log_path=tmp_path / "broker.log")
    await asyncio.to_thread(process.start)
    try:
        first_ready = await waited(lambda: ready_status(base, 200), "/ready 200")
        await publish(rabbitmq_url, queue, bodies)
        text = await waited(lambda: counted(EXPECTED["accepted"] + 1), "the conversation stored")
        await proxy.cut()
        cut_ready = await waited(lambda: ready_status(base, 503), "/ready 503 once cut")
        health = await asyncio.to_thread(http_get, f"{base}/health")
        await proxy.start()
        await waited(lambda: ready_status(base, 200), "/ready 200 after the outage")
        await publish(rabbitmq_url, queue, [user(sender="conv-4", at=4.0, metadata=signed("x"))])
        await waited(lambda: counted(EXPECTED["accepted"] + 2), "a message after the outage")
    finally:
        await asyncio.to_thread(process.stop)
        await proxy.cut()

    for outcome in ("duplicate", "rejected", "suppressed"):
        found = value_in(text, "personalize_events_total", stage="broker", outcome=outcome)
        assert found == EXPECTED[outcome], outcome
    for result in RESULTS:
        found = value_in(text, "personalize_broker_messages_total", result=result)
        assert found == EXPECTED[result] + (result == "interaction"), result
    assert (value_in(text, "personalize_broker_batch_seconds_count") or 0) >= 1
    # The other stages are listed, at 0: one family for every process.
    assert value_in(text, "personalize_events_total", stage="worker", outcome="accepted") == 0
    assert "canary" not in text
    assert customer_key(TEST_SECRET, canary) not in text
    assert first_ready == (200, {"ready": True, "checks": _checks(broker=True)})
    assert cut_ready == (503, {"ready": False, "checks": _checks(broker=False)})
    assert health[0] == 200
    assert not (tmp_path / "not-for-the-broker").exists()


def _checks(*, broker: bool) -> dict[str, object]:
    detail = (
        "connected to RabbitMQ, consuming the queue"
        if broker
        else "not connected to RabbitMQ (connecting, or reconnecting after a loss)"
    )
    return {
        "store": {"ok": True, "detail": "store answered SELECT 1"},
        "broker": {"ok": broker, "detail": detail},
    }
