"""Conversation counters: Redis hashes keyed by HMAC, an in-process LRU without Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis import asyncio as redis_asyncio

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.cache.counters import (
    DEFAULT_TTL_S,
    SessionCounters,
    SessionCounts,
    conversation_key,
)
from rasa_personalize.identity import customer_key
from tests.conftest import REDIS_URL_VARIABLE, TEST_SECRET


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def client(server: fakeredis.FakeServer) -> AsyncIterator[redis_asyncio.Redis]:
    fake = fakeredis.FakeAsyncRedis(server=server)
    yield fake
    await fake.aclose()


@pytest.fixture
def counters(client: redis_asyncio.Redis) -> SessionCounters:
    breaker = RedisBreaker("test", timeout_s=1.0, retry_after_s=0.0)
    return SessionCounters(client, secret_key=TEST_SECRET, breaker=breaker)


def test_the_key_is_an_hmac_of_the_sender_id() -> None:
    """No raw sender id in Redis; distinct from the customer key of the same string."""
    key = conversation_key(TEST_SECRET, "+49 170 1234567")
    assert len(key) == 64
    assert "1234567" not in key
    assert key != customer_key(TEST_SECRET, "+49 170 1234567")
    assert key != conversation_key("another-secret-0123456789", "+49 170 1234567")


async def test_increments_add_up_in_redis(
    counters: SessionCounters, client: redis_asyncio.Redis
) -> None:
    """HINCRBY per counter, a TTL on the hash, zeros for what never happened."""
    await counters.add("conv-1", recommendations_shown=3, categories_asked=1)
    await counters.add("conv-1", recommendations_shown=2, recommendations_rejected=1)
    assert await counters.read("conv-1") == SessionCounts(
        recommendations_shown=5, recommendations_rejected=1, categories_asked=1
    )
    assert await counters.read("conv-2") == SessionCounts()
    key = counters.key_for("conv-1")
    assert "conv-1" not in key
    assert 0 < await client.ttl(key) <= DEFAULT_TTL_S


async def test_unknown_counter_names_are_a_bug(counters: SessionCounters) -> None:
    """A misspelt counter fails loudly instead of counting into the void."""
    with pytest.raises(ValueError, match="recommendations_show"):
        await counters.add("conv", recommendations_show=1)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({b"recommendations_shown": b"4"}, SessionCounts(recommendations_shown=4)),
        ({b"recommendations_shown": b"junk"}, SessionCounts()),  # a foreign value
        ({b"something_else": b"9"}, SessionCounts()),  # a foreign field
        ({"categories_asked": "-3"}, SessionCounts()),  # never negative
    ],
)
def test_counts_from_a_hash(stored: dict[object, object], expected: SessionCounts) -> None:
    """Whatever the hash holds, reading it never fails."""
    assert SessionCounts.from_mapping(stored) == expected


async def test_without_redis_the_process_counts_alike() -> None:
    """The in-process table gives the same answers on one process."""
    local = SessionCounters(None, secret_key=TEST_SECRET)
    await local.add("conv-1", recommendations_shown=3)
    await local.add("conv-1", recommendations_accepted=1)
    assert await local.read("conv-1") == SessionCounts(
        recommendations_shown=3, recommendations_accepted=1
    )


async def test_the_local_table_forgets_after_the_ttl_and_stays_bounded() -> None:
    """LRU with a TTL: old conversations expire, the least recently used go first."""
    clock = FakeClock()
    local = SessionCounters(None, secret_key=TEST_SECRET, ttl_s=60, max_local=2, clock=clock)
    await local.add("a", categories_asked=1)
    await local.add("b", categories_asked=1)
    assert (await local.read("a")).categories_asked == 1  # 'a' is now the most recent
    await local.add("c", categories_asked=1)  # evicts 'b'
    assert (await local.read("b")).categories_asked == 0
    assert (await local.read("a")).categories_asked == 1
    clock.now += 61
    assert (await local.read("c")).categories_asked == 0


async def test_a_redis_outage_falls_back_to_what_this_process_saw(
    counters: SessionCounters, server: fakeredis.FakeServer
) -> None:
    """Redis down: reads answer from the mirror, updates are kept there, nothing raises."""
    await counters.add("conv", recommendations_shown=2)
    server.connected = False
    await counters.add("conv", recommendations_rejected=1)
    assert await counters.read("conv") == SessionCounts(
        recommendations_shown=2, recommendations_rejected=1
    )


@pytest.mark.redis
async def test_counters_in_a_real_redis() -> None:
    """HINCRBY pipeline and TTL against the real server."""
    url = os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        pytest.skip(f"{REDIS_URL_VARIABLE} is not set: Redis suites skipped")
    client = redis_asyncio.from_url(url)
    counters = SessionCounters(
        client,
        secret_key=TEST_SECRET,
        breaker=RedisBreaker("test", timeout_s=1.0),
        ttl_s=120,
    )
    sender = f"conv-{uuid.uuid4().hex}"
    try:
        await counters.add(sender, recommendations_shown=3)
        await counters.add(sender, recommendations_shown=1, recommendations_accepted=1)
        # another process (a fresh counters object) sees the same counts
        other = SessionCounters(
            client, secret_key=TEST_SECRET, breaker=RedisBreaker("test", timeout_s=1.0)
        )
        assert await other.read(sender) == SessionCounts(
            recommendations_shown=4, recommendations_accepted=1
        )
        assert 0 < await client.ttl(counters.key_for(sender)) <= 120
    finally:
        await client.delete(counters.key_for(sender))
        await client.aclose()
