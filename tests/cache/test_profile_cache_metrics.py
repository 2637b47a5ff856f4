"""personalize_cache_requests_total: every profile cache lookup counted hit, miss or error."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis import asyncio as redis_asyncio

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.cache.profiles import CachedProfile, ProfileCache, ProfileTicket
from tests.prometheus_tools import sample

RESULTS = ("hit", "miss", "error")


def counts() -> dict[str, float]:
    return {r: sample("personalize_cache_requests_total", result=r) for r in RESULTS}


def moved(before: dict[str, float]) -> dict[str, float]:
    return {r: v - before[r] for r, v in counts().items() if v != before[r]}


@pytest.fixture
async def client() -> AsyncIterator[redis_asyncio.Redis]:
    fake = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield fake
    await fake.aclose()


async def test_a_miss_then_a_hit(client: redis_asyncio.Redis) -> None:
    """The first lookup misses and stores the SQL answer; the second one hits."""
    cache = ProfileCache(client, ttl_s=600.0, breaker=RedisBreaker("test", timeout_s=1.0))
    before = counts()
    ticket = await cache.lookup("k1")
    assert isinstance(ticket, ProfileTicket)
    assert moved(before) == {"miss": 1}
    assert await cache.store(ticket, None)
    before = counts()
    assert isinstance(await cache.lookup("k1"), CachedProfile)
    assert moved(before) == {"hit": 1}


async def test_redis_down_counts_errors() -> None:
    """A failing Redis, then the open breaker: both lookups are errors (SQL answers)."""
    breaker = RedisBreaker("test", timeout_s=1.0, retry_after_s=60.0)
    # Nothing listens on port 1: the connection is refused.
    dead = redis_asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    cache = ProfileCache(dead, ttl_s=600.0, breaker=breaker)
    before = counts()
    assert await cache.lookup("k1") is None
    assert await cache.lookup("k1") is None
    await dead.aclose()
    breaker.record_success()  # this test's breaker must not hold the process's gauge open
    assert moved(before) == {"error": 2}


async def test_a_missed_invalidation_counts_an_error(client: redis_asyncio.Redis) -> None:
    """While an invalidation waits to be replayed, the key is read from SQL: an error."""
    breaker = RedisBreaker("test", timeout_s=1.0, retry_after_s=60.0)
    cache = ProfileCache(client, ttl_s=600.0, breaker=breaker)
    breaker.record_failure(OSError("down"))  # Redis unreachable when the write happened
    await cache.invalidate(["k1"])
    before = counts()
    assert await cache.lookup("k1") is None
    breaker.record_success()
    assert moved(before) == {"error": 1}
