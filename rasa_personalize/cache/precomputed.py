"""Precomputed recommendations mirrored in Redis, so the hot path reads them with one GET.

Keyed by the pseudonymous customer key (never a raw id), written by ``personalize train
--precompute`` next to the SQL table, and read in parallel with the customer's SQL reads.
Any Redis error or timeout reads as "not cached": the SQL table still answers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from rasa_personalize.extras import require_redis
from rasa_personalize.tracing import REDIS_SPAN, traced

if TYPE_CHECKING:
    from redis.asyncio import Redis as RedisClient

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "personalize:precomputed:"
# Items precomputed per customer by `personalize train --precompute`: more than the
# recommendation pool (rasa_personalize.recommend.reranking), so that a list serves it.
PRECOMPUTE_DEPTH: Final = 50
# Lists outlive a missed training run or two, not a forgotten deployment.
TIME_TO_LIVE_S: Final = 7 * 24 * 3600


def cache_key(customer_key: str) -> str:
    """The Redis key of one customer's list."""
    return f"{KEY_PREFIX}{customer_key}"


class PrecomputedCache:
    """Reads and writes precomputed lists in Redis, with short timeouts."""

    def __init__(self, url: str, *, timeout_s: float = 0.2) -> None:
        """A client for ``url`` (connects on first use).

        Raises:
            MissingExtraError: the ``redis`` extra is not installed.
        """
        require_redis()
        from redis import asyncio as redis_asyncio  # noqa: PLC0415  # an extra: only when configured

        self._client = redis_asyncio.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._failing = False

    async def write(
        self, lists: Sequence[tuple[str, list[list[object]]]], model_version: str
    ) -> int:
        """Store each customer's list under their key; returns how many were written."""
        written = 0
        for start in range(0, len(lists), 1_000):
            async with self._client.pipeline(transaction=False) as pipe:
                for key, items in lists[start : start + 1_000]:
                    payload = json.dumps({"version": model_version, "items": items})
                    pipe.set(cache_key(key), payload, ex=TIME_TO_LIVE_S)
                await pipe.execute()
            written += len(lists[start : start + 1_000])
        return written

    @traced(REDIS_SPAN, {"personalize.redis.target": "precomputed recommendations"})
    async def read(self, customer_key: str) -> tuple[tuple[tuple[str, float], ...], str] | None:
        """(items, model version) for a customer, or None when absent or Redis fails."""
        from redis.exceptions import RedisError  # noqa: PLC0415  # loaded with the client

        try:
            raw = await self._client.get(cache_key(customer_key))
        except (RedisError, OSError) as error:
            if not self._failing:
                logger.warning("Redis unavailable (%s): reading SQL instead.", type(error).__name__)
            self._failing = True
            return None
        self._failing = False
        if raw is None:
            return None
        try:
            document = json.loads(raw)
            items = tuple((str(sku), float(score)) for sku, score in document["items"])
            return items, str(document["version"])
        except (ValueError, KeyError, TypeError):
            return None  # a foreign or corrupt value: ignore it, SQL answers

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


async def delete_precomputed(client: RedisClient, customer_keys: Iterable[str]) -> int:
    """Delete these customers' lists (erasure); returns how many keys existed.

    Redis errors propagate: the caller reports them.
    """
    keys = [cache_key(key) for key in dict.fromkeys(customer_keys)]
    if not keys:
        return 0
    return int(await client.delete(*keys))
