"""ProfileCache: exact round trips, versioned invalidation, outages; fakeredis and real Redis."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import asyncio as redis_asyncio
from sqlalchemy import update
from typer.testing import CliRunner

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.cache.profiles import (
    NEGATIVE_TTL_S,
    CachedProfile,
    ProfileCache,
    ProfileTicket,
    decode_entry,
    encode_entry,
    entry_key,
    generation_key,
    profile_cache_for,
    snapshot_from_document,
    snapshot_to_document,
    version_key,
)
from rasa_personalize.cli import app
from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.models import Customer
from rasa_personalize.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    PropensityRecord,
    SegmentRecord,
    TagRecord,
)
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import NOT_INLINE, SqlStore
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer, add_interactions, add_product
from tests.prometheus_tools import sample

BERLIN = timezone(timedelta(hours=1))
SNAPSHOT = CustomerSnapshot(
    customer_id=42,
    created_at=datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=timezone.utc),
    loyalty_tier="gold",
    demographics=Demographics(age=37, gender="f", country="DE", city="Berlin"),
    attributes={"vip": True, "level": 3, "notes": ["a", {"b": None}], "ratio": 0.1 + 0.2},
    metrics=ProfileMetrics(
        interaction_count=12,
        view_count=7,
        purchase_count=3,
        total_spent=123.456789,  # never rounded on the way through
        first_seen_at=datetime(2025, 3, 1, tzinfo=timezone.utc),
        last_seen_at=datetime(2026, 5, 30, 23, 59, tzinfo=BERLIN),
        last_purchase_at=None,
        discounted_purchase_share=1 / 3,
        favorite_category="running",
        category_affinity={"running": 11.5, "books": 0.25},
        propensity={"purchase_7d": PropensityRecord(0.4321, "high", "p-3", NOW)},
    ),
    profile_version=9,
    tags=(
        TagRecord("premium", "rule", 2.0, datetime(2026, 5, 1, tzinfo=timezone.utc)),
        TagRecord("interested_in_running", "manual", 1.0, NOW),
    ),
    segment=SegmentRecord("loyal", "kmeans", "v7", None, NOW),
)


@pytest.fixture(autouse=True)
def _no_inline_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite file is read inline, ahead of Redis: this module is about the cache path."""
    monkeypatch.setattr(SqlStore, "inline_snapshot", lambda _store, _key: NOT_INLINE)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def client(server: fakeredis.FakeServer) -> AsyncIterator[redis_asyncio.Redis]:
    fake = fakeredis.FakeAsyncRedis(server=server)
    yield fake
    await fake.aclose()


@pytest.fixture
def breaker() -> RedisBreaker:
    # retry_after_s=0: a failed call never keeps the next one from trying.
    return RedisBreaker("test", timeout_s=1.0, retry_after_s=0.0)


@pytest.fixture
def cache(client: redis_asyncio.Redis, breaker: RedisBreaker) -> ProfileCache:
    return ProfileCache(client, ttl_s=600.0, breaker=breaker)


async def cached(cache: ProfileCache, key: str) -> Any:
    """What a reader would get now: the hit's snapshot, or "miss"."""
    lookup = await cache.lookup(key)
    return lookup.snapshot if isinstance(lookup, CachedProfile) else "miss"


# -- serialisation ------------------------------------------------------------------------


def test_a_snapshot_round_trips_exactly() -> None:
    """Times with their zones, unrounded floats, nested attributes, tags, segment."""
    raw = encode_entry("g1", SNAPSHOT)
    assert decode_entry(raw) == ("g1", SNAPSHOT)
    assert decode_entry(encode_entry("g1", None)) == ("g1", None)


def test_a_minimal_snapshot_round_trips() -> None:
    """No segment, no tags, unknown demographics, default metrics."""
    bare = replace(
        SNAPSHOT,
        demographics=Demographics(),
        attributes={},
        metrics=ProfileMetrics(),
        tags=(),
        segment=None,
    )
    assert snapshot_from_document(snapshot_to_document(bare)) == bare


times = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
)
json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_scalars = json_scalars | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@given(
    total=st.floats(0, 1e9, allow_nan=False),
    share=st.floats(0, 1),
    affinity=st.dictionaries(st.text(min_size=1, max_size=10), st.floats(0, 1e6), max_size=4),
    attributes=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    seen=st.none() | times,
    score=st.none() | st.floats(-1, 1),
    tags=st.lists(st.tuples(st.text(min_size=1, max_size=12), st.floats(0, 10), times), max_size=3),
)
@settings(max_examples=60, deadline=None)
def test_round_trip_property(
    total: float,
    share: float,
    affinity: dict[str, float],
    attributes: dict[str, Any],
    seen: datetime | None,
    score: float | None,
    tags: list[tuple[str, float, datetime]],
) -> None:
    """Whatever JSON-valued attributes and metrics a snapshot has, it comes back equal."""
    snapshot = replace(
        SNAPSHOT,
        attributes=attributes,
        metrics=replace(
            SNAPSHOT.metrics,
            total_spent=total,
            discounted_purchase_share=share,
            category_affinity=affinity,
            last_seen_at=seen,
        ),
        tags=tuple(TagRecord(tag, "rule", weight, at) for tag, weight, at in tags),
        segment=replace(SNAPSHOT.segment, score=score) if SNAPSHOT.segment else None,
    )
    assert decode_entry(encode_entry("g", snapshot)) == ("g", snapshot)


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",  # JSON, but not our document
        b'{"schema": 999, "generation": "g", "snapshot": null}',  # a future layout
        b'{"schema": 1, "generation": "g", "snapshot": {"customer_id": 1}}',  # truncated
    ],
)
def test_foreign_values_read_as_misses(raw: bytes) -> None:
    """A corrupt or foreign value is ignored, never an exception."""
    assert decode_entry(raw) is None


def test_keys_carry_the_customer_key_hash_tagged() -> None:
    """Entry and version share a Cluster slot ({key}); no raw id is ever part of a key."""
    key = customer_key(TEST_SECRET, "alice@example.com")
    assert entry_key(key) == f"personalize:profile:{{{key}}}"
    assert version_key(key) == f"personalize:profile-version:{{{key}}}"
    assert "alice" not in entry_key(key)


# -- cache-aside with fakeredis -------------------------------------------------------------


async def test_miss_store_hit(cache: ProfileCache, client: redis_asyncio.Redis) -> None:
    """A miss hands out a ticket; the stored SQL answer is the next reader's hit, with TTL."""
    lookup = await cache.lookup("k1")
    assert isinstance(lookup, ProfileTicket)
    assert await cache.store(lookup, SNAPSHOT) is True
    assert await cached(cache, "k1") == SNAPSHOT
    assert 599_000 < await client.pttl(entry_key("k1")) <= 600_000


async def test_unknown_customers_are_cached_briefly(
    cache: ProfileCache, client: redis_asyncio.Redis
) -> None:
    """'Not in the store' is a hit too, but lives at most NEGATIVE_TTL_S."""
    lookup = await cache.lookup("nobody")
    assert isinstance(lookup, ProfileTicket)
    assert await cache.store(lookup, None) is True
    assert await cached(cache, "nobody") is None
    assert 0 < await client.pttl(entry_key("nobody")) <= NEGATIVE_TTL_S * 1000


async def test_a_reader_that_read_sql_before_a_write_cannot_store(cache: ProfileCache) -> None:
    """Reader notes the version, a write + invalidate happens, the reader's store loses."""
    ticket = await cache.lookup("k2")  # the reader, before reading SQL
    assert isinstance(ticket, ProfileTicket)
    await cache.invalidate(["k2"])  # a writer committed and invalidated meanwhile
    assert await cache.store(ticket, SNAPSHOT) is False
    assert await cached(cache, "k2") == "miss"


async def test_invalidation_drops_the_entry(cache: ProfileCache) -> None:
    """After invalidate the next reader misses (and may store the fresh state)."""
    ticket = await cache.lookup("k3")
    assert isinstance(ticket, ProfileTicket)
    await cache.store(ticket, SNAPSHOT)
    await cache.invalidate(["k3", "k3", "other"])
    fresh = await cache.lookup("k3")
    assert isinstance(fresh, ProfileTicket)
    newer = replace(SNAPSHOT, loyalty_tier="platinum")
    assert await cache.store(fresh, newer) is True
    assert await cached(cache, "k3") == newer


async def test_a_write_between_check_and_set_aborts_the_store(
    cache: ProfileCache,
    client: redis_asyncio.Redis,
    server: fakeredis.FakeServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WATCH makes the compare-and-set atomic: an INCR after the check aborts the SET."""
    ticket = await cache.lookup("k4")
    assert isinstance(ticket, ProfileTicket)
    other = fakeredis.FakeAsyncRedis(server=server)
    real_get = redis_asyncio.client.Pipeline.get

    async def get_then_a_concurrent_invalidation(pipe: Any, name: str) -> Any:
        value = await real_get(pipe, name)  # the check passes: version unchanged so far
        await other.incr(version_key("k4"))  # another process invalidates right now
        return value

    monkeypatch.setattr(redis_asyncio.client.Pipeline, "get", get_then_a_concurrent_invalidation)
    try:
        assert await cache.store(ticket, SNAPSHOT) is False
    finally:
        monkeypatch.undo()
        await other.aclose()
    assert await client.exists(entry_key("k4")) == 0


async def test_invalidate_all_outdates_every_entry(cache: ProfileCache) -> None:
    """A generation bump makes old entries misses, and a reader's store in flight dead."""
    for key in ("a", "b"):
        ticket = await cache.lookup(key)
        assert isinstance(ticket, ProfileTicket)
        await cache.store(ticket, SNAPSHOT)
    in_flight = await cache.lookup("c")
    assert isinstance(in_flight, ProfileTicket)
    assert await cache.invalidate_all() is True
    assert await cached(cache, "a") == "miss"
    assert await cached(cache, "b") == "miss"
    await cache.store(in_flight, SNAPSHOT)  # read under the old generation
    assert await cached(cache, "c") == "miss"


async def test_a_lost_generation_never_revives_old_entries(
    cache: ProfileCache, client: redis_asyncio.Redis
) -> None:
    """If Redis drops the generation key, a fresh random one is drawn: old entries die."""
    ticket = await cache.lookup("k5")
    assert isinstance(ticket, ProfileTicket)
    await cache.store(ticket, SNAPSHOT)
    await client.delete(generation_key())
    assert await cached(cache, "k5") == "miss"


async def test_an_unreachable_redis_reads_sql_and_invalidations_are_replayed(
    cache: ProfileCache, server: fakeredis.FakeServer, client: redis_asyncio.Redis
) -> None:
    """Invalidation never raises; the key bypasses the cache until Redis takes the replay."""
    ticket = await cache.lookup("k6")
    assert isinstance(ticket, ProfileTicket)
    await cache.store(ticket, SNAPSHOT)
    server.connected = False
    assert await cache.lookup("k6") is None  # Redis down: read SQL
    await cache.invalidate(["k6"])  # must not raise
    assert cache.pending
    server.connected = True
    # The stale entry is still in Redis, but this process never serves it: the replay
    # runs first, on the next use.
    assert await cached(cache, "k6") == "miss"
    assert not cache.pending
    assert await client.exists(entry_key("k6")) == 0
    assert await client.get(version_key("k6")) == b"1"


async def test_a_failed_invalidate_all_is_replayed(
    cache: ProfileCache, server: fakeredis.FakeServer
) -> None:
    """A bump that could not be sent is sent before the cache serves anything again."""
    ticket = await cache.lookup("k7")
    assert isinstance(ticket, ProfileTicket)
    await cache.store(ticket, SNAPSHOT)
    server.connected = False
    assert await cache.invalidate_all() is False
    assert cache.pending
    assert await cache.lookup("k7") is None
    server.connected = True
    assert await cached(cache, "k7") == "miss"
    assert not cache.pending


async def test_too_many_pending_invalidations_become_one_generation_bump(
    client: redis_asyncio.Redis, server: fakeredis.FakeServer, breaker: RedisBreaker
) -> None:
    """Past max_pending keys, one bump replaces them (memory stays bounded)."""
    cache = ProfileCache(client, ttl_s=600.0, breaker=breaker, max_pending=3)
    ticket = await cache.lookup("kept")
    assert isinstance(ticket, ProfileTicket)
    await cache.store(ticket, SNAPSHOT)
    server.connected = False
    await cache.invalidate([f"k{n}" for n in range(5)])
    assert cache.pending
    server.connected = True
    assert await cached(cache, "kept") == "miss"  # the generation moved
    assert not cache.pending


async def test_no_store_while_an_invalidation_is_pending(
    cache: ProfileCache, server: fakeredis.FakeServer
) -> None:
    """A ticket issued before a failed invalidation cannot write the old state later."""
    ticket = await cache.lookup("k8")
    assert isinstance(ticket, ProfileTicket)
    server.connected = False
    await cache.invalidate(["k8"])
    assert await cache.store(ticket, SNAPSHOT) is False


async def test_a_slow_redis_costs_one_timeout_then_nothing(
    client: redis_asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The breaker bounds a hanging Redis, then answers 'unavailable' at once."""
    breaker = RedisBreaker("test", timeout_s=0.05, retry_after_s=60.0)
    cache = ProfileCache(client, ttl_s=600.0, breaker=breaker)
    never = asyncio.Event()
    calls: list[str] = []

    async def hang(*args: Any, **kwargs: Any) -> Any:
        calls.append("execute")
        await never.wait()

    monkeypatch.setattr(redis_asyncio.client.Pipeline, "execute", hang)
    started = time.perf_counter()
    assert await cache.lookup("k9") is None
    assert time.perf_counter() - started < 1.0  # one timeout (0.05 s), not a hang
    assert breaker.is_open
    assert await cache.lookup("k9") is None
    await cache.invalidate(["k9"])  # never raises, remembered for later
    assert calls == ["execute"]  # while open, Redis is not even tried


# -- real Redis ------------------------------------------------------------------------------


def isolated_cache(url: str, *, timeout_s: float = 1.0) -> ProfileCache:
    """A cache in its own key namespace: other suites' generation bumps cannot interfere."""
    return ProfileCache(
        redis_asyncio.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s),
        ttl_s=600.0,
        breaker=RedisBreaker("test", timeout_s=timeout_s, retry_after_s=0.0),
        namespace=f"test-{uuid.uuid4().hex[:12]}",
    )


async def seeded_store(store: SqlStore) -> None:
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running", price=120.0)
        trail = await add_product(session, "SKU-RUN-2", "running", price=90.0)
        customer = await add_customer(session, "racer", tier="silver", tags=("premium",))
        await add_interactions(session, customer, shoes, "purchase", 2, days_ago=2)
        other = await add_customer(session, "walker")
        await add_interactions(session, other, trail, "purchase", 1, days_ago=3)
        await rebuild_profile_metrics(session, now=NOW)


async def set_tier(store: SqlStore, external_id: str, tier: str) -> None:
    async with store.sessions.begin() as session:
        await session.execute(
            update(Customer)
            .where(Customer.customer_key == customer_key(TEST_SECRET, external_id))
            .values(loyalty_tier=tier)
        )


@pytest.mark.redis
async def test_stale_write_race_against_real_redis_and_sql(store: SqlStore, redis_url: str) -> None:
    """Reader reads old SQL; a write + invalidate lands; the reader's set loses; the next
    read returns the new state."""
    await seeded_store(store)
    cache = isolated_cache(redis_url)
    key = customer_key(TEST_SECRET, "racer")
    try:
        ticket = await cache.lookup(key)
        assert isinstance(ticket, ProfileTicket)
        old = await store.load_snapshot(key)  # the slow reader's SQL read
        await set_tier(store, "racer", "platinum")  # the writer commits ...
        await cache.invalidate([key])  # ... then invalidates
        assert await cache.store(ticket, old) is False  # the reader's late write-back
        fresh = await cache.lookup(key)
        assert isinstance(fresh, ProfileTicket)
        new = await store.load_snapshot(key)
        assert await cache.store(fresh, new) is True
        hit = await cache.lookup(key)
        assert isinstance(hit, CachedProfile)
        assert hit.snapshot == new
        assert new is not None
        assert new.loyalty_tier == "platinum"
    finally:
        await cache.close()


@pytest.mark.redis
async def test_many_concurrent_readers_and_a_writer_never_leave_stale_state(
    store: SqlStore, redis_url: str
) -> None:
    """Readers racing a write: once the invalidation is done, every read sees the write."""
    await seeded_store(store)
    cache = isolated_cache(redis_url)
    key = customer_key(TEST_SECRET, "racer")

    async def reader() -> None:
        lookup = await cache.lookup(key)
        if isinstance(lookup, ProfileTicket):
            await cache.store(lookup, await store.load_snapshot(key))

    try:
        for round_number, tier in enumerate(["gold", "platinum", "none", "silver"]):
            readers = [asyncio.create_task(reader()) for _ in range(8)]
            await asyncio.sleep(0)  # let the readers take their tickets first
            await set_tier(store, "racer", tier)
            await cache.invalidate([key])
            await asyncio.gather(*readers)
            await reader()
            hit = await cache.lookup(key)
            assert isinstance(hit, CachedProfile), round_number
            assert hit.snapshot is not None
            assert hit.snapshot.loyalty_tier == tier
    finally:
        await cache.close()


def cached_service(
    store: SqlStore, url: str, redis_url: str, tmp_path: Path, **overrides: Any
) -> PersonalizationService:
    settings = make_settings(url, redis_url=redis_url, **overrides)
    return PersonalizationService(
        settings, store, clock=lambda: NOW, rules=RuleBook(tmp_path / "none.yml")
    )


RACER = PersonalizationRequest(CustomerIdentity("racer", "message_metadata"))


@pytest.mark.redis
async def test_the_engine_reads_snapshots_through_the_cache(
    store: SqlStore, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Second read is a hit (a SQL-only change is invisible until invalidated)."""
    await seeded_store(store)
    service = cached_service(store, database_url, redis_url, tmp_path)
    assert service.profile_cache is not None
    isolated = isolated_cache(redis_url)
    service.profile_cache = isolated
    try:
        assert (await service.personalize(RACER))["loyalty_tier"] == "silver"
        await service.drain()  # the write-back runs after the answer
        await set_tier(store, "racer", "gold")  # behind the cache's back
        assert (await service.personalize(RACER))["loyalty_tier"] == "silver"
        await isolated.invalidate([customer_key(TEST_SECRET, "racer")])
        assert (await service.personalize(RACER))["loyalty_tier"] == "gold"
        # the recommend path reads the same cache, and the items from SQL
        plan = await service.recommend(RACER)
        assert plan["recommended_products"] is not None
    finally:
        await isolated.close()
        await service.close()


@pytest.mark.redis
async def test_the_engine_keeps_copies_that_a_worker_invalidation_outdates(
    store: SqlStore, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """A server process answers repeat turns from its own copy; the moment another
    process's invalidation returns, the next turn sees the committed change."""
    await seeded_store(store)
    service = cached_service(store, database_url, redis_url, tmp_path)
    assert service.change_feed is not None
    worker = profile_cache_for(make_settings(database_url, redis_url=redis_url))
    assert worker is not None
    assert await worker.invalidate_all()  # entries an earlier test left in the namespace
    assert (await service.personalize(RACER))["loyalty_tier"] == "silver"  # starts the feed
    await service.drain()
    feed = service.change_feed
    deadline = time.monotonic() + 3.0
    while not feed.vouches:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    try:
        for tier in ("gold", "platinum", "none"):
            await service.personalize(RACER)  # read from Redis and kept
            await service.drain()
            local = sample("personalize_cache_requests_total", result="local")
            assert (await service.personalize(RACER))["loyalty_tier"] != tier
            assert sample("personalize_cache_requests_total", result="local") == local + 1
            await set_tier(store, "racer", tier)  # the worker commits ...
            await worker.invalidate([customer_key(TEST_SECRET, "racer")])  # ... invalidates
            assert (await service.personalize(RACER))["loyalty_tier"] == tier
            await service.drain()
    finally:
        await worker.close()
        await service.close()


@pytest.mark.redis
async def test_redis_down_sql_answers_within_the_timeout(
    store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """Nothing listens on the port: SQL answers, Redis costs at most one short timeout."""
    await seeded_store(store)
    service = cached_service(
        store,
        database_url,
        "redis://127.0.0.1:1/0",
        tmp_path,
        redis_timeout_s=0.2,
        redis_retry_after_s=30.0,
    )
    try:
        started = time.perf_counter()
        plan = await service.personalize(RACER)
        first = time.perf_counter() - started
        assert plan["loyalty_tier"] == "silver"  # from SQL, not defaults
        assert service.redis_breaker.is_open
        plan = await service.personalize(RACER)
        assert plan["loyalty_tier"] == "silver"
        assert first < 0.2 + 1.0  # at most the Redis timeout, plus the SQL read
        assert (await service.recommend(RACER))["recommended_products"]
    finally:
        await service.close()


class TcpProxy:
    """A loopback TCP proxy to Redis that can be stopped and started (an outage)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers.update({writer, upstream_writer})

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.mark.redis
async def test_the_breaker_closes_again_after_redis_recovers(
    store: SqlStore,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Up: cached. Down: SQL answers, breaker open. Up again: the cache is used again."""
    await seeded_store(store)
    parsed = redis_asyncio.from_url(redis_url).connection_pool.connection_kwargs
    proxy = TcpProxy(parsed.get("host", "127.0.0.1"), parsed.get("port", 6379))
    await proxy.start()
    proxied = f"redis://127.0.0.1:{proxy.port}/{parsed.get('db', 0)}"
    service = cached_service(
        store, database_url, proxied, tmp_path, redis_timeout_s=0.3, redis_retry_after_s=0.0
    )
    assert service.profile_cache is not None
    service.profile_cache.namespace = f"test-{uuid.uuid4().hex[:12]}"
    namespace = service.profile_cache.namespace
    key = customer_key(TEST_SECRET, "racer")
    direct = redis_asyncio.from_url(redis_url)
    caplog.set_level(logging.INFO, logger="rasa_personalize.cache.breaker")
    try:
        await service.personalize(RACER)
        await service.drain()  # the write-back runs after the answer
        assert await direct.exists(entry_key(key, namespace)) == 1
        await proxy.stop()
        assert (await service.personalize(RACER))["loyalty_tier"] == "silver"
        assert "is unavailable" in caplog.text  # the outage was noticed
        await proxy.start()  # same port: Redis is back
        await direct.delete(entry_key(key, namespace))
        assert (await service.personalize(RACER))["loyalty_tier"] == "silver"
        assert "answers again" in caplog.text
        await service.drain()
        assert await direct.exists(entry_key(key, namespace)) == 1  # written back again
    finally:
        await direct.aclose()
        await service.close()
        await proxy.stop()


async def test_a_cached_profile_answers_while_the_store_is_down(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """The store breaker still answers defaults for what is not cached; a hit needs no SQL."""
    await seeded_store(sqlite_store)
    service = PersonalizationService(
        make_settings(sqlite_url, store_retry_after_s=60.0),
        sqlite_store,
        clock=lambda: NOW,
        rules=RuleBook(tmp_path / "none.yml"),
    )
    fake = fakeredis.FakeAsyncRedis()
    service.profile_cache = ProfileCache(
        fake, ttl_s=600.0, breaker=RedisBreaker("test", timeout_s=1.0)
    )
    walker = PersonalizationRequest(CustomerIdentity("walker", "message_metadata"))
    try:
        assert (await service.personalize(RACER))["loyalty_tier"] == "silver"
        await service.drain()  # now cached
        service._mark_store_down(OSError("test outage"))
        assert (await service.personalize(RACER))["loyalty_tier"] == "silver"
        # not cached: the defaults, though walker has history in the store
        assert (await service.personalize(walker))["is_returning_customer"] is False
    finally:
        await fake.aclose()
        await service.close()


# -- batch jobs -------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A small seeded demo shop on SQLite; the environment points the CLI at it."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    monkeypatch.delenv("PERSONALIZE_REDIS_URL", raising=False)
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    seeded = runner.invoke(
        app, ["seed-demo", "--customers", "30", "--products", "20", "--interactions", "400"]
    )
    assert seeded.exit_code == 0, seeded.output
    return url


TAG_RULES = str(Path(__file__).resolve().parents[2] / "tags.yml")


@pytest.mark.redis
@pytest.mark.parametrize(
    "command",
    [
        ["profile", "rebuild"],  # metrics
        ["tag", "--rules", TAG_RULES],  # tags
        ["segment"],  # segments
    ],
)
def test_batch_jobs_bump_the_generation(
    shop: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """Jobs that change profiles, tags or segments outdate every cached snapshot."""
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", redis_url)

    async def generation() -> bytes | None:
        client = redis_asyncio.from_url(redis_url)
        try:
            value: bytes | None = await client.get(generation_key())
            await client.set(generation_key(), b"before")
            return value
        finally:
            await client.aclose()

    asyncio.run(generation())
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert asyncio.run(generation()) not in (None, b"before")


def test_a_batch_job_warns_when_redis_is_unreachable(
    shop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job still succeeds; the operator learns the cache may be stale for a TTL."""
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", "redis://127.0.0.1:1/0")
    result = runner.invoke(app, ["profile", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "not invalidated" in result.output
    assert "Rebuilt" in result.output
