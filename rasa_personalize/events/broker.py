"""``personalize broker``: the events Rasa publishes to RabbitMQ, turned into interactions.

Rasa's ``pika`` event broker publishes every event of every conversation as one JSON
message: ``{"sender_id": ..., "event": ..., "timestamp": ..., "metadata": ...}`` plus the
event's own fields (``parse_data`` and ``input_channel`` for a user message, ``name`` and
``value`` for a slot). The consumer reads them from Rasa's queue and stores what says
something about the customer, so chat activity counts even when no custom action runs:

- a user message -> ``chat_message`` (its intent's name in ``category``, its channel,
  device and location read from the message metadata as the actions read them);
- ``session_started`` -> ``session_start``;
- a session that is over -> ``session_end``: ``quantity`` is the customer's messages in
  it and ``value`` the seconds from its start to its last message, at the time of that
  last message. A session is over when the same conversation starts another one, or when
  nothing of it has been seen for the session expiration time (Rasa's
  ``session_expiration_time``, 60 minutes by default) by this consumer's clock. Lengths
  are followed in this process's memory: sessions open when it stops, sessions whose
  start was stored by an earlier run, and messages another consumer of the same queue
  took are not counted. Starts and messages are exact in every case.

Bot utterances, actions run and the other events are read and acknowledged, and stored
as nothing. The customer is resolved exactly as the actions resolve it
(:func:`~rasa_personalize.identity.resolve_customer`): a verified ``user_id`` with its
``user_hash`` under ``PERSONALIZE_IDENTITY_SECRET``, else the conversation as an
anonymous visitor, so an unproven claim is never written for. The metadata of the
message that opened the session (Rasa's ``session_started_metadata`` slot, published
before the session starts) is remembered per conversation, as the slot is.

Storing goes through :mod:`rasa_personalize.events.ingest` and its validation, with
tracking consent and erasure tombstones checked in the write's transaction (suppressed
events are acknowledged, never stored) and metrics and rule tags refreshed as for the
events API. Each event gets an id made from its sender, type, timestamp and message id,
so a redelivered message stores nothing twice. A batch is acknowledged only after its
transaction committed. A message that is no Rasa event, or whose interaction fails
validation, goes to ``<queue>.dead_letters`` with the reason in a header; a store that
is down is waited for, and RabbitMQ is reconnected to (aio-pika's robust connection).

What became of each event is counted in ``personalize_events_total{stage="broker"}``
(accepted, duplicate, rejected: dead-lettered, suppressed), each message acknowledged in
``personalize_broker_messages_total`` by result, and each batch timed
(:mod:`rasa_personalize.metrics`); ``personalize broker --metrics-port`` serves them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import orjson

from rasa_personalize.clock import utc_now
from rasa_personalize.context import context_from_metadata
from rasa_personalize.errors import InvalidInputError, MissingExtraError, PersonalizeError
from rasa_personalize.events.ingest import StoredEvents, adopt_event_customers, store_events
from rasa_personalize.events.validation import ValidEvent, validate_batch
from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH, resolve_customer
from rasa_personalize.metrics import (
    broker_conversations,
    count_broker_messages,
    count_events,
    observe_broker_batch,
)
from rasa_personalize.privacy.consent import ConsentDefault
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.store.errors import DatabaseError, is_outage
from rasa_personalize.store.types import Session, SessionFactory
from rasa_personalize.text import has_control_characters

try:
    import aio_pika
    from aio_pika.abc import (
        AbstractChannel,
        AbstractIncomingMessage,
        AbstractQueue,
        AbstractRobustConnection,
    )
    from aio_pika.exceptions import (
        CONNECTION_EXCEPTIONS,
        AuthenticationError,
        ChannelPreconditionFailed,
        ProbableAuthenticationError,
    )
except ImportError as missing:  # only this command reads RabbitMQ: say which extra
    raise MissingExtraError("personalize broker", "broker") from missing

logger = logging.getLogger(__name__)

DEAD_LETTER_SUFFIX: Final = ".dead_letters"
REASON_HEADER: Final = "x-personalize-reason"
SESSION_METADATA_SLOT: Final = "session_started_metadata"
# Rasa's default session_config.session_expiration_time.
DEFAULT_SESSION_EXPIRATION: Final = timedelta(minutes=60)
# Conversations followed at once; past it the quietest are forgotten (and their lengths).
MAX_CONVERSATIONS: Final = 100_000
# An event is a few kilobytes; a message this large is no Rasa event.
MAX_MESSAGE_BYTES: Final = 1024 * 1024
MAX_INTENT_LENGTH: Final = 64
# The metadata keys identity and context read: nothing else of it is remembered.
REMEMBERED_METADATA: Final = frozenset(
    {"user_id", "user_hash", "channel", "device", "timezone", "utc_offset_minutes", "location"}
)
MAX_BACKOFF_S: Final = 30.0
IDLE_WAIT_S: Final = 1.0

OnStored = Callable[[frozenset[str]], Awaitable[None]]


class BrokerError(PersonalizeError):
    """RabbitMQ refused what the consumer needs (a login, a queue); not worth retrying."""


class MalformedEventError(InvalidInputError):
    """A broker message is no Rasa event; the reason names fields, never their values."""


@dataclass(frozen=True)
class RasaEvent:
    """The fields of one Rasa event that the consumer reads."""

    sender_id: str
    type: str
    timestamp: float
    metadata: Mapping[str, Any] | None = None
    message_id: str | None = None
    input_channel: str | None = None
    intent: str | None = None
    # A slot event's slot; for session_started_metadata, what identity and context read
    # of its value (the metadata of the message that opened the session).
    slot: str | None = None
    session_metadata: Mapping[str, Any] | None = None

    @property
    def conversation(self) -> str:
        """The conversation's key in memory (a digest: sender ids may be personal)."""
        return hashlib.sha256(self.sender_id.encode()).hexdigest()[:32]

    def event_id(self) -> str:
        """Stable across redeliveries (the same message has the same fields), hashed
        because the sender id may be personal."""
        prefix = "rasa-msg" if self.type == "user" else "rasa-session"
        source = f"{self.type}\x1f{self.sender_id}\x1f{self.timestamp!r}\x1f{self.message_id or ''}"
        return f"{prefix}-{hashlib.sha256(source.encode()).hexdigest()[:32]}"


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _intent_name(parse_data: Any) -> str | None:
    """The intent's name if it is a plausible one (a name, not free text), else None."""
    intent = parse_data.get("intent") if isinstance(parse_data, Mapping) else None
    name = intent.get("name") if isinstance(intent, Mapping) else None
    if not isinstance(name, str):
        return None
    name = name.strip()
    if not name or len(name) > MAX_INTENT_LENGTH or has_control_characters(name):
        return None
    return name


def _remembered(metadata: Any) -> Mapping[str, Any] | None:
    """What identity and context read of a metadata object, each value bounded: it is
    kept per conversation, so megabytes of text must not be."""
    if not isinstance(metadata, Mapping):
        return None
    kept = {
        key: value
        for key, value in metadata.items()
        if key in REMEMBERED_METADATA
        and (
            (isinstance(value, str) and len(value) <= MAX_EXTERNAL_ID_LENGTH)
            or (isinstance(value, int) and not isinstance(value, bool))
        )
    }
    return kept or None


def parse_rasa_event(body: bytes) -> RasaEvent:
    """Read one broker message.

    Raises:
        MalformedEventError: not a JSON object with a ``sender_id``, an ``event`` type and
            a numeric ``timestamp`` (or ``metadata`` that is not an object).
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise MalformedEventError(f"larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedEventError("not JSON") from None
    if not isinstance(document, dict):
        raise MalformedEventError(f"a JSON {type(document).__name__}, not an object")
    kind = document.get("event")
    if not isinstance(kind, str) or not kind.strip():
        raise MalformedEventError("'event' is missing or not text")
    sender_id = document.get("sender_id")
    if not isinstance(sender_id, str) or not sender_id.strip():
        raise MalformedEventError("'sender_id' is missing or not text")
    timestamp = document.get("timestamp")
    if (
        isinstance(timestamp, bool)
        or not isinstance(timestamp, int | float)
        or not math.isfinite(timestamp)
    ):
        raise MalformedEventError("'timestamp' is missing or not a number of epoch seconds")
    try:
        datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise MalformedEventError("'timestamp' is out of range for epoch seconds") from None
    metadata = document.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise MalformedEventError("'metadata' is not an object")
    event = RasaEvent(sender_id, kind, float(timestamp), metadata)
    if kind == "user":
        return replace(
            event,
            message_id=_text_or_none(document.get("message_id")),
            input_channel=_text_or_none(document.get("input_channel")),
            intent=_intent_name(document.get("parse_data")),
        )
    if kind == "slot":
        slot = _text_or_none(document.get("name"))
        value = _remembered(document.get("value")) if slot == SESSION_METADATA_SLOT else None
        return replace(event, slot=slot, session_metadata=value)
    return event


@dataclass(frozen=True)
class OpenSession:
    """A session whose start was stored, followed until it is over."""

    start: ValidEvent
    last_message_at: datetime
    messages: int = 0

    def with_message(self, at: datetime) -> OpenSession:
        """This session with one more of the customer's messages, sent ``at``."""
        return replace(
            self, last_message_at=max(self.last_message_at, at), messages=self.messages + 1
        )

    def end(self) -> ValidEvent:
        """Its ``session_end`` interaction: the start's customer and context."""
        seconds = (self.last_message_at - self.start.occurred_at).total_seconds()
        return replace(
            self.start,
            event_id=f"{self.start.event_id}-end",
            kind="session_end",
            occurred_at=self.last_message_at,
            value=round(max(seconds, 0.0), 3),
            quantity=self.messages,
        )


@dataclass(frozen=True)
class Conversation:
    """What the consumer remembers of one conversation."""

    seen_at: datetime
    session_metadata: Mapping[str, Any] | None = None
    session: OpenSession | None = None


class SessionBook:
    """The conversations followed, least recently seen first, at most ``max_conversations``."""

    def __init__(self, expiration: timedelta, max_conversations: int = MAX_CONVERSATIONS) -> None:
        if expiration <= timedelta(0):
            raise ValueError("the session expiration must be positive")
        if max_conversations < 1:
            raise ValueError("max_conversations must be at least 1")
        self.expiration = expiration
        self.max_conversations = max_conversations
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()
        # Open sessions dropped at the cap: their lengths are never recorded.
        self.forgotten_sessions = 0

    def __len__(self) -> int:
        return len(self._conversations)

    def get(self, key: str) -> Conversation | None:
        """The conversation, if followed."""
        return self._conversations.get(key)

    def apply(self, changes: Mapping[str, Conversation | None]) -> None:
        """Take a committed batch's changes (None: no longer followed)."""
        for key, conversation in changes.items():
            if conversation is None:
                self._conversations.pop(key, None)
            else:
                self._conversations[key] = conversation
                self._conversations.move_to_end(key)
        while len(self._conversations) > self.max_conversations:
            _, dropped = self._conversations.popitem(last=False)
            if dropped.session is not None:
                self.forgotten_sessions += 1

    def idle(self, now: datetime) -> list[tuple[str, Conversation]]:
        """Conversations not seen for the expiration time: their sessions are over."""
        cutoff = now - self.expiration
        return [(key, c) for key, c in self._conversations.items() if c.seen_at < cutoff]


class _Changes:
    """A batch's view of the book: changes are kept apart until the batch commits."""

    def __init__(self, book: SessionBook) -> None:
        self.book = book
        self.changed: dict[str, Conversation | None] = {}

    def get(self, key: str) -> Conversation | None:
        if key in self.changed:
            return self.changed[key]
        return self.book.get(key)

    def put(self, key: str, conversation: Conversation) -> None:
        self.changed[key] = conversation


@dataclass(frozen=True)
class _Derived:
    """An interaction made from the delivery at ``index`` of a batch."""

    index: int
    conversation: str
    # For validation: holds the customer's external id, so it is never logged.
    raw: dict[str, Any]


@dataclass(frozen=True)
class BatchOutcome:
    """What became of a batch of broker messages (dead letters by position)."""

    stored: int = 0
    already_stored: int = 0
    suppressed: int = 0
    ignored: int = 0
    sessions_ended: int = 0
    dead_letters: tuple[tuple[int, str], ...] = ()
    changed_keys: frozenset[str] = frozenset()

    def merged(self, other: BatchOutcome, offset: int) -> BatchOutcome:
        """Both outcomes; ``other``'s positions moved by ``offset``."""
        return BatchOutcome(
            self.stored + other.stored,
            self.already_stored + other.already_stored,
            self.suppressed + other.suppressed,
            self.ignored + other.ignored,
            self.sessions_ended + other.sessions_ended,
            (*self.dead_letters, *((i + offset, r) for i, r in other.dead_letters)),
            self.changed_keys | other.changed_keys,
        )


class BrokerIngestion:
    """Stores batches of Rasa events as interactions: no RabbitMQ here, so it is tested
    on its own and the consumer only moves messages.

    Args:
        sessions: Session factory of the SQL store.
        secret_key: ``PERSONALIZE_SECRET_KEY``.
        identity_secret: ``PERSONALIZE_IDENTITY_SECRET``; None trusts metadata ids.
        consent_default: ``PERSONALIZE_CONSENT_DEFAULT``.
        previous_secret_keys: ``PERSONALIZE_PREVIOUS_SECRET_KEYS``.
        tag_rules: Re-applied to customers with new interactions.
        session_expiration: A conversation unseen this long has ended its session.
        clock: The time "now" (session expiry, metrics).
    """

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        secret_key: str,
        identity_secret: str | None = None,
        consent_default: ConsentDefault = "granted",
        previous_secret_keys: Sequence[str] = (),
        tag_rules: TagRules | None = None,
        session_expiration: timedelta = DEFAULT_SESSION_EXPIRATION,
        max_conversations: int = MAX_CONVERSATIONS,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.sessions = sessions
        self.secret_key = secret_key
        self.identity_secret = identity_secret
        self.consent_default: ConsentDefault = consent_default
        self.previous_secret_keys = tuple(previous_secret_keys)
        self.tag_rules = tag_rules
        self.book = SessionBook(session_expiration, max_conversations)
        self._clock = clock

    async def handle(self, bodies: Sequence[bytes]) -> BatchOutcome:
        """Store a batch of broker messages in one transaction.

        Returns:
            What was stored, and the positions of the messages for the dead letters
            with their reasons.

        Raises:
            DatabaseError: the store is unavailable (nothing was stored; retry later).
        """
        try:
            return await self._handle(bodies)
        except (DatabaseError, OSError) as error:
            if is_outage(error):
                raise
            if len(bodies) == 1:
                # This message's values are refused while the store answers otherwise.
                return BatchOutcome(
                    dead_letters=((0, f"refused by the store ({type(error).__name__})"),)
                )
        # One message the store refuses must not hold back the others: each on its own.
        outcome = BatchOutcome()
        for index, body in enumerate(bodies):
            outcome = outcome.merged(await self.handle([body]), index)
        return outcome

    async def _handle(self, bodies: Sequence[bytes]) -> BatchOutcome:
        now = self._clock()
        changes = _Changes(self.book)
        dead: dict[int, str] = {}
        derived: list[_Derived] = []
        ignored = 0
        for index, body in enumerate(bodies):
            try:
                event = parse_rasa_event(body)
            except MalformedEventError as error:
                dead[index] = str(error)
                continue
            made = self._derive(index, event, changes)
            if made is None:
                ignored += 1
            else:
                derived.append(made)
        batch = validate_batch([d.raw for d in derived], secret_key=self.secret_key, now=now)
        for rejection in batch.rejected:
            dead[derived[rejection.index].index] = f"{rejection.field}: {rejection.reason}"
        valid: list[tuple[_Derived, ValidEvent]] = []
        seen: set[str] = set()
        repeated = 0
        for position, checked in batch.valid:
            if checked.event_id in seen:
                repeated += 1  # the same message twice in one batch
                continue
            seen.add(checked.event_id)
            valid.append((derived[position], checked))
        stored, ended = await self._store(derived, valid, changes, now)
        self.book.apply(changes.changed)
        return BatchOutcome(
            stored=len(stored.inserted) + len(ended.inserted),
            already_stored=len(stored.already_stored) + len(ended.already_stored) + repeated,
            suppressed=len(stored.suppressed) + len(ended.suppressed),
            ignored=ignored,
            sessions_ended=len(ended.inserted),
            dead_letters=tuple(sorted(dead.items())),
            changed_keys=stored.changed_keys | ended.changed_keys,
        )

    async def _store(
        self,
        derived: Sequence[_Derived],
        valid: Sequence[tuple[_Derived, ValidEvent]],
        changes: _Changes,
        now: datetime,
    ) -> tuple[StoredEvents, StoredEvents]:
        """Store the batch, then the ends of the sessions it closed, in one transaction."""
        async with self.sessions.begin() as session:
            if self.previous_secret_keys:
                await adopt_event_customers(
                    session,
                    [d.raw for d in derived],
                    secret_key=self.secret_key,
                    previous_secret_keys=self.previous_secret_keys,
                )
            stored = await self._write(session, [event for _, event in valid], now)
            ends = _follow_sessions(valid, stored, changes)
            ended = await self._write(session, ends, now)
        return stored, ended

    async def _write(
        self, session: Session, events: Sequence[ValidEvent], now: datetime
    ) -> StoredEvents:
        return await store_events(
            session, events, now=now, tag_rules=self.tag_rules, consent_default=self.consent_default
        )

    def _derive(self, index: int, event: RasaEvent, changes: _Changes) -> _Derived | None:
        """The interaction an event makes (None: it makes none), resolving the customer
        as the actions do; a session metadata slot is remembered on the way."""
        key = event.conversation
        known = changes.get(key)
        at = datetime.fromtimestamp(event.timestamp, tz=timezone.utc)
        if event.type == "slot" and event.slot == SESSION_METADATA_SLOT:
            base = known or Conversation(seen_at=at)
            changes.put(
                key,
                replace(
                    base, seen_at=max(base.seen_at, at), session_metadata=event.session_metadata
                ),
            )
            return None
        if event.type not in ("user", "session_started"):
            return None  # bot utterances, actions run, other slots: nothing to store
        at_session_start = event.type == "session_started"
        session_metadata = known.session_metadata if known is not None else None
        identity = resolve_customer(
            sender_id=event.sender_id,
            latest_message_metadata=event.metadata,
            session_started_metadata=session_metadata,
            at_session_start=at_session_start,
            identity_secret=self.identity_secret,
        )
        context = context_from_metadata(
            session_metadata if at_session_start else event.metadata, event.input_channel
        )
        raw: dict[str, Any] = {
            "event_id": event.event_id(),
            "customer": identity.external_id,
            "kind": "session_start" if at_session_start else "chat_message",
            "timestamp": event.timestamp,
            "channel": context.channel,
            "device": context.device,
            "location": context.location,
            "category": event.intent,
        }
        return _Derived(index, key, raw)

    async def close_idle_sessions(self) -> BatchOutcome:
        """Record the ends of sessions whose conversations were not seen for the
        expiration time, and forget those conversations.

        Raises:
            DatabaseError: the store failed; they stay followed, to be tried again.
        """
        now = self._clock()
        idle = self.book.idle(now)
        ends = [c.session.end() for _, c in idle if c.session is not None]
        ended = None
        if ends:
            async with self.sessions.begin() as session:
                ended = await self._write(session, ends, now)
        self.book.apply(dict.fromkeys((key for key, _ in idle), None))
        if ended is None:
            return BatchOutcome()
        return BatchOutcome(
            stored=len(ended.inserted),
            already_stored=len(ended.already_stored),
            suppressed=len(ended.suppressed),
            sessions_ended=len(ended.inserted),
            changed_keys=ended.changed_keys,
        )


def _follow_sessions(
    valid: Sequence[tuple[_Derived, ValidEvent]], stored: StoredEvents, changes: _Changes
) -> list[ValidEvent]:
    """Open, extend and close sessions in delivery order; the ends of those closed.

    Only what was stored just now counts: a redelivered message (stored before) changes
    nothing, and a suppressed one opens no session and adds no message to one (a
    suppressed start still ends the session before it: Rasa began a new one).
    """
    ends: list[ValidEvent] = []
    for item, event in valid:
        if event.event_id in stored.already_stored:
            continue
        known = changes.get(item.conversation)
        seen_at = max(known.seen_at, event.occurred_at) if known else event.occurred_at
        conversation = replace(known, seen_at=seen_at) if known else Conversation(seen_at)
        session = conversation.session
        fresh = event.event_id in stored.inserted
        if event.kind == "session_start":
            if session is not None:
                ends.append(session.end())
            session = OpenSession(event, event.occurred_at) if fresh else None
        elif session is not None and fresh and event.occurred_at >= session.start.occurred_at:
            session = session.with_message(event.occurred_at)
        changes.put(item.conversation, replace(conversation, session=session))
    return ends


def dead_letter_queue(queue: str) -> str:
    """Where the consumer of ``queue`` puts the messages it cannot read."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"


@dataclass(frozen=True)
class ConsumerOptions:
    """How the consumer reads its queue."""

    # Messages RabbitMQ hands over unacknowledged at once; also the largest batch.
    prefetch: int = 200
    retry_delay_s: float = 0.5
    # Seconds between attempts to reconnect after a lost connection (aio-pika's).
    reconnect_interval_s: float = 5.0
    # How often sessions of quiet conversations are closed.
    session_check_every_s: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.prefetch <= 65_535:
            raise ValueError("prefetch must be between 1 and 65535")
        if self.retry_delay_s <= 0 or self.reconnect_interval_s <= 0:
            raise ValueError("retry delays must be positive")
        if self.session_check_every_s <= 0:
            raise ValueError("session_check_every_s must be positive")


@dataclass
class ConsumerStats:
    """Counters of one consumer's run."""

    messages: int = 0
    batches: int = 0
    stored: int = 0
    already_stored: int = 0
    suppressed: int = 0
    ignored: int = 0
    sessions_ended: int = 0
    dead_letters: int = 0
    store_errors: int = 0
    broker_errors: int = 0
    # Acknowledgements lost with a connection: those messages come again, stored already.
    unacknowledged: int = 0
    # Open sessions forgotten at the cap on conversations followed: no length recorded.
    forgotten_sessions: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: BatchOutcome) -> None:
        """Add a stored batch's (or a session check's) outcome."""
        self.stored += outcome.stored
        self.already_stored += outcome.already_stored
        self.suppressed += outcome.suppressed
        self.ignored += outcome.ignored
        self.sessions_ended += outcome.sessions_ended


class BrokerConsumer:
    """Reads Rasa's queue and stores its events through a :class:`BrokerIngestion`.

    Args:
        url: The RabbitMQ URL (``amqp://user:password@host:5672/vhost``).
        queue: The queue Rasa's pika broker publishes to.
        ingestion: Turns batches into stored interactions.
        options: Prefetch, retry delays.
        on_stored: Called with the customer keys whose interactions changed (cached
            profiles are dropped); its failures are logged, never retried.
    """

    def __init__(
        self,
        url: str,
        queue: str,
        ingestion: BrokerIngestion,
        *,
        options: ConsumerOptions | None = None,
        on_stored: OnStored | None = None,
    ) -> None:
        self.url = url
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue(queue)
        self.ingestion = ingestion
        self.options = options or ConsumerOptions()
        self.on_stored = on_stored
        self.stats = ConsumerStats()
        self._failures = 0
        self._connection: AbstractRobustConnection | None = None
        self._consuming = False

    @property
    def connected(self) -> bool:
        """Whether the consumer reads its queue now: connected to RabbitMQ and consuming
        (False before the first connection, and while aio-pika reconnects)."""
        connection = self._connection
        return (
            self._consuming
            and connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
        )

    async def run(self, stop: asyncio.Event) -> ConsumerStats:
        """Consume until ``stop`` is set; the batch in hand is finished first.

        Raises:
            BrokerError: RabbitMQ refused the login or the queue's declaration.
        """
        connection = await self._connect(stop)
        if connection is None:
            return self.stats
        self._connection = connection
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self.options.prefetch)
            queue = await self._declare(channel)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            await queue.consume(inbox.put, no_ack=False)
            self._consuming = True
            logger.info("Reading Rasa events from queue %s.", self.queue)
            await self._consume(channel, inbox, stop)
        finally:
            self._consuming = False
            self._connection = None
            # Whatever is still unacknowledged goes back to the queue with the connection.
            await connection.close()
        return self.stats

    async def _connect(self, stop: asyncio.Event) -> AbstractRobustConnection | None:
        """The first connection, retried with backoff (aio-pika reconnects after that)."""
        while not stop.is_set():
            try:
                connection = await aio_pika.connect_robust(
                    self.url, reconnect_interval=self.options.reconnect_interval_s, timeout=10
                )
            except (AuthenticationError, ProbableAuthenticationError):
                raise BrokerError(
                    "RabbitMQ refused the login: check the user, password and virtual host "
                    "of the broker URL"
                ) from None
            except CONNECTION_EXCEPTIONS as error:
                self._broker_failed(error)
                await _sleep_or_stop(stop, self._backoff())
            else:
                self._failures = 0
                return connection
        return None

    async def _declare(self, channel: AbstractChannel) -> AbstractQueue:
        """Rasa's queue as Rasa declares it (durable), and the dead letters beside it."""
        try:
            await channel.declare_queue(self.dead_letter_queue, durable=True)
            return await channel.declare_queue(self.queue, durable=True)
        except ChannelPreconditionFailed:
            raise BrokerError(
                f"queue {self.queue!r} exists with other settings than Rasa's (durable, no "
                "arguments): declare it as Rasa does, or name another with --queue"
            ) from None

    async def _consume(
        self,
        channel: AbstractChannel,
        inbox: asyncio.Queue[AbstractIncomingMessage],
        stop: asyncio.Event,
    ) -> None:
        loop = asyncio.get_running_loop()
        next_check = loop.time() + self.options.session_check_every_s
        while not stop.is_set():
            batch = await self._next_batch(inbox, stop)
            if batch:
                await self._handle(channel, batch, stop)
            if loop.time() >= next_check:
                next_check = loop.time() + self.options.session_check_every_s
                await self.close_idle_sessions()

    async def _next_batch(
        self, inbox: asyncio.Queue[AbstractIncomingMessage], stop: asyncio.Event
    ) -> list[AbstractIncomingMessage]:
        """What RabbitMQ has handed over: batches grow with the load, and are one message
        when the shop is quiet."""
        batch: list[AbstractIncomingMessage] = []
        if inbox.empty():
            getter = asyncio.ensure_future(inbox.get())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait(
                    (getter, stopper), timeout=IDLE_WAIT_S, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                stopper.cancel()
                getter.cancel()
            if getter.done() and not getter.cancelled():
                # Taken before the cancel: it heads the batch (order matters: a session's
                # metadata comes before its start, the start before its messages).
                batch.append(getter.result())
        while len(batch) < self.options.prefetch and not inbox.empty():
            batch.append(inbox.get_nowait())
        return batch

    async def _handle(
        self, channel: AbstractChannel, batch: list[AbstractIncomingMessage], stop: asyncio.Event
    ) -> None:
        """Store a batch (waiting out a store outage), then dead-letter and acknowledge."""
        bodies = [message.body for message in batch]
        while True:
            started = time.perf_counter()  # the attempt that succeeds is timed
            try:
                outcome = await self.ingestion.handle(bodies)
                break
            except (DatabaseError, OSError) as error:
                self.stats.store_errors += 1
                if self._failures == 0:
                    logger.warning(
                        "The store is unavailable (%s); the batch waits and is retried.",
                        type(error).__name__,
                    )
                self._failures += 1
                await _sleep_or_stop(stop, self._backoff())
                if stop.is_set():
                    return  # unacknowledged: RabbitMQ hands them out again
        self._failures = 0
        self.stats.batches += 1
        self._count(outcome)
        self.stats.forgotten_sessions = self.ingestion.book.forgotten_sessions
        dead = dict(outcome.dead_letters)
        try:
            for index, reason in dead.items():
                await self._bury(channel, batch[index], reason)
            await self._acknowledge(batch)
        except CONNECTION_EXCEPTIONS as error:
            # Stored already: when they come again they are found stored, never doubled.
            self.stats.unacknowledged += len(batch)
            self._broker_failed(error)
            return
        self.stats.messages += len(batch)
        count_broker_messages(
            interaction=len(batch) - outcome.ignored - len(dead),
            ignored=outcome.ignored,
            dead_letter=len(dead),
        )
        observe_broker_batch(time.perf_counter() - started)
        if dead:
            logger.warning(
                "Moved %d messages that hold no readable Rasa event to %s: %s.",
                len(dead),
                self.dead_letter_queue,
                "; ".join(sorted(set(dead.values()))),
            )
        await self._stored(outcome.changed_keys)

    async def _bury(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, reason: str
    ) -> None:
        """Publish the message as it came to the dead letters (confirmed), with the reason."""
        await channel.default_exchange.publish(
            aio_pika.Message(
                message.body,
                headers={**(message.headers or {}), REASON_HEADER: reason},
                content_type=message.content_type,
                app_id=message.app_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=self.dead_letter_queue,
        )
        self.stats.dead_letters += 1
        reasons = self.stats.dead_letter_reasons
        reasons[reason] = reasons.get(reason, 0) + 1

    async def _acknowledge(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        """After the commit: RabbitMQ forgets the messages."""
        for message in batch:
            await message.ack()

    async def close_idle_sessions(self) -> None:
        """Record the ends of sessions gone quiet; a store failure waits for the next check."""
        try:
            outcome = await self.ingestion.close_idle_sessions()
        except (DatabaseError, OSError) as error:
            self.stats.store_errors += 1
            logger.warning(
                "Recording ended sessions failed (%s); retrying later.", type(error).__name__
            )
            return
        self._count(outcome)
        await self._stored(outcome.changed_keys)

    def _count(self, outcome: BatchOutcome) -> None:
        """A committed batch's (or session check's) outcome, in the stats and the metrics.

        Counted at the commit: a batch whose acknowledgement is lost comes again and is
        counted again, as duplicates (and its dead letters as rejected once more).
        """
        self.stats.count(outcome)
        count_events(
            "broker",
            accepted=outcome.stored,
            duplicate=outcome.already_stored,
            rejected=len(outcome.dead_letters),
            suppressed=outcome.suppressed,
        )
        broker_conversations(len(self.ingestion.book))

    async def _stored(self, keys: frozenset[str]) -> None:
        if self.on_stored is None or not keys:
            return
        try:
            await self.on_stored(keys)
        except Exception as error:  # a hook must not stop the consumer
            logger.warning("After-store hook failed (%s).", type(error).__name__)

    def _broker_failed(self, error: BaseException) -> None:
        self.stats.broker_errors += 1
        if self._failures == 0:
            logger.warning(
                "RabbitMQ is unavailable (%s); the consumer retries until it returns.",
                type(error).__name__,
            )
        self._failures += 1

    def _backoff(self) -> float:
        return float(min(MAX_BACKOFF_S, self.options.retry_delay_s * 2 ** min(self._failures, 6)))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
