"""The consumers' HTTP side: ``/health``, ``/ready`` and ``/metrics`` on their own port.

``personalize worker --metrics-port PORT`` and ``personalize broker --metrics-port PORT``
serve them, so both are probed and scraped like the action server: ``/health`` answers
while the process runs (liveness), ``/ready`` answers 200 only when every dependency
answers (the worker: the store and Redis; the broker: the store, and a RabbitMQ
connection it consumes on), else 503 with the same body shape as the action server's
(:mod:`rasa_personalize.readiness`), and ``/metrics`` is the process's Prometheus
metrics (:mod:`rasa_personalize.metrics`).

A few lines of asyncio rather than a web framework: three GET routes on the process's own
event loop, where the readiness checks run, with bounded reads (the request head at most
8 KiB, read within 5 s) and one request per connection. Nothing here quotes a request.

:class:`StreamGauges` keeps the stream's backlog and dead-letter gauges current: it runs
beside the worker and reads their sizes every few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.events.dead_letters import dead_letter_stream
from rasa_personalize.metrics import METRICS_PATH, exposition, stream_sizes
from rasa_personalize.readiness import CHECK_TIMEOUT_S, READY_PATH, Check, Readiness
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.sql_store import SqlStore

if TYPE_CHECKING:
    # Only the worker's probes need Redis: the broker's run without the 'redis' extra.
    from redis import asyncio as redis_asyncio

logger = logging.getLogger(__name__)

HEALTH_PATH: Final = "/health"
MAX_REQUEST_HEAD: Final = 8 * 1024
READ_TIMEOUT_S: Final = 5.0
# Often enough for a 15 s scrape interval, rare enough to cost Redis nothing.
STREAM_GAUGES_EVERY_S: Final = 5.0
JSON: Final = "application/json"


async def check_store(store: SqlStore, timeout_s: float) -> Check:
    """The store answers ``SELECT 1`` within ``timeout_s`` (error classes only, as ever)."""
    try:
        await store.ping(timeout_s)
    except (asyncio.TimeoutError, TimeoutError):  # before OSError, of which it is a subclass
        return Check(False, f"store did not answer within {timeout_s:.1f} s")
    except (DatabaseError, OSError) as error:
        return Check(False, f"store did not answer ({type(error).__name__})")
    return Check(True, "store answered SELECT 1")


async def check_redis(client: redis_asyncio.Redis, timeout_s: float) -> Check:
    """Redis answers ``PING`` within ``timeout_s``."""
    from redis.exceptions import RedisError  # noqa: PLC0415  # loaded with the client

    try:
        await asyncio.wait_for(client.ping(), timeout=timeout_s)
    except asyncio.TimeoutError:
        return Check(False, f"redis did not answer PING within {timeout_s:.1f} s")
    except (RedisError, OSError) as error:
        return Check(False, f"redis did not answer PING ({type(error).__name__})")
    return Check(True, "redis answered PING")


async def worker_readiness(
    store: SqlStore, client: redis_asyncio.Redis, timeout_s: float = CHECK_TIMEOUT_S
) -> Readiness:
    """Both checks, concurrently: the worker can store events when both answer."""
    store_check, redis_check = await asyncio.gather(
        check_store(store, timeout_s), check_redis(client, timeout_s)
    )
    return Readiness({"store": store_check, "redis": redis_check})


async def broker_readiness(
    store: SqlStore, connected: Callable[[], bool], timeout_s: float = CHECK_TIMEOUT_S
) -> Readiness:
    """The broker consumer can store Rasa's events: the store answers, and ``connected()``
    says the consumer is connected to RabbitMQ and consumes its queue."""
    store_check = await check_store(store, timeout_s)
    broker_check = (
        Check(True, "connected to RabbitMQ, consuming the queue")
        if connected()
        else Check(False, "not connected to RabbitMQ (connecting, or reconnecting after a loss)")
    )
    return Readiness({"store": store_check, "broker": broker_check})


class ProbeServer:
    """Serves ``/health``, ``/ready`` and ``/metrics`` on ``host:port`` until closed.

    Args:
        host: the interface to listen on.
        port: the port (0: any free one; :attr:`port` tells which).
        readiness: runs the readiness checks.
    """

    def __init__(self, host: str, port: int, readiness: Callable[[], Awaitable[Readiness]]) -> None:
        self.host = host
        self._port = port
        self._readiness = readiness
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the one chosen for 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Listen.

        Raises:
            OSError: the address cannot be bound (in use, or not this machine's).
        """
        self._server = await asyncio.start_server(
            self._serve, self.host, self._port, limit=MAX_REQUEST_HEAD
        )

    async def close(self) -> None:
        """Stop listening (a request in flight finishes on its own)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except (
            asyncio.TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            await _close(writer)  # too slow, too long or gone: no answer owed
            return
        try:
            method, path = _request_line(head)
            status, body, content_type = await self._answer(method, path)
            writer.write(_response(status, body, content_type, head_only=method == "HEAD"))
            await writer.drain()
        except ConnectionError:
            pass  # the client left before its answer
        finally:
            await _close(writer)

    async def _answer(self, method: str | None, path: str) -> tuple[int, bytes, str]:
        if method is None:
            return _error(HTTPStatus.BAD_REQUEST)
        if path not in {HEALTH_PATH, READY_PATH, METRICS_PATH}:
            return _error(HTTPStatus.NOT_FOUND)
        if method not in {"GET", "HEAD"}:
            return _error(HTTPStatus.METHOD_NOT_ALLOWED)
        if path == HEALTH_PATH:
            return 200, json.dumps({"status": "ok"}).encode(), JSON
        if path == READY_PATH:
            readiness = await self._readiness()
            status = 200 if readiness.ready else 503
            return status, json.dumps(readiness.as_json()).encode(), JSON
        # Reads files in multi-process mode; the worker is one process, but stay off the loop.
        body, content_type = await asyncio.to_thread(exposition)
        return 200, body, content_type


def _request_line(head: bytes) -> tuple[str | None, str]:
    """(method, path) of a request head; (None, "") when it is not HTTP."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None, ""
    method, target, _version = parts
    return method, target.split("?", 1)[0]


def _error(status: HTTPStatus) -> tuple[int, bytes, str]:
    return status.value, json.dumps({"error": status.phrase.lower()}).encode(), JSON


def _response(status: int, body: bytes, content_type: str, *, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + body


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


class StreamGauges:
    """Reads the stream's sizes into the worker's gauges every ``every_s`` seconds.

    ``personalize_stream_pending`` is the stream's length: stored messages are deleted
    from it, so what is left is the work still to do, delivered to a worker or not.
    When Redis does not answer the gauges keep their last values; ``/ready`` says why.
    """

    def __init__(
        self, client: redis_asyncio.Redis, stream: str, every_s: float = STREAM_GAUGES_EVERY_S
    ) -> None:
        self.client = client
        self.stream = stream
        self.every_s = every_s

    async def update(self) -> bool:
        """Read the sizes once; False when Redis did not answer."""
        from redis.exceptions import RedisError  # noqa: PLC0415  # loaded with the client

        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xlen(self.stream)
                pipe.xlen(dead_letter_stream(self.stream))
                pipe.zcard(f"{self.stream}:dirty")
                pending, dead, dirty = await pipe.execute()
        except (RedisError, OSError):
            return False
        stream_sizes(self.stream, pending=int(pending), dead_letters=int(dead), dirty=int(dirty))
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Update until ``stop`` is set (a periodic job of the worker)."""
        while not stop.is_set():
            await self.update()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.every_s)


@contextlib.asynccontextmanager
async def serving(
    host: str, port: int, readiness: Callable[[], Awaitable[Readiness]], whose: str
) -> AsyncIterator[ProbeServer]:
    """Serve ``/health``, ``/ready`` and ``/metrics`` while the block runs.

    Raises:
        PersonalizeError: ``host:port`` cannot be bound (``whose`` names the process).
    """
    server = ProbeServer(host, port, readiness)
    try:
        await server.start()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise PersonalizeError(f"cannot serve {whose} probes on {host}:{port}: {reason}") from None
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def serving_probes(
    redis_url: str, store: SqlStore, stream: str, host: str, port: int
) -> AsyncIterator[tuple[ProbeServer, StreamGauges]]:
    """Serve the worker's probes while the block runs; yields the server and the gauges
    job to run beside the worker.

    The probes have a Redis client of their own, with the probes' short timeouts: the
    worker's client blocks on reads for up to a second at a time.

    Raises:
        PersonalizeError: ``host:port`` cannot be bound.
    """
    from redis import asyncio as redis_asyncio  # noqa: PLC0415  # the worker has the extra

    client = redis_asyncio.from_url(
        redis_url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        async with serving(
            host, port, lambda: worker_readiness(store, client), "the worker's"
        ) as server:
            yield server, StreamGauges(client, stream)
    finally:
        await client.aclose()
