"""Rasa's event broker as a source: parsing, identity, consent, idempotency and session
lengths on the store, and the consumer loop against a real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.events import broker as broker_module
from rasa_personalize.events.broker import (
    REASON_HEADER,
    BrokerConsumer,
    BrokerError,
    BrokerIngestion,
    ConsumerOptions,
    Conversation,
    MalformedEventError,
    OpenSession,
    RasaEvent,
    SessionBook,
    dead_letter_queue,
    parse_rasa_event,
)
from rasa_personalize.events.validation import validate_event
from rasa_personalize.identity import customer_key, sign_user_id
from rasa_personalize.segments.tag_rules import parse_tag_rules
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.errors import DatabaseError, is_outage
from rasa_personalize.store.models import Customer, ErasureTombstone, Interaction
from rasa_personalize.store.repository import load_customer_snapshot
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW

IDENTITY_SECRET = "identity-secret-0123456789"
# Rasa's timestamps are epoch seconds; the conversations happen an hour before NOW.
T0 = (NOW - timedelta(hours=1)).timestamp()


def rasa(event: str, sender: str = "conv-1", at: float = 0.0, **fields: Any) -> bytes:
    """One message as Rasa's pika broker publishes it: the event ``at`` seconds after T0."""
    body: dict[str, Any] = {"sender_id": sender, "event": event, "timestamp": T0 + at}
    body.update(fields)
    return json.dumps(body).encode()


def signed(user_id: str) -> dict[str, str]:
    return {"user_id": user_id, "user_hash": sign_user_id(IDENTITY_SECRET, user_id)}


def user(
    text: str = "hi",
    *,
    sender: str = "conv-1",
    at: float = 0.0,
    intent: str = "greet",
    metadata: dict[str, Any] | None = None,
) -> bytes:
    """A user message with its intent, sent through Rasa's REST channel."""
    return rasa(
        "user",
        sender,
        at,
        text=text,
        parse_data={"intent": {"name": intent, "confidence": 0.98}, "entities": []},
        input_channel="rest",
        message_id=f"m-{at}",
        metadata={"model_id": "abc", **(metadata or {})},
    )


def session_opening(sender: str = "conv-1", at: float = 0.0, **metadata: Any) -> list[bytes]:
    """What Rasa publishes when a message opens a session: the metadata slot, the action,
    the session start and action_listen."""
    return [
        rasa("slot", sender, at, name="session_started_metadata", value=metadata),
        rasa("action", sender, at, name="action_session_start"),
        rasa("session_started", sender, at, metadata={"model_id": "abc"}),
        rasa("action", sender, at, name="action_listen"),
    ]


def bot(text: str = "Hello!", sender: str = "conv-1", at: float = 0.0) -> bytes:
    return rasa("bot", sender, at, text=text, data={})


def ingestion(store: SqlStore, **overrides: Any) -> BrokerIngestion:
    values: dict[str, Any] = {
        "secret_key": TEST_SECRET,
        "identity_secret": IDENTITY_SECRET,
        "clock": lambda: NOW,
    }
    values.update(overrides)
    return BrokerIngestion(store.sessions, **values)


async def rows(store: SqlStore) -> list[tuple[str, str, str | None, float | None, int]]:
    """(customer key, kind, category, value, quantity) of every interaction, in order."""
    async with store.sessions() as session:
        result = await session.execute(
            select(
                Customer.customer_key,
                Interaction.kind,
                Interaction.category,
                Interaction.value,
                Interaction.quantity,
            )
            .join(Customer, Customer.id == Interaction.customer_id)
            .order_by(Interaction.occurred_at, Interaction.kind)
        )
        return [tuple(row) for row in result.all()]


def key(external_id: str) -> str:
    return customer_key(TEST_SECRET, external_id)


# --- parsing ----------------------------------------------------------------------------


def test_a_user_message_is_read_with_intent_channel_and_metadata() -> None:
    """The fields the consumer needs come out of Rasa's user event."""
    event = parse_rasa_event(user("hello", at=5.0, intent="greet", metadata={"device": "ios"}))
    assert event == RasaEvent(
        sender_id="conv-1",
        type="user",
        timestamp=T0 + 5.0,
        metadata={"model_id": "abc", "device": "ios"},
        message_id="m-5.0",
        input_channel="rest",
        intent="greet",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff not json", "not JSON"),
        (b"[1, 2]", "a JSON list, not an object"),
        (b'{"sender_id": "a", "timestamp": 1.0}', "'event' is missing or not text"),
        (b'{"event": "user", "timestamp": 1.0}', "'sender_id' is missing or not text"),
        (b'{"event": "user", "sender_id": " ", "timestamp": 1.0}', "'sender_id' is missing"),
        # A timestamp that is text or a boolean is no time Rasa wrote.
        (b'{"event": "user", "sender_id": "a", "timestamp": "now"}', "'timestamp' is missing"),
        (b'{"event": "user", "sender_id": "a", "timestamp": true}', "'timestamp' is missing"),
        (b'{"event": "user", "sender_id": "a", "timestamp": 1e300}', "'timestamp' is out of"),
        (
            b'{"event": "user", "sender_id": "a", "timestamp": 1.0, "metadata": "x"}',
            "'metadata' is not an object",
        ),
        (b"{" + b" " * (1024 * 1024) + b"}", "larger than 1048576 bytes"),
    ],
)
def test_malformed_messages_are_refused_with_a_reason(body: bytes, reason: str) -> None:
    """Each reason names the problem, never a value from the message."""
    with pytest.raises(MalformedEventError) as caught:
        parse_rasa_event(body)
    assert str(caught.value).startswith(reason)


@pytest.mark.parametrize(
    "intent",
    [
        "x" * 65,  # longer than the store's category column
        "greet\nforged log line",
        "",
    ],
)
def test_implausible_intent_names_are_left_out(intent: str) -> None:
    """The message still counts; only its intent is not kept."""
    assert parse_rasa_event(user(intent=intent)).intent is None


def test_only_bounded_identity_and_context_fields_of_the_session_metadata_are_kept() -> None:
    """The slot's value is kept per conversation: other fields and huge values are not."""
    value = {"user_id": "cust-7", "cart": ["a"] * 100, "location": "x" * 10_000, "device": "ios"}
    event = parse_rasa_event(rasa("slot", name="session_started_metadata", value=value))
    assert event.session_metadata == {"user_id": "cust-7", "device": "ios"}


def test_event_ids_are_stable_per_message_and_hide_the_sender() -> None:
    """The same message always has the same id; another time or sender, another id."""
    first = parse_rasa_event(user(sender="alice@example.com", at=1.0)).event_id()
    assert parse_rasa_event(user(sender="alice@example.com", at=1.0)).event_id() == first
    assert parse_rasa_event(user(sender="alice@example.com", at=2.0)).event_id() != first
    assert parse_rasa_event(user(sender="bob@example.com", at=1.0)).event_id() != first
    assert "alice" not in first
    assert first.startswith("rasa-msg-")


# --- storing ----------------------------------------------------------------------------


async def test_a_verified_conversation_becomes_a_session_start_and_chat_messages(
    sqlite_store: SqlStore,
) -> None:
    """Session start and each user message are stored for the verified customer; the
    bot's utterances and the actions are read and skipped."""
    batch = [
        *session_opening(**signed("cust-7")),
        user("hi", at=1.0, metadata=signed("cust-7")),
        bot(at=1.5),
        user("any offers?", at=20.0, intent="ask_offers", metadata=signed("cust-7")),
    ]
    outcome = await ingestion(sqlite_store).handle(batch)
    assert (outcome.stored, outcome.ignored, outcome.dead_letters) == (3, 4, ())
    assert await rows(sqlite_store) == [
        (key("cust-7"), "session_start", None, None, 1),
        (key("cust-7"), "chat_message", "greet", None, 1),
        (key("cust-7"), "chat_message", "ask_offers", None, 1),
    ]
    assert outcome.changed_keys == {key("cust-7")}


async def test_metrics_and_tags_are_refreshed_as_on_the_events_api(
    sqlite_store: SqlStore,
) -> None:
    """The customer's metrics count the chat, and a tag rule on chat messages holds."""
    rules = parse_tag_rules(
        "tags:\n  - tag: chatty\n    when:\n      count: {kind: chat_message, at_least: 2}\n"
    )
    batch = [user(at=1.0, metadata=signed("cust-7")), user(at=2.0, metadata=signed("cust-7"))]
    await ingestion(sqlite_store, tag_rules=rules).handle(batch)
    async with sqlite_store.sessions() as session:
        snapshot = await load_customer_snapshot(session, key("cust-7"))
    assert snapshot is not None
    assert snapshot.metrics.interaction_count == 2
    assert [tag.tag for tag in snapshot.tags] == ["chatty"]


async def test_a_redelivered_batch_stores_and_counts_nothing_twice(store: SqlStore) -> None:
    """Rasa's messages come again after a lost acknowledgement: no second row, and the
    session's length counts each message once."""
    consumer = ingestion(store)
    batch = [*session_opening(**signed("cust-7")), user(at=1.0, metadata=signed("cust-7"))]
    first = await consumer.handle(batch)
    again = await consumer.handle(batch)
    assert (first.stored, first.already_stored) == (2, 0)
    assert (again.stored, again.already_stored) == (0, 2)
    closing = await consumer.handle(session_opening(at=600.0))
    assert closing.sessions_ended == 1
    ends = [row for row in await rows(store) if row[1] == "session_end"]
    assert ends == [(key("cust-7"), "session_end", None, 1.0, 1)]


async def test_the_same_message_twice_in_one_batch_is_stored_once(
    sqlite_store: SqlStore,
) -> None:
    """A redelivery can land in the batch that holds the first delivery."""
    message = user(at=1.0, metadata=signed("cust-7"))
    outcome = await ingestion(sqlite_store).handle([message, message])
    assert (outcome.stored, outcome.already_stored) == (1, 1)
    assert len(await rows(sqlite_store)) == 1


async def test_an_unverified_claim_is_never_written_for(sqlite_store: SqlStore) -> None:
    """A user_id with a forged hash is an anonymous visitor, keyed by the conversation."""
    forged = {"user_id": "cust-7", "user_hash": "0" * 64}
    await ingestion(sqlite_store).handle([user(sender="conv-9", metadata=forged)])
    assert [row[0] for row in await rows(sqlite_store)] == [key("conv-9")]
    async with sqlite_store.sessions() as session:
        claimed = await session.scalar(
            select(Customer.id).where(Customer.customer_key == key("cust-7"))
        )
    assert claimed is None


async def test_the_session_metadata_names_the_customer_of_a_bare_message(
    sqlite_store: SqlStore,
) -> None:
    """As in the actions: a message without a user_id falls back on the metadata that
    opened the session (Rasa's session_started_metadata slot)."""
    batch = [*session_opening(**signed("cust-7")), user(at=1.0)]
    await ingestion(sqlite_store).handle(batch)
    assert {row[0] for row in await rows(sqlite_store)} == {key("cust-7")}


async def test_without_tracking_consent_nothing_is_stored(sqlite_store: SqlStore) -> None:
    """A customer who said no, and (opt-in) one who never answered, are suppressed."""
    async with sqlite_store.sessions.begin() as session:
        await set_consent(
            session, key("denier"), {"tracking": False},
            source="api", policy_version=None, now=NOW - timedelta(days=1),
        )  # fmt: skip
    denied = await ingestion(sqlite_store).handle(
        [*session_opening(**signed("denier")), user(at=1.0, metadata=signed("denier"))]
    )
    silent = await ingestion(sqlite_store, consent_default="denied").handle(
        [user(sender="conv-2", at=1.0, metadata=signed("silent"))]
    )
    assert (denied.stored, denied.suppressed) == (0, 2)
    assert (silent.stored, silent.suppressed) == (0, 1)
    assert await rows(sqlite_store) == []


async def test_late_events_of_an_erased_customer_are_suppressed(sqlite_store: SqlStore) -> None:
    """Messages from before an erasure, read after it, do not bring the customer back."""
    async with sqlite_store.sessions.begin() as session:
        await session.execute(
            insert(ErasureTombstone).values(customer_key=key("gone"), erased_at=NOW)
        )
    outcome = await ingestion(sqlite_store).handle([user(at=1.0, metadata=signed("gone"))])
    assert (outcome.stored, outcome.suppressed) == (0, 1)
    assert await rows(sqlite_store) == []


async def test_malformed_and_invalid_messages_go_to_the_dead_letters(
    sqlite_store: SqlStore,
) -> None:
    """Each bad message is named by position with its reason; the others are stored."""
    batch = [
        b"not json",
        user(at=1.0, metadata=signed("cust-7")),
        user(at=7200.0, metadata=signed("cust-7")),  # an hour after NOW: a clock ahead
    ]
    outcome = await ingestion(sqlite_store).handle(batch)
    assert outcome.stored == 1
    assert [index for index, _ in outcome.dead_letters] == [0, 2]
    assert outcome.dead_letters[0][1] == "not JSON"
    assert outcome.dead_letters[1][1].startswith("timestamp: ")
    assert outcome.dead_letters[1][1].endswith("is in the future")


async def test_a_message_the_store_refuses_alone_goes_to_the_dead_letters(
    sqlite_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store answers but refuses one message: the batch is stored message by message
    and only that one is dead-lettered."""
    refused = parse_rasa_event(user(at=2.0)).event_id()
    real = broker_module.store_events

    async def store_refusing(session: Any, events: Sequence[Any], **options: Any) -> Any:
        if any(event.event_id == refused for event in events):
            raise IntegrityError("INSERT", {}, Exception("refused"))
        return await real(session, events, **options)

    monkeypatch.setattr(broker_module, "store_events", store_refusing)
    batch = [user(at=1.0), user(at=2.0), user(at=3.0)]
    outcome = await ingestion(sqlite_store).handle(batch)
    assert outcome.stored == 2
    assert outcome.dead_letters == ((1, "refused by the store (IntegrityError)"),)


class UnreachableStore:
    """A session factory whose store is down: every transaction fails to connect."""

    def begin(self) -> Any:
        raise OperationalError("connect", {}, ConnectionRefusedError("refused"))


async def test_a_store_outage_stores_nothing_and_changes_no_session() -> None:
    """The batch is to be retried as a whole: nothing it holds is remembered yet."""
    consumer = BrokerIngestion(UnreachableStore(), secret_key=TEST_SECRET)
    with pytest.raises(DatabaseError) as caught:
        await consumer.handle(session_opening(**signed("cust-7")))
    assert is_outage(caught.value)
    assert len(consumer.book) == 0


# --- session lengths --------------------------------------------------------------------


async def test_the_next_session_records_the_length_of_the_last(sqlite_store: SqlStore) -> None:
    """Three messages in 90 seconds: quantity 3, value 90, at the last message's time."""
    consumer = ingestion(sqlite_store)
    await consumer.handle(
        [
            *session_opening(**signed("cust-7")),
            user(at=0.5, metadata=signed("cust-7")),
            user(at=30.0, metadata=signed("cust-7")),
        ]
    )
    outcome = await consumer.handle(
        [user(at=90.0, metadata=signed("cust-7")), *session_opening(at=3000.0)]
    )
    assert outcome.sessions_ended == 1
    ends = [row for row in await rows(sqlite_store) if row[1] == "session_end"]
    assert ends == [(key("cust-7"), "session_end", None, 90.0, 3)]
    async with sqlite_store.sessions() as session:
        end_time = await session.scalar(
            select(Interaction.occurred_at).where(Interaction.kind == "session_end")
        )
    assert end_time is not None
    assert end_time.timestamp() == pytest.approx(T0 + 90.0)


async def test_a_quiet_conversation_ends_its_session_after_the_expiration(
    sqlite_store: SqlStore,
) -> None:
    """Not seen for the expiration time (by the consumer's clock): the length is recorded
    once and the conversation forgotten."""
    now = [NOW - timedelta(minutes=55)]  # five minutes after the conversation
    expiration = timedelta(minutes=30)
    consumer = ingestion(sqlite_store, clock=lambda: now[0], session_expiration=expiration)
    await consumer.handle(
        [*session_opening(**signed("cust-7")), user(at=10.0, metadata=signed("cust-7"))]
    )
    assert (await consumer.close_idle_sessions()).sessions_ended == 0
    now[0] = NOW
    await consumer.handle([user(sender="conv-2", at=3000.0)])  # ten minutes before NOW
    first = await consumer.close_idle_sessions()
    again = await consumer.close_idle_sessions()
    assert (first.sessions_ended, again.sessions_ended) == (1, 0)
    assert len(consumer.book) == 1  # the recent conversation is still followed
    ends = [row for row in await rows(sqlite_store) if row[1] == "session_end"]
    assert ends == [(key("cust-7"), "session_end", None, 10.0, 1)]


async def test_a_session_whose_start_was_stored_before_gets_no_length(
    sqlite_store: SqlStore,
) -> None:
    """A new consumer cannot know how a session it did not see begin went on: no guess."""
    await ingestion(sqlite_store).handle(session_opening(**signed("cust-7")))
    restarted = ingestion(sqlite_store)
    await restarted.handle(session_opening(**signed("cust-7")))  # redelivered after restart
    await restarted.handle([user(at=1.0, metadata=signed("cust-7")), *session_opening(at=900.0)])
    kinds = [row[1] for row in await rows(sqlite_store)]
    assert kinds == ["session_start", "chat_message", "session_start"]


def test_past_the_cap_the_quietest_conversations_are_forgotten() -> None:
    """Memory is bounded: the least recently seen go first, and lost lengths are counted."""
    book = SessionBook(timedelta(minutes=60), max_conversations=2)
    raw = {"event_id": "s-1", "customer": "c", "kind": "session_start", "timestamp": T0}
    start = validate_event(raw, secret_key=TEST_SECRET, now=NOW)
    book.apply({"a": Conversation(NOW, session=OpenSession(start, start.occurred_at))})
    book.apply({"b": Conversation(NOW)})
    book.apply({"c": Conversation(NOW)})
    assert (book.get("a"), len(book), book.forgotten_sessions) == (None, 2, 1)


# --- the command line -------------------------------------------------------------------

runner = CliRunner()


@pytest.mark.parametrize(
    ("arguments", "environment", "code", "message"),
    [
        # The public development key would key customers anyone can recompute.
        (["--url", "amqp://h/"], {}, 2, "PERSONALIZE_SECRET_KEY is not set"),
        ([], {"PERSONALIZE_SECRET_KEY": TEST_SECRET}, 2, "no RabbitMQ to read: give --url"),
        (
            ["--url", "http://user:hunter2@rabbit/"],
            {"PERSONALIZE_SECRET_KEY": TEST_SECRET},
            2,
            "--url must start with amqp:// or amqps://",
        ),
        # An invalid setting fails as every command's settings do.
        (
            [],
            {"PERSONALIZE_SECRET_KEY": TEST_SECRET, "PERSONALIZE_BROKER_URL": "redis://x:pw@h"},
            1,
            "PERSONALIZE_BROKER_URL: Value error, must start with amqp:// or amqps://",
        ),
    ],
)
def test_the_command_refuses_what_it_cannot_run_with(
    arguments: list[str],
    environment: dict[str, str],
    code: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    """One line that says what to do, and never a password from a URL."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["broker", *arguments])
    assert result.exit_code == code
    assert message in result.output
    assert "hunter2" not in result.output
    assert "pw@" not in result.output


# --- the consumer on RabbitMQ -----------------------------------------------------------


class Killed(Exception):
    """The process died between the commit and the acknowledgement."""


class DiesBeforeAcknowledging(BrokerConsumer):
    async def _acknowledge(self, batch: Sequence[Any]) -> None:
        raise Killed


@pytest.fixture
async def queue(rabbitmq_url: str) -> AsyncIterator[str]:
    """A queue of this test's own (and its dead letters), deleted afterwards."""
    name = f"test_rasa_events_{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        for each in (name, dead_letter_queue(name)):
            await channel.queue_delete(each)


async def publish(url: str, queue: str, bodies: Sequence[bytes]) -> None:
    """Publish as Rasa does: persistent JSON messages into the (durable) queue."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        for body in bodies:
            await channel.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue,
            )


async def waiting(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The messages still in ``queue``, taken off it."""
    connection = await aio_pika.connect(url)
    taken = []
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, durable=True)
        while (message := await declared.get(fail=False)) is not None:
            await message.ack()
            taken.append(message)
    return taken


async def run_until(consumer: BrokerConsumer, done: Callable[[], bool]) -> None:
    """Run ``consumer`` until ``done()`` holds (30 s at most), then stop it cleanly."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    deadline = asyncio.get_running_loop().time() + 30
    try:
        while not done() and not task.done():
            assert asyncio.get_running_loop().time() < deadline, consumer.stats
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task


@pytest.mark.rabbitmq
async def test_the_consumer_stores_a_conversation_and_empties_the_queue(
    sqlite_store: SqlStore, rabbitmq_url: str, queue: str
) -> None:
    """Published by Rasa, stored, acknowledged: nothing is left in the queue."""
    bodies = [*session_opening(**signed("cust-7")), user(at=1.0, metadata=signed("cust-7"))]
    await publish(rabbitmq_url, queue, bodies)
    consumer = BrokerConsumer(rabbitmq_url, queue, ingestion(sqlite_store))
    await run_until(consumer, lambda: consumer.stats.messages >= len(bodies))
    assert (consumer.stats.stored, consumer.stats.ignored) == (2, 3)
    assert [row[1] for row in await rows(sqlite_store)] == ["session_start", "chat_message"]
    assert await waiting(rabbitmq_url, queue) == []


@pytest.mark.rabbitmq
async def test_a_consumer_killed_before_acknowledging_causes_no_duplicate(
    sqlite_store: SqlStore, rabbitmq_url: str, queue: str
) -> None:
    """Stored, then killed before the ack: RabbitMQ hands the messages out again, and the
    next consumer finds them stored."""
    bodies = [user(at=float(n), metadata=signed("cust-7")) for n in range(1, 6)]
    await publish(rabbitmq_url, queue, bodies)
    dying = DiesBeforeAcknowledging(rabbitmq_url, queue, ingestion(sqlite_store))
    with pytest.raises(Killed):
        await dying.run(asyncio.Event())
    committed = dying.stats.stored  # its first batch: one to five messages
    assert committed >= 1
    survivor = BrokerConsumer(rabbitmq_url, queue, ingestion(sqlite_store))
    await run_until(survivor, lambda: survivor.stats.messages >= len(bodies))
    assert survivor.stats.already_stored == committed
    assert survivor.stats.stored == len(bodies) - committed
    assert len(await rows(sqlite_store)) == len(bodies)
    assert await waiting(rabbitmq_url, queue) == []


@pytest.mark.rabbitmq
async def test_a_malformed_message_is_dead_lettered_and_the_consumer_goes_on(
    sqlite_store: SqlStore, rabbitmq_url: str, queue: str
) -> None:
    """The message is kept as it came, with the reason in a header; the next is stored."""
    bodies = [b"{broken", user(at=1.0, metadata=signed("cust-7"))]
    await publish(rabbitmq_url, queue, bodies)
    consumer = BrokerConsumer(
        rabbitmq_url, queue, ingestion(sqlite_store), options=ConsumerOptions(prefetch=1)
    )
    await run_until(consumer, lambda: consumer.stats.messages >= len(bodies))
    assert (consumer.stats.dead_letters, consumer.stats.stored) == (1, 1)
    dead = await waiting(rabbitmq_url, dead_letter_queue(queue))
    assert [(m.body, m.headers[REASON_HEADER]) for m in dead] == [(b"{broken", "not JSON")]
    assert await waiting(rabbitmq_url, queue) == []


@pytest.mark.rabbitmq
async def test_a_refused_login_stops_the_consumer_with_a_clear_error(
    sqlite_store: SqlStore, rabbitmq_url: str, queue: str
) -> None:
    """Retrying a wrong password forever would only hide it: the error names what to check."""
    parsed = urlsplit(rabbitmq_url)
    wrong = parsed._replace(netloc=f"guest:wrong-password@{parsed.hostname}:{parsed.port or 5672}")
    consumer = BrokerConsumer(urlunsplit(wrong), queue, ingestion(sqlite_store))
    with pytest.raises(BrokerError) as caught:
        await consumer.run(asyncio.Event())
    assert "refused the login" in str(caught.value)
    assert "wrong-password" not in str(caught.value)
