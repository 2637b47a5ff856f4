"""One circuit breaker per Redis connection: bounded waits, then a pause before retrying.

Redis is optional and derived (docs/operations.md), so a slow or absent Redis must cost a
conversation at most one short timeout: after a failure the breaker stays open for
``retry_after_s`` and every call fails at once (callers fall back to SQL), then one call
tries again and its success closes the breaker. Outages are logged once, by error class
only (a message may quote a key).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.metrics import breaker_changed
from rasa_personalize.tracing import REDIS_SPAN, traced

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RedisUnavailableError(PersonalizeError):
    """Redis failed, timed out, or the breaker is open: use the SQL path."""


class RedisBreaker:
    """Guards awaitables that talk to Redis with a timeout and an open/closed state.

    Args:
        name: What this Redis serves ("cache", "event stream"), for the log lines.
        timeout_s: The longest a guarded call may take.
        retry_after_s: How long the breaker stays open after a failure.
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        name: str,
        *,
        timeout_s: float,
        retry_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._open_until = 0.0
        self._failing = False

    @property
    def is_open(self) -> bool:
        """Whether calls are being refused without trying Redis."""
        return self._clock() < self._open_until

    @traced(REDIS_SPAN, lambda breaker, *_: {"personalize.redis.target": breaker.name})
    async def call(self, work: Awaitable[T]) -> T:
        """Await ``work`` within the timeout.

        Raises:
            RedisUnavailableError: the breaker is open, Redis failed, or it was too slow.
        """
        if self.is_open:
            if inspect.iscoroutine(work):
                work.close()  # never started: nothing to wait for
            raise RedisUnavailableError(f"{self.name}: Redis marked unavailable")
        # Only a configured Redis gets here, so redis is installed; a process without
        # Redis never imports it (it is an extra).
        from redis.exceptions import RedisError  # noqa: PLC0415

        try:
            result = await asyncio.wait_for(work, timeout=self.timeout_s)
        except (asyncio.TimeoutError, RedisError, OSError) as error:
            self.record_failure(error)
            raise RedisUnavailableError(f"{self.name}: Redis unavailable") from error
        self.record_success()
        return result

    def record_failure(self, error: BaseException) -> None:
        """Open the breaker (for callers that talk to Redis without :meth:`call`)."""
        self._open_until = self._clock() + self.retry_after_s
        if not self._failing:
            breaker_changed("redis", self, is_open=True)
            logger.warning(
                "Redis (%s) is unavailable (%s); using SQL for %g s before retrying.",
                self.name,
                type(error).__name__,
                self.retry_after_s,
            )
        self._failing = True

    def record_success(self) -> None:
        """Close the breaker after a call that worked."""
        if self._failing:
            breaker_changed("redis", self, is_open=False)
            logger.info("Redis (%s) answers again.", self.name)
        self._failing = False
        self._open_until = 0.0
