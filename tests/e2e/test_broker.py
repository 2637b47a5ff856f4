"""Rasa's own event broker as a source: ``rasa run`` with ``event_broker: type: pika``
publishes a real conversation to RabbitMQ, and ``personalize broker``, a process of its
own, stores it.

A module of its own (with its own Rasa), so that the conversations module keeps its
order: its last test stops its action server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

import aio_pika
import pytest

from rasa_personalize.demo.assistant import RasaSetup, RunningAssistant
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.events.broker import dead_letter_queue
from rasa_personalize.identity import customer_key
from rasa_personalize.store.migrate import upgrade

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

PROJECT = Path(__file__).resolve().parents[2]
SECRET = "e2e-broker-secret-0123456789"
CUSTOMER = "broker-e2e-customer"


class BrokeredAssistant(RunningAssistant):
    """The demo assistant whose Rasa also publishes its events to a RabbitMQ queue."""

    def __init__(
        self,
        setup: RasaSetup,
        *,
        amqp_url: str,
        queue: str,
        database_url: str,
        log_dir: Path,
        extra_env: dict[str, str],
    ) -> None:
        super().__init__(setup, database_url=database_url, log_dir=log_dir, extra_env=extra_env)
        self.queue = queue
        # Rasa's default exchange is a fanout shared by every Rasa on this RabbitMQ: one
        # of this run's own keeps other assistants' conversations out of the queue.
        self.exchange = f"{queue}_exchange"
        parsed = urlsplit(amqp_url)
        # Rasa's pika broker takes its connection as separate keys (endpoints.yml).
        self._broker_section = (
            "event_broker:\n"
            "  type: pika\n"
            f"  url: {parsed.hostname or '127.0.0.1'}\n"
            f"  port: {parsed.port or 5672}\n"
            f"  username: {unquote(parsed.username or 'guest')}\n"
            f"  password: {unquote(parsed.password or 'guest')}\n"
            f"  exchange_name: {self.exchange}\n"
            "  queues:\n"
            f"    - {queue}\n"
        )

    def start(self) -> BrokeredAssistant:
        """As the demo starts, with the event broker added to Rasa's endpoints file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._endpoints.write_text(
            "action_endpoint:\n"
            f'  url: "http://127.0.0.1:{self.action_port}/webhook"\n'
            "  token: ${PERSONALIZE_WEBHOOK_TOKEN}\n" + self._broker_section,
            encoding="utf-8",
        )
        self.action_server.start(timeout_s=60)
        try:
            self.rasa.start(timeout_s=300)
        except PersonalizeError:
            self.action_server.stop()
            raise
        return self


@pytest.fixture(scope="module")
def rabbitmq() -> str:
    """The RabbitMQ Rasa publishes to (module-scoped: Rasa starts once)."""
    url = os.environ.get("PERSONALIZE_TEST_AMQP_URL")
    if not url:
        pytest.skip("PERSONALIZE_TEST_AMQP_URL is not set: RabbitMQ suites skipped")
    return url


@pytest.fixture(scope="module")
def assistant(
    rabbitmq: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokeredAssistant]:
    """Rasa (publishing to a queue of this run's own) and the action server."""
    setup = RasaSetup.find(PROJECT)
    if setup is None:
        reason = "no Rasa environment or trained model: run `make rasa-train`"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the e2e suite, but there is {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("e2e-broker")
    url = f"sqlite:///{folder / 'shop.db'}"
    upgrade(url)
    running = BrokeredAssistant(
        setup,
        amqp_url=rabbitmq,
        queue=f"e2e_rasa_events_{uuid.uuid4().hex[:10]}",
        database_url=url,
        log_dir=folder,
        extra_env={"PERSONALIZE_SECRET_KEY": SECRET},
    )
    try:
        with running:
            yield running
    finally:
        asyncio.run(delete_queues(rabbitmq, running))


async def delete_queues(url: str, assistant: BrokeredAssistant) -> None:
    """Remove this run's exchange, queue and dead letters from the shared RabbitMQ."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for name in (assistant.queue, dead_letter_queue(assistant.queue)):
            await channel.queue_delete(name)
        await channel.exchange_delete(assistant.exchange)


class BrokerProcess:
    """``personalize broker`` as a real process, stopped with SIGTERM like a service."""

    def __init__(self, assistant: BrokeredAssistant, amqp_url: str) -> None:
        env = {
            **os.environ,
            "PERSONALIZE_DATABASE_URL": assistant.database_url,
            "PERSONALIZE_SECRET_KEY": SECRET,
            "PERSONALIZE_IDENTITY_SECRET": assistant.identity_secret,
            "PERSONALIZE_BROKER_URL": amqp_url,
        }
        self.log_path = assistant.log_dir / "broker.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115  # closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rasa_personalize.cli", "broker", "--queue", assistant.queue],
            env=env,
            cwd=assistant.log_dir,  # no tags.yml there: the demo's tag rules stay out
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> str:
        """SIGTERM, wait for the clean exit, and return what it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._log.close()
        output = self.log_path.read_text(encoding="utf-8", errors="replace")
        assert code == 0, output
        return output


def chat_interactions(database_url: str, external_id: str) -> list[tuple[str, str | None]]:
    """(kind, category) of the customer's interactions from the broker, oldest first."""
    path = database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT i.kind, i.category FROM interactions i JOIN customers c"
            " ON c.id = i.customer_id WHERE c.customer_key = ?"
            " AND i.kind IN ('chat_message', 'session_start', 'session_end')"
            " ORDER BY i.occurred_at, i.id",
            (customer_key(SECRET, external_id),),
        ).fetchall()


def test_a_verified_conversation_arrives_in_the_store(
    assistant: BrokeredAssistant, rabbitmq: str
) -> None:
    """Two messages of a signed-in customer: a session start and two chat messages with
    their intents, stored by the broker consumer under the customer, not the sender."""
    consumer = BrokerProcess(assistant, rabbitmq)
    try:
        sender = f"e2e-{uuid.uuid4().hex[:12]}"
        assert assistant.say(sender, "hello", user_id=CUSTOMER)
        assert assistant.say(sender, "do you have any offers for me?", user_id=CUSTOMER)
        expected = 3  # session_start and two chat_message rows
        deadline = time.monotonic() + 60
        stored = chat_interactions(assistant.database_url, CUSTOMER)
        while len(stored) < expected and time.monotonic() < deadline:
            assert consumer.process.poll() is None, consumer.log_path.read_text()
            time.sleep(0.2)
            stored = chat_interactions(assistant.database_url, CUSTOMER)
    finally:
        output = consumer.stop()
    assert stored == [
        ("session_start", None),
        ("chat_message", "greet"),
        ("chat_message", "ask_offers"),
    ], output
    assert chat_interactions(assistant.database_url, sender) == []
    assert "Broker consumer stopped: " in output
