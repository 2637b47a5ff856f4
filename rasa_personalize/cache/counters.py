"""Per-conversation counters (recommendations shown, accepted, rejected; categories asked).

The decision rules read them as ``session_*`` facts ("after two rejections, try a
discount"). They live in a Redis hash per conversation, keyed by an HMAC of the sender id
(never the raw id), and expire a day after the last update. Without Redis, or while it is
unavailable, a bounded in-process table (LRU with the same TTL) keeps them, so one process
behaves the same; every update is mirrored there so an outage keeps what this process saw.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Final

from rasa_personalize.cache.breaker import RedisBreaker, RedisUnavailableError
from rasa_personalize.cache.tracking import ABSENT, ChangeFeed, KeptCopies

if TYPE_CHECKING:
    from redis import asyncio as redis_asyncio

KEY_PREFIX: Final = "personalize:session:"
# A day after the last update: long enough for one shopping conversation with pauses.
DEFAULT_TTL_S: Final = 24 * 3600
MAX_LOCAL_CONVERSATIONS: Final = 10_000


@dataclass(frozen=True)
class SessionCounts:
    """What happened in one conversation so far."""

    # Products the assistant recommended (one per product shown).
    recommendations_shown: int = 0
    # Answers to shown recommendations: yes (affirm) and no (deny), one per answer.
    recommendations_accepted: int = 0
    recommendations_rejected: int = 0
    # Messages in which the customer asked for a category.
    categories_asked: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[Any, Any]) -> SessionCounts:
        """Counts from a Redis hash (bytes or str names and values); junk reads as 0."""
        counts: dict[str, int] = {}
        for name, raw in values.items():
            key = name.decode() if isinstance(name, bytes) else str(name)
            if key in COUNTER_NAMES:
                try:
                    counts[key] = max(0, int(raw))
                except (TypeError, ValueError):
                    continue
        return cls(**counts)


COUNTER_NAMES: Final = tuple(item.name for item in fields(SessionCounts))


@functools.lru_cache(maxsize=16_384)  # asked on every turn of the same conversations
def conversation_key(secret_key: str, sender_id: str) -> str:
    """The pseudonymous key of a conversation: HMAC-SHA256 of its sender id.

    Domain-separated from customer keys, so a conversation key never equals the customer
    key of someone whose external id happens to be the same string.
    """
    message = b"conversation\x00" + sender_id.encode()
    # One-shot hmac.digest: the hot path computes this on every turn.
    return hmac.digest(secret_key.encode(), message, "sha256").hex()


class _LocalCounters:
    """A bounded LRU of counts with a TTL (no Redis, or Redis unavailable)."""

    def __init__(self, ttl_s: float, capacity: int, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, dict[str, int]]] = OrderedDict()

    def read(self, key: str) -> dict[str, int]:
        entry = self._entries.get(key)
        if entry is None:
            return {}
        expires_at, counts = entry
        if expires_at <= self._clock():
            del self._entries[key]
            return {}
        self._entries.move_to_end(key)
        return dict(counts)

    def add(self, key: str, increments: Mapping[str, int]) -> None:
        counts = self.read(key)
        for name, amount in increments.items():
            counts[name] = counts.get(name, 0) + amount
        self._entries[key] = (self._clock() + self._ttl_s, counts)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


class SessionCounters:
    """Reads and increments conversation counters; never raises for Redis.

    Args:
        client: A redis.asyncio client, or None for the in-process table only.
        secret_key: The HMAC key (``PERSONALIZE_SECRET_KEY``).
        breaker: The breaker of ``client``'s Redis (required with a client).
        ttl_s: How long counts live after their last update.
        max_local: Conversations the in-process table keeps (least recently used go).
        clock: Monotonic seconds, for the in-process TTL (tests pass a fake one).
        kept: Copies of Redis's counts, trusted while Redis pushes their changes (see
            :func:`watch_counters`); None: every read asks Redis.
    """

    def __init__(
        self,
        client: redis_asyncio.Redis | None,
        *,
        secret_key: str,
        breaker: RedisBreaker | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        max_local: int = MAX_LOCAL_CONVERSATIONS,
        clock: Callable[[], float] = time.monotonic,
        kept: KeptCopies[SessionCounts] | None = None,
    ) -> None:
        if client is not None and breaker is None:
            raise ValueError("a Redis client needs a breaker")
        self._client = client
        self._secret_key = secret_key
        self._breaker = breaker
        self.ttl_s = ttl_s
        self._local = _LocalCounters(ttl_s, max_local, clock)
        self._kept = kept

    def key_for(self, sender_id: str) -> str:
        """The Redis key of a conversation's counters."""
        return f"{KEY_PREFIX}{conversation_key(self._secret_key, sender_id)}"

    async def read(self, sender_id: str) -> SessionCounts:
        """The conversation's counts (zeros for a new conversation)."""
        key = self.key_for(sender_id)
        if self._client is not None and self._breaker is not None:
            kept = self._kept
            noted = 0
            if kept is not None:
                copy = kept.get(key)
                if copy is not ABSENT:
                    return copy
                noted = kept.note()
            try:
                values = await self._breaker.call(self._client.hgetall(key))
            except RedisUnavailableError:
                pass  # the in-process mirror answers
            else:
                counts = SessionCounts.from_mapping(values)
                if kept is not None:
                    kept.keep(key, counts, noted)
                return counts
        return SessionCounts.from_mapping(self._local.read(key))

    async def add(self, sender_id: str, **increments: int) -> None:
        """Add to the conversation's counters (names from :class:`SessionCounts`).

        Raises:
            ValueError: an unknown counter name (a bug, not a runtime condition).
        """
        unknown = set(increments) - set(COUNTER_NAMES)
        if unknown:
            raise ValueError(f"unknown session counters: {', '.join(sorted(unknown))}")
        changes = {name: amount for name, amount in increments.items() if amount}
        if not changes:
            return
        key = self.key_for(sender_id)
        self._local.add(key, changes)
        if self._client is None or self._breaker is None:
            return
        if self._kept is not None:
            self._kept.forget(key)
        # On failure the in-process mirror keeps the counts; the breaker logged the outage.
        with contextlib.suppress(RedisUnavailableError):
            await self._breaker.call(self._increment(self._client, key, changes))

    async def _increment(
        self, client: redis_asyncio.Redis, key: str, changes: Mapping[str, int]
    ) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for name, amount in changes.items():
                pipe.hincrby(key, name, amount)
            pipe.expire(key, int(self.ttl_s))
            await pipe.execute()


def watch_counters(feed: ChangeFeed, *, capacity: int) -> KeptCopies[SessionCounts]:
    """Copies of conversations' counts for :class:`SessionCounters`, dropped when ``feed``
    reports a change to their hash (any process's increment, expiry or deletion)."""
    kept: KeptCopies[SessionCounts] = KeptCopies(feed, capacity=capacity)

    def counts_changed(rest: str | None) -> None:
        kept.changed(KEY_PREFIX + rest if rest is not None else None)

    feed.watch(KEY_PREFIX, counts_changed)
    return kept
