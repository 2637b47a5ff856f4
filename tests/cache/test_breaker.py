"""The Redis circuit breaker: bounded waits, open for a while, closed by a success."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from rasa_personalize.cache.breaker import RedisBreaker, RedisUnavailableError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def fails() -> int:
    raise RedisConnectionError("connection refused")


async def answers() -> int:
    return 42


async def hangs() -> int:
    await asyncio.sleep(10)
    return 0


async def test_a_failure_opens_the_breaker_until_the_pause_is_over() -> None:
    clock = Clock()
    breaker = RedisBreaker("test", timeout_s=0.1, retry_after_s=5.0, clock=clock)
    with pytest.raises(RedisUnavailableError):
        await breaker.call(fails())
    assert breaker.is_open

    calls: list[int] = []

    async def counted() -> int:
        calls.append(1)
        return 1

    with pytest.raises(RedisUnavailableError):
        await breaker.call(counted())
    assert calls == []  # refused without trying

    clock.now += 5.1
    assert await breaker.call(answers()) == 42
    assert not breaker.is_open


async def test_a_slow_redis_counts_as_down() -> None:
    breaker = RedisBreaker("test", timeout_s=0.05, retry_after_s=1.0)
    with pytest.raises(RedisUnavailableError):
        await breaker.call(hangs())
    assert breaker.is_open


async def test_one_warning_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    breaker = RedisBreaker("cache", timeout_s=0.1, retry_after_s=0.0, clock=clock)
    for _ in range(3):
        with pytest.raises(RedisUnavailableError):
            await breaker.call(fails())
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "ConnectionError" in warnings[0].getMessage()
    assert "refused" not in warnings[0].getMessage()
