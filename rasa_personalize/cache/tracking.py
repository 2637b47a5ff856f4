"""Copies of cached values in the server's own memory, dropped the moment Redis says they changed.

Why: a warm session start that asks Redis for the customer's snapshot and the
conversation's counters spends more CPU in the Redis client (two round trips, their
tasks and parsing) than in everything it decides. A copy in this process costs nothing
to read, but only if it can never outlive a change.

How: Redis's server-assisted client-side caching. :class:`ChangeFeed` keeps one
connection on which Redis (``CLIENT TRACKING ON BCAST``) pushes the name of every key
under the watched prefixes that any client changes, the profile versions a writer bumps
after its commit among them. Redis writes those messages before it answers the command
that made the change, so once a writer's invalidation has returned, the message is
already in this host's socket buffer (on one host; across a network, one message's
delivery later). :class:`KeptCopies` trusts a copy only while the feed is connected,
has heard from Redis within two heartbeats, and has no unread bytes on its socket (one
``FIONREAD``): a change that has arrived but is not yet read sends the reader to Redis.

A copy read from Redis is kept only if no change to its key (or to everything) came in
since the read began: the feed numbers every change it delivers and the reader notes the
number first. Losing the connection drops every copy and keeps none until it is back.

The messages are parsed with hiredis (a dependency of the ``redis`` extra); the
connection speaks RESP3 so pushes and replies share it.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import contextvars
import enum
import logging
import ssl
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

logger = logging.getLogger(__name__)

V = TypeVar("V")

# One PING a second; a feed that has not heard from Redis for two is not trusted.
HEARTBEAT_S: Final = 1.0
# Copies live at most this long even while nothing changes (a backstop, not the mechanism).
COPY_TTL_S: Final = 60.0
# "Not in the store" is kept briefly: paths that create customers do not always
# invalidate (see ``cache.profiles.NEGATIVE_TTL_S``).
ABSENT_TTL_S: Final = 5.0

Handler = Callable[[str | None], None]

if sys.platform == "win32":
    FIONREAD_AVAILABLE: Final = False

    def _unread_bytes(fd: int, buffer: array.array[int]) -> int:
        raise OSError("FIONREAD is not available here")

else:
    import fcntl
    import termios

    FIONREAD_AVAILABLE: Final = True

    def _unread_bytes(fd: int, buffer: array.array[int]) -> int:
        """Bytes waiting in the socket's receive buffer (one ioctl)."""
        fcntl.ioctl(fd, termios.FIONREAD, buffer)
        return buffer[0]


class FeedUnsupportedError(Exception):
    """This Redis or URL cannot push changes (no RESP3 or tracking, or an unknown scheme)."""


class Absent(enum.Enum):
    """No usable copy (never kept, changed, expired, or the feed cannot vouch for it)."""

    ABSENT = enum.auto()


ABSENT: Final = Absent.ABSENT


def _command(*parts: str | bytes) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    encoded = [part.encode() if isinstance(part, str) else part for part in parts]
    pieces = [b"*%d\r\n" % len(encoded)]
    for part in encoded:
        pieces.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(pieces)


def _tls_context(query: str) -> ssl.SSLContext:
    """TLS as the main client's URL asks for it (``ssl_ca_certs``, ``ssl_cert_reqs``)."""
    options = dict(parse_qsl(query))
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_cert_reqs", "required").lower() in ("none", "optional"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Protocol(asyncio.Protocol):
    """Bytes in, replies and pushes out, in order, on the event loop's own callback."""

    def __init__(self, feed: ChangeFeed) -> None:
        import hiredis  # noqa: PLC0415  # with the redis extra only

        self._feed = feed
        self._reader = hiredis.Reader()
        self._protocol_error: type[Exception] = hiredis.ProtocolError
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but write like them.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                self._feed._received(reply)
        except self._protocol_error:
            if self.transport is not None:
                self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._feed._lost(self)


class ChangeFeed:
    """Names of changed keys under ``prefixes``, pushed by Redis to this process.

    Call :meth:`watch` for each prefix before :meth:`start` (from the event loop). The
    feed reconnects on its own after ``retry_after_s``; while it is down it vouches for
    nothing (:attr:`vouches` is False) and its handlers were told "everything changed".

    Args:
        url: The Redis URL (``redis://``, ``rediss://`` or ``unix://``).
        timeout_s: Connecting and each handshake reply.
        retry_after_s: Wait before reconnecting after a failure.
    """

    def __init__(self, url: str, *, timeout_s: float, retry_after_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._retry_after_s = max(retry_after_s, 0.1)
        self._handlers: list[tuple[str, Handler]] = []
        self._protocol: _Protocol | None = None
        self._fd = -1
        self._replies: deque[asyncio.Future[Any]] = deque()
        self._live = False
        self._last_heard = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._unread = array.array("i", [0])
        # Every change delivered (and every loss) takes the next number.
        self.sequence = 0

    def watch(self, prefix: str, handler: Handler) -> None:
        """Call ``handler(rest of the key)`` for each changed key starting with ``prefix``,
        and ``handler(None)`` when anything may have changed (a flush, a lost connection).

        Raises:
            RuntimeError: the feed has started (Redis learns the prefixes on connecting).
        """
        if self.started:
            raise RuntimeError("watch every prefix before the change feed starts")
        self._handlers.append((prefix, handler))

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Connect in the background (idempotent); needs a running event loop."""
        if self._task is None and not self._closed:
            # In a context of its own: started by the first lookup, it must not carry
            # that request's correlation id into its logs forever.
            loop = asyncio.get_running_loop()
            self._task = contextvars.Context().run(loop.create_task, self._run())

    @property
    def vouches(self) -> bool:
        """Whether copies may be trusted now: connected, heard from lately, nothing unread."""
        if not self._live or time.monotonic() - self._last_heard > 2 * HEARTBEAT_S:
            return False
        try:
            return _unread_bytes(self._fd, self._unread) == 0
        except OSError:
            return False

    async def close(self) -> None:
        """Stop listening (copies are no longer trusted)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_connection()

    # -- the connection ---------------------------------------------------------------------

    async def _run(self) -> None:
        failing = False
        while not self._closed:
            try:
                await self._connect()
            except FeedUnsupportedError as error:
                self._drop_connection()  # a refused handshake leaves nothing open
                logger.warning(
                    "Redis cannot push changes (%s): every lookup asks Redis instead of "
                    "keeping copies in this process.",
                    error,
                )
                return
            except (OSError, asyncio.TimeoutError, ConnectionError) as error:
                if not failing:
                    logger.warning(
                        "The Redis change feed is unavailable (%s); copies in this process "
                        "are not used until it is back.",
                        type(error).__name__,
                    )
                failing = True
                self._drop_connection()
                await asyncio.sleep(self._retry_after_s)
                continue
            if failing:
                logger.info("The Redis change feed is back; copies are used again.")
                failing = False
            await self._heartbeat()
            self._drop_connection()
            if not self._closed:
                await asyncio.sleep(self._retry_after_s)

    async def _connect(self) -> None:
        if not FIONREAD_AVAILABLE:
            raise FeedUnsupportedError("this platform cannot tell unread bytes on a socket")
        loop = asyncio.get_running_loop()
        target = urlsplit(self._url)
        protocol = _Protocol(self)
        if target.scheme == "unix":
            connecting = loop.create_unix_connection(lambda: protocol, target.path)
        elif target.scheme in ("redis", "rediss"):
            context = _tls_context(target.query) if target.scheme == "rediss" else None
            connecting = loop.create_connection(
                lambda: protocol, target.hostname or "localhost", target.port or 6379, ssl=context
            )
        else:
            raise FeedUnsupportedError(f"unknown URL scheme {target.scheme!r}")
        transport, _ = await asyncio.wait_for(connecting, self._timeout_s)
        self._protocol = protocol
        self._fd = transport.get_extra_info("socket").fileno()
        hello: list[str | bytes] = ["HELLO", "3"]
        if target.password is not None:
            hello += ["AUTH", unquote(target.username or "default"), unquote(target.password)]
        answer = await self._ask(*hello)
        if not isinstance(answer, dict):
            raise FeedUnsupportedError("no RESP3 (Redis 6 or newer is needed)")
        tracking: list[str | bytes] = ["CLIENT", "TRACKING", "ON", "BCAST"]
        for prefix, _ in self._handlers:
            tracking += ["PREFIX", prefix]
        answer = await self._ask(*tracking)
        if answer != b"OK":
            raise FeedUnsupportedError("CLIENT TRACKING refused")
        # Nothing kept before this moment can be vouched for (none is: not live till now).
        self._changed(None)
        self._last_heard = time.monotonic()
        self._live = True

    async def _ask(self, *parts: str | bytes) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise ConnectionError("not connected")
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies.append(reply)
        protocol.transport.write(_command(*parts))
        answer = await asyncio.wait_for(reply, self._timeout_s)
        if isinstance(answer, Exception):
            raise FeedUnsupportedError(str(answer).split("\n")[0][:200])
        return answer

    async def _heartbeat(self) -> None:
        """PING every :data:`HEARTBEAT_S` until the connection fails or goes silent."""
        while self._live and not self._closed:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._ask("PING")
            except (asyncio.TimeoutError, ConnectionError, FeedUnsupportedError):
                break
        if not self._closed:
            logger.warning(
                "The Redis change feed lost its connection; copies in this process are "
                "dropped and not used until it reconnects."
            )

    def _drop_connection(self) -> None:
        protocol = self._protocol
        self._lost(protocol)
        self._protocol = None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.abort()

    # -- what arrives -----------------------------------------------------------------------

    def _received(self, reply: Any) -> None:
        self._last_heard = time.monotonic()
        if isinstance(reply, list) and reply and reply[0] == b"invalidate":
            keys = reply[1] if len(reply) > 1 else None
            if keys is None:
                self._changed(None)  # FLUSHDB / FLUSHALL
            else:
                for key in keys:
                    self._key_changed(key.decode(errors="replace"))
            return
        if self._replies:
            reply_future = self._replies.popleft()
            if not reply_future.done():
                reply_future.set_result(reply)

    def _key_changed(self, key: str) -> None:
        self.sequence += 1
        for prefix, handler in self._handlers:
            if key.startswith(prefix):
                handler(key[len(prefix) :])

    def _changed(self, key: str | None) -> None:
        self.sequence += 1
        for _, handler in self._handlers:
            handler(key)

    def _lost(self, origin: _Protocol | None) -> None:
        if origin is not self._protocol:
            return  # a connection already replaced
        was_live = self._live
        self._live = False
        self._fd = -1
        while self._replies:
            reply = self._replies.popleft()
            if not reply.done():
                reply.set_exception(ConnectionError("the change feed closed"))
        if was_live:
            self._changed(None)


class KeptCopies(Generic[V]):
    """Values kept in this process, each trusted only while ``feed`` vouches for it.

    The feed calls :meth:`changed` for this kind's keys. A reader calls :meth:`get`;
    on a miss, :meth:`note` before asking Redis, then :meth:`keep` with that number.

    Args:
        feed: The change feed these keys are watched on.
        capacity: Copies kept at most (least recently used go first).
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        feed: ChangeFeed,
        *,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self._capacity = capacity
        self._clock = clock
        self._copies: OrderedDict[str, tuple[float, V]] = OrderedDict()
        # Key -> number of its latest change; the numbers of changes forgotten (past
        # capacity) or of "everything changed" raise the floor instead.
        self._changes: OrderedDict[str, int] = OrderedDict()
        self._floor = 0

    def __len__(self) -> int:
        return len(self._copies)

    def get(self, key: str) -> V | Absent:
        """The kept value, or :data:`ABSENT` (then ask Redis). The first call starts the
        feed (it needs the running event loop)."""
        if not self._feed.started:
            self._feed.start()
        copy = self._copies.get(key)
        if copy is None or not self._feed.vouches:
            return ABSENT
        expires_at, value = copy
        if expires_at <= self._clock():
            del self._copies[key]
            return ABSENT
        self._copies.move_to_end(key)
        return value

    def note(self) -> int:
        """The change number to hand :meth:`keep` (take it before reading Redis)."""
        return self._feed.sequence

    def keep(self, key: str, value: V, noted: int, ttl_s: float = COPY_TTL_S) -> bool:
        """Keep ``value`` (read after :meth:`note` returned ``noted``), unless the key or
        everything changed since, or the feed cannot vouch now. Returns whether kept."""
        if not self._feed.vouches or noted < self._floor or self._changes.get(key, -1) > noted:
            return False
        self._copies[key] = (self._clock() + ttl_s, value)
        self._copies.move_to_end(key)
        while len(self._copies) > self._capacity:
            self._copies.popitem(last=False)
        return True

    def changed(self, key: str | None) -> None:
        """Drop the copy of ``key`` (None: of everything); reads begun before stay unkept."""
        number = self._feed.sequence
        if key is None:
            self._copies.clear()
            self._changes.clear()
            self._floor = number
            return
        self._copies.pop(key, None)
        self._changes[key] = number
        self._changes.move_to_end(key)
        while len(self._changes) > self._capacity:
            _, forgotten = self._changes.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    def forget(self, key: str | None) -> None:
        """A change this process made itself: as :meth:`changed`, under a number of its own."""
        self._feed.sequence += 1
        self.changed(key)
