"""Copies in the process: trusted only while Redis's change feed vouches for them (real Redis)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone

import pytest
import redis
from redis import asyncio as redis_asyncio

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.cache.counters import KEY_PREFIX, SessionCounters, watch_counters
from rasa_personalize.cache.profiles import (
    CachedProfile,
    ProfileCache,
    ProfileTicket,
    entry_key,
    generation_key,
    version_key,
    watch_profiles,
)
from rasa_personalize.cache.tracking import ABSENT, ChangeFeed, KeptCopies
from rasa_personalize.logs import bind_request_id, correlation_id, unbind
from rasa_personalize.store.records import CustomerSnapshot, Demographics, ProfileMetrics
from tests.prometheus_tools import sample

pytestmark = pytest.mark.redis

CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def snapshot(tier: str) -> CustomerSnapshot:
    return CustomerSnapshot(
        customer_id=7,
        created_at=CREATED,
        loyalty_tier=tier,
        demographics=Demographics(age=None, gender=None, country=None, city=None),
        attributes={},
        metrics=ProfileMetrics(),
        profile_version=1,
        tags=(),
        segment=None,
        consent={},
    )


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def cache(url: str, namespace: str, feed: ChangeFeed | None = None) -> ProfileCache:
    """A cache as one server process has it (with ``feed``) or as a writer does (without)."""
    return ProfileCache(
        redis_asyncio.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0),
        ttl_s=600.0,
        breaker=RedisBreaker("test", timeout_s=1.0, retry_after_s=0.0),
        namespace=namespace,
        kept=watch_profiles(feed, capacity=100, namespace=namespace) if feed else None,
    )


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def feed(redis_url: str) -> AsyncIterator[ChangeFeed]:
    changes = ChangeFeed(redis_url, timeout_s=1.0, retry_after_s=0.1)
    yield changes
    await changes.close()


@pytest.fixture
async def reader(redis_url: str, namespace: str, feed: ChangeFeed) -> AsyncIterator[ProfileCache]:
    """The server process's cache, its feed connected."""
    server_cache = cache(redis_url, namespace, feed)
    feed.start()
    await until(lambda: feed.vouches)
    # The first lookup in a namespace draws its generation: a change every copy must see.
    assert isinstance(await server_cache.lookup("first"), ProfileTicket)
    await asyncio.sleep(0.05)
    yield server_cache
    await server_cache.close()


@pytest.fixture
async def writer(redis_url: str, namespace: str) -> AsyncIterator[ProfileCache]:
    """Another process's cache (a stream worker, a CLI job): no copies of its own."""
    other = cache(redis_url, namespace)
    yield other
    await other.close()


async def cached_copy(server_cache: ProfileCache, key: str, tier: str) -> None:
    """Read a miss, store the SQL answer: the process keeps a copy."""
    ticket = await server_cache.lookup(key)
    assert isinstance(ticket, ProfileTicket)
    assert await server_cache.store(ticket, snapshot(tier))


async def test_a_copy_answers_without_redis_until_another_process_invalidates(
    reader: ProfileCache, writer: ProfileCache, redis_url: str, namespace: str
) -> None:
    await cached_copy(reader, "k1", "silver")
    # The entry leaves Redis without a version bump (untracked): only the copy can answer.
    raw = redis_asyncio.from_url(redis_url)
    await raw.delete(entry_key("k1", namespace))
    await raw.aclose()
    before = sample("personalize_cache_requests_total", result="local")
    answer = await reader.lookup("k1")
    assert isinstance(answer, CachedProfile)
    assert answer.snapshot == snapshot("silver")
    assert sample("personalize_cache_requests_total", result="local") == before + 1
    await writer.invalidate(["k1"])  # after the other process's commit
    assert isinstance(await reader.lookup("k1"), ProfileTicket)


async def test_a_change_redis_has_answered_is_never_served_even_before_the_loop_reads_it(
    reader: ProfileCache, redis_url: str, namespace: str
) -> None:
    """A blocking client bumps the version: the push sits unread in the socket, and the
    copy is refused before the feed has had a chance to read it."""
    await cached_copy(reader, "k1", "silver")
    with redis.Redis.from_url(redis_url) as blocking:
        blocking.incr(version_key("k1", namespace))
        blocking.delete(entry_key("k1", namespace))
    # No await since the write: the feed's callback has not run yet.
    assert isinstance(await reader.lookup("k1"), ProfileTicket)
    await asyncio.sleep(0.05)
    assert isinstance(await reader.lookup("k1"), ProfileTicket)


async def test_a_read_begun_before_a_change_is_not_kept(
    reader: ProfileCache, writer: ProfileCache
) -> None:
    assert reader._kept is not None
    noted = reader._kept.note()
    await writer.invalidate(["k1"])
    await asyncio.sleep(0.05)  # the push arrives
    ticket = await reader.lookup("k1")
    assert isinstance(ticket, ProfileTicket)
    late = ProfileTicket(ticket.customer_key, ticket.version, ticket.generation, noted)
    # Redis takes the write (its version check passes), but the copy is not kept.
    assert await reader.store(late, snapshot("silver"))
    hit = await reader.lookup("k1")
    assert isinstance(hit, CachedProfile)  # from Redis
    assert len(reader._kept or ()) == 1  # kept by that Redis hit, not by the late store


async def test_a_new_generation_from_another_process_drops_every_copy(
    reader: ProfileCache, writer: ProfileCache
) -> None:
    await cached_copy(reader, "k1", "silver")
    await cached_copy(reader, "k2", "gold")
    assert await writer.invalidate_all()
    assert isinstance(await reader.lookup("k1"), ProfileTicket)
    assert isinstance(await reader.lookup("k2"), ProfileTicket)


async def test_a_lost_feed_drops_every_copy_and_comes_back(
    reader: ProfileCache, feed: ChangeFeed, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await cached_copy(reader, "k1", "silver")
    admin = redis_asyncio.from_url(redis_url)
    tracking = [c["id"] for c in await admin.client_list() if "B" in c.get("flags", "")]
    assert tracking
    for client_id in tracking:
        await admin.client_kill_filter(_id=client_id)
    await until(lambda: not feed.vouches)
    assert len(reader._kept or ()) == 0
    assert isinstance(await reader.lookup("k1"), CachedProfile)  # Redis still answers
    await until(lambda: feed.vouches)  # reconnected after retry_after_s
    await cached_copy(reader, "k2", "gold")
    assert len(reader._kept or ()) == 1
    await admin.aclose()
    assert "The Redis change feed lost its connection" in caplog.text


async def test_a_flush_drops_every_copy(reader: ProfileCache, feed: ChangeFeed) -> None:
    await cached_copy(reader, "k1", "silver")
    feed._received([b"invalidate", None])  # what FLUSHDB pushes
    assert len(reader._kept or ()) == 0


async def test_copies_expire(feed: ChangeFeed, reader: ProfileCache) -> None:
    now = [100.0]
    kept: KeptCopies[str] = KeptCopies(feed, capacity=2, clock=lambda: now[0])
    assert kept.keep("a", "A", kept.note(), ttl_s=5.0)
    assert kept.get("a") == "A"
    now[0] += 5.0
    assert kept.get("a") is ABSENT


async def test_at_most_capacity_copies_and_forgotten_changes_stay_safe(
    feed: ChangeFeed, reader: ProfileCache
) -> None:
    kept: KeptCopies[str] = KeptCopies(feed, capacity=2)
    noted = kept.note()
    for key in "abc":
        assert kept.keep(key, key.upper(), noted)
    assert len(kept) == 2
    assert kept.get("a") is ABSENT
    early = kept.note()
    kept.forget("x")
    kept.forget("y")
    kept.forget("z")  # "x" is no longer remembered: reads from before it are refused
    assert not kept.keep("q", "Q", early)
    assert kept.keep("q", "Q", kept.note())


async def test_counts_another_process_adds_are_seen(redis_url: str, feed: ChangeFeed) -> None:
    def counters(kept: KeptCopies[object] | None) -> SessionCounters:
        return SessionCounters(
            redis_asyncio.from_url(redis_url),
            secret_key="tracking-test-secret-0123456789abcdef",
            breaker=RedisBreaker("test", timeout_s=1.0, retry_after_s=0.0),
            kept=kept,  # type: ignore[arg-type]
        )

    server = counters(watch_counters(feed, capacity=10))
    other = counters(None)
    sender = f"conversation-{uuid.uuid4().hex}"
    assert (await server.read(sender)).recommendations_shown == 0  # starts the feed
    await until(lambda: feed.vouches)
    assert (await server.read(sender)).recommendations_shown == 0  # kept now
    assert len(server._kept or ()) == 1
    await other.add(sender, recommendations_shown=3)
    assert (await server.read(sender)).recommendations_shown == 3
    await server.add(sender, recommendations_rejected=1)  # this process's own write
    counts = await server.read(sender)
    assert (counts.recommendations_shown, counts.recommendations_rejected) == (3, 1)
    assert server.key_for(sender).startswith(KEY_PREFIX)


async def test_a_redis_without_the_feed_leaves_lookups_to_redis(
    redis_url: str, namespace: str
) -> None:
    """Nothing listens on the port: the feed never vouches and Redis answers every lookup."""
    dead = ChangeFeed("redis://127.0.0.1:1", timeout_s=0.2, retry_after_s=0.1)
    server_cache = cache(redis_url, namespace, dead)
    try:
        await cached_copy(server_cache, "k1", "silver")
        await asyncio.sleep(0.2)
        assert not dead.vouches
        assert len(server_cache._kept or ()) == 0
        assert isinstance(await server_cache.lookup("k1"), CachedProfile)
    finally:
        await dead.close()
        await server_cache.close()


def test_generation_key_is_watched_apart_from_versions() -> None:
    """Redis refuses overlapping prefixes: the two profile prefixes must not overlap."""
    versions = version_key("", "personalize").removesuffix("{}")
    generation = generation_key("personalize")
    assert not versions.startswith(generation)
    assert not generation.startswith(versions)


async def test_the_feed_does_not_log_under_the_request_that_started_it(
    redis_url: str, namespace: str
) -> None:
    """The first lookup starts the feed inside a conversation's action: the feed's own
    work (and its log lines) must not carry that conversation's correlation id."""
    seen: list[str | None] = []
    dead = ChangeFeed("redis://127.0.0.1:1", timeout_s=0.2, retry_after_s=0.1)
    original = dead._connect

    async def connect() -> None:
        seen.append(correlation_id())
        await original()

    dead._connect = connect  # type: ignore[method-assign]
    token = bind_request_id("request-that-started-it")[1]
    try:
        assert correlation_id() is not None
        dead.start()
    finally:
        unbind(token)
    await until(lambda: bool(seen))
    await dead.close()
    assert seen[0] is None


async def test_a_redis_without_resp3_is_told_once_and_left_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that refuses HELLO (Redis 5): the feed says so, closes its connection,
    and never vouches; nothing else listens for it."""
    closed = asyncio.Event()

    async def old_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"-ERR unknown command 'HELLO'\r\n")
        await writer.drain()
        await reader.read(1024)  # b"" once the feed has closed its end
        closed.set()
        writer.close()

    server = await asyncio.start_server(old_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    feed = ChangeFeed(f"redis://127.0.0.1:{port}", timeout_s=1.0, retry_after_s=0.1)
    try:
        feed.start()
        await asyncio.wait_for(closed.wait(), 3.0)
        assert not feed.vouches
        assert "Redis cannot push changes" in caplog.text
    finally:
        await feed.close()
        server.close()
        await server.wait_closed()
