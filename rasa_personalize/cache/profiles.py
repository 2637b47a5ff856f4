"""Customer snapshots cached in Redis (cache-aside), with invalidation a stale write cannot beat.

The hot path reads a customer's :class:`CustomerSnapshot` from Redis and falls back to SQL;
SQL answers are written back. The classic race of cache-aside is a reader that reads SQL,
then a writer that commits and invalidates, then the reader's write-back: the old state
would sit in the cache until its TTL. Two counters prevent that:

* a per-customer **version**: :meth:`ProfileCache.invalidate` increments it and deletes the
  entry. A reader notes the version *before* it reads SQL (:meth:`ProfileCache.lookup`), and
  :meth:`ProfileCache.store` writes only if the version is still the noted one, atomically
  (WATCH/MULTI: the write is aborted if the version changes between the check and the
  write). Writers must commit SQL first and invalidate second.
* a global **generation**: :meth:`ProfileCache.invalidate_all` replaces it (batch jobs that
  change many profiles: segmenting, tagging, profile rebuilds). Every entry carries the
  generation it was read under and counts only while that is the current one, so nothing
  has to be deleted. The generation is a random token, not a counter: if Redis evicts or
  loses it, a fresh token is drawn and every older entry is dead, never revived.

Keys hold the pseudonymous customer key (never a raw id), hash-tagged ``{key}`` so one
customer's entry and version share a Redis Cluster slot.

A server process may also keep copies of the snapshots it read (``kept``, see
:mod:`rasa_personalize.cache.tracking`): dropped the moment Redis pushes a bump of the
customer's version or a new generation, so they follow the same invalidations.

**When invalidation cannot reach Redis** it must not raise (the SQL write already
happened). The keys are remembered in this process and replayed as soon as Redis answers
again (before the process serves anything from the cache); until then this process reads
those customers from SQL. Other processes could still serve the stale entry, at most until
its TTL (``PERSONALIZE_PROFILE_CACHE_TTL_S``, default 10 minutes) or until the replay. If
too many keys pile up, a generation bump replaces them. A process that exits with
invalidations pending (a CLI job) cannot replay: :attr:`ProfileCache.pending` tells it to
warn.
"""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from rasa_personalize.cache.breaker import RedisBreaker, RedisUnavailableError
from rasa_personalize.cache.tracking import (
    ABSENT,
    ABSENT_TTL_S,
    COPY_TTL_S,
    ChangeFeed,
    KeptCopies,
)
from rasa_personalize.extras import require_redis
from rasa_personalize.metrics import count_cache
from rasa_personalize.settings import Settings
from rasa_personalize.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    PropensityRecord,
    SegmentRecord,
    TagRecord,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis as RedisClient

logger = logging.getLogger(__name__)

# Every key starts with this (a ProfileCache may be given another, e.g. per test).
NAMESPACE: Final = "personalize"
# Bumped when the stored document changes shape: older entries then read as misses.
SCHEMA: Final = 4  # 2: consent answers; 3: propensity scores; 4: chat intents and sessions
# "Not in the store" is cached too (new visitors are common), but briefly: a path that
# creates customers without invalidating would otherwise hide them for the full TTL.
NEGATIVE_TTL_S: Final = 60.0
# A version must outlive any reader that noted it (a reader takes at most the action
# budget); a day, refreshed on every invalidation, keeps the keys from piling up forever.
VERSION_TTL_S: Final = 24 * 3600
INVALIDATE_CHUNK: Final = 500
MAX_PENDING: Final = 10_000


def entry_key(customer_key: str, namespace: str = NAMESPACE) -> str:
    """The Redis key of one customer's cached snapshot."""
    return f"{namespace}:profile:{{{customer_key}}}"


def version_key(customer_key: str, namespace: str = NAMESPACE) -> str:
    """The Redis key of one customer's invalidation version."""
    return f"{namespace}:profile-version:{{{customer_key}}}"


def generation_key(namespace: str = NAMESPACE) -> str:
    """The Redis key of the global generation."""
    return f"{namespace}:profile-generation"


# -- serialisation: exact, JSON (never pickle: the cache is not trusted to run code) -----


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _required_time(value: Any) -> datetime:
    parsed = _parse_time(value)
    if parsed is None:
        raise ValueError("a required time is missing")
    return parsed


def snapshot_to_document(snapshot: CustomerSnapshot) -> dict[str, Any]:
    """A JSON-ready document that :func:`snapshot_from_document` turns back into an equal
    snapshot (unlike ``ProfileMetrics.to_document``, nothing is rounded)."""
    metrics = snapshot.metrics
    demographics = snapshot.demographics
    segment = snapshot.segment
    return {
        "customer_id": snapshot.customer_id,
        "created_at": _time(snapshot.created_at),
        "loyalty_tier": snapshot.loyalty_tier,
        "demographics": [
            demographics.age,
            demographics.gender,
            demographics.country,
            demographics.city,
        ],
        "attributes": dict(snapshot.attributes),
        "metrics": {
            "interaction_count": metrics.interaction_count,
            "view_count": metrics.view_count,
            "purchase_count": metrics.purchase_count,
            "total_spent": metrics.total_spent,
            "first_seen_at": _time(metrics.first_seen_at),
            "last_seen_at": _time(metrics.last_seen_at),
            "last_purchase_at": _time(metrics.last_purchase_at),
            "discounted_purchase_share": metrics.discounted_purchase_share,
            "favorite_category": metrics.favorite_category,
            "category_affinity": dict(metrics.category_affinity),
            "chat_message_count": metrics.chat_message_count,
            "intent_counts": dict(metrics.intent_counts),
            "session_count": metrics.session_count,
            "average_session_seconds": metrics.average_session_seconds,
            "propensity": {
                target: [record.score, record.band, record.model_version, _time(record.scored_at)]
                for target, record in metrics.propensity.items()
            },
        },
        "profile_version": snapshot.profile_version,
        "tags": [[t.tag, t.source, t.weight, _time(t.updated_at)] for t in snapshot.tags],
        "segment": (
            [
                segment.segment,
                segment.method,
                segment.model_version,
                segment.score,
                _time(segment.assigned_at),
            ]
            if segment is not None
            else None
        ),
        "consent": dict(snapshot.consent),
    }


def snapshot_from_document(document: Mapping[str, Any]) -> CustomerSnapshot:
    """The snapshot a :func:`snapshot_to_document` document describes.

    Raises:
        KeyError, TypeError, ValueError: the document is not one of ours.
    """
    metrics = document["metrics"]
    age, gender, country, city = document["demographics"]
    segment = document["segment"]
    return CustomerSnapshot(
        customer_id=int(document["customer_id"]),
        created_at=_required_time(document["created_at"]),
        loyalty_tier=str(document["loyalty_tier"]),
        demographics=Demographics(age=age, gender=gender, country=country, city=city),
        attributes=dict(document["attributes"]),
        metrics=ProfileMetrics(
            interaction_count=metrics["interaction_count"],
            view_count=metrics["view_count"],
            purchase_count=metrics["purchase_count"],
            total_spent=metrics["total_spent"],
            first_seen_at=_parse_time(metrics["first_seen_at"]),
            last_seen_at=_parse_time(metrics["last_seen_at"]),
            last_purchase_at=_parse_time(metrics["last_purchase_at"]),
            discounted_purchase_share=metrics["discounted_purchase_share"],
            favorite_category=metrics["favorite_category"],
            category_affinity=dict(metrics["category_affinity"]),
            chat_message_count=int(metrics["chat_message_count"]),
            intent_counts={str(k): int(v) for k, v in metrics["intent_counts"].items()},
            session_count=int(metrics["session_count"]),
            average_session_seconds=metrics["average_session_seconds"],
            propensity={
                str(target): PropensityRecord(
                    float(score), str(band), str(version), _parse_time(scored_at)
                )
                for target, (score, band, version, scored_at) in metrics["propensity"].items()
            },
        ),
        profile_version=int(document["profile_version"]),
        tags=tuple(
            TagRecord(tag, source, weight, _required_time(updated_at))
            for tag, source, weight, updated_at in document["tags"]
        ),
        segment=(
            SegmentRecord(
                str(segment[0]),
                str(segment[1]),
                str(segment[2]),
                segment[3],
                _required_time(segment[4]),
            )
            if segment is not None
            else None
        ),
        consent={str(purpose): bool(granted) for purpose, granted in document["consent"].items()},
    )


def encode_entry(generation: str, snapshot: CustomerSnapshot | None) -> str:
    """The cached value: schema, generation it was read under, and the snapshot (or null)."""
    document = {
        "schema": SCHEMA,
        "generation": generation,
        "snapshot": snapshot_to_document(snapshot) if snapshot is not None else None,
    }
    return json.dumps(document, separators=(",", ":"))


def decode_entry(raw: bytes | str) -> tuple[str, CustomerSnapshot | None] | None:
    """(generation, snapshot) of a cached value; None for a foreign or corrupt value."""
    try:
        document = json.loads(raw)
        if document["schema"] != SCHEMA:
            return None
        body = document["snapshot"]
        snapshot = snapshot_from_document(body) if body is not None else None
        return str(document["generation"]), snapshot
    except (ValueError, KeyError, TypeError, IndexError):
        return None


# -- the cache ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedProfile:
    """A hit: the cached answer (``None``: the store has no such customer)."""

    snapshot: CustomerSnapshot | None


@dataclass(frozen=True)
class ProfileTicket:
    """A miss: the versions noted before reading SQL, handed back to :meth:`ProfileCache.store`."""

    customer_key: str
    version: bytes | None
    generation: str
    # The change feed's number when the lookup began (see ``cache.tracking``).
    noted: int = 0


# None: the cache cannot help now (Redis down, or an invalidation pending): read SQL only.
ProfileLookup = CachedProfile | ProfileTicket | None


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


class ProfileCache:
    """Cache-aside customer snapshots in Redis, guarded by a :class:`RedisBreaker`.

    Every method gives up within the breaker's timeout and never raises for Redis: a slow
    or absent Redis costs one timeout, then the breaker answers "unavailable" at once and
    callers read SQL.

    Args:
        client: A redis.asyncio client (shared with other caches of the process).
        ttl_s: How long an entry may live (``profile_cache_ttl_s``).
        breaker: The breaker of ``client``'s Redis.
        max_pending: Failed invalidations remembered per key before a generation bump
            replaces them.
        namespace: The first part of every key.
        kept: Copies in this process, trusted while Redis pushes their changes (see
            :func:`watch_profiles`); None: every lookup asks Redis.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        ttl_s: float,
        breaker: RedisBreaker,
        max_pending: int = MAX_PENDING,
        namespace: str = NAMESPACE,
        kept: KeptCopies[CustomerSnapshot | None] | None = None,
    ) -> None:
        self._client = client
        self._kept = kept
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.breaker = breaker
        self._max_pending = max_pending
        # key -> sequence number of the failed invalidation (newest wins on replay).
        self._pending: dict[str, int] = {}
        self._pending_all: int | None = None
        self._sequence = itertools.count(1)
        self._replaying = False

    @property
    def pending(self) -> bool:
        """Whether some invalidation has not reached Redis yet."""
        return bool(self._pending) or self._pending_all is not None

    async def lookup(self, customer_key: str) -> ProfileLookup:
        """The cached snapshot, or a ticket to store the SQL answer under, or None.

        Call it *before* reading SQL: the ticket notes the versions the SQL read is
        compared against.
        """
        if self.pending:
            await self._replay()
            if customer_key in self._pending or self._pending_all is not None:
                count_cache("error")  # an invalidation Redis missed: the entry may be stale
                return None
        kept = self._kept
        noted = 0
        if kept is not None:
            copy = kept.get(customer_key)
            if copy is not ABSENT:
                count_cache("local")
                return CachedProfile(copy)
            noted = kept.note()
        try:
            generation, version, raw = await self.breaker.call(self._read(customer_key))
        except RedisUnavailableError:
            count_cache("error")
            return None
        current = _text(generation)
        if raw is not None:
            entry = decode_entry(raw)
            if entry is not None and entry[0] == current:
                count_cache("hit")
                if kept is not None:
                    kept.keep(customer_key, entry[1], noted, _copy_ttl(entry[1]))
                return CachedProfile(entry[1])
        count_cache("miss")
        return ProfileTicket(customer_key, version, current, noted)

    async def _read(self, customer_key: str) -> tuple[Any, Any, Any]:
        """(generation, the customer's version, their entry): two commands, one round trip.

        The version and the entry share a hash slot (the customer key is their hash tag),
        so one MGET reads both, on a Redis Cluster too.
        """
        generations = generation_key(self.namespace)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.get(generations)
            pipe.mget(
                version_key(customer_key, self.namespace), entry_key(customer_key, self.namespace)
            )
            generation, (version, raw) = await pipe.execute()
        if generation is None:
            # A missing generation (first use, eviction, flush) gets a fresh random token,
            # so entries from before can never count again. Rare: a second round trip.
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(generations, uuid.uuid4().hex, nx=True)
                pipe.get(generations)
                _, generation = await pipe.execute()
        return generation, version, raw

    async def store(self, ticket: ProfileTicket, snapshot: CustomerSnapshot | None) -> bool:
        """Cache the SQL answer read after ``ticket`` was issued, unless the customer was
        invalidated since (then the answer may be stale and is dropped). Returns whether
        it was stored."""
        if ticket.customer_key in self._pending or self._pending_all is not None:
            return False
        ttl_s = self.ttl_s if snapshot is not None else min(self.ttl_s, NEGATIVE_TTL_S)
        payload = encode_entry(ticket.generation, snapshot)
        try:
            stored = await self.breaker.call(self._compare_and_set(ticket, payload, ttl_s))
        except RedisUnavailableError:
            return False
        if stored and self._kept is not None:
            self._kept.keep(ticket.customer_key, snapshot, ticket.noted, _copy_ttl(snapshot))
        return stored

    async def _compare_and_set(self, ticket: ProfileTicket, payload: str, ttl_s: float) -> bool:
        from redis.exceptions import WatchError  # noqa: PLC0415  # loaded with the client

        versions = version_key(ticket.customer_key, self.namespace)
        async with self._client.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(versions)
                if await pipe.get(versions) != ticket.version:
                    return False  # invalidated after the ticket: our SQL read may be old
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
                pipe.set(
                    entry_key(ticket.customer_key, self.namespace),
                    payload,
                    px=max(1, int(ttl_s * 1000)),
                )
                await pipe.execute()
            except WatchError:
                return False  # invalidated between the check and the write
        return True

    async def invalidate(self, customer_keys: Iterable[str]) -> None:
        """Forget these customers' entries and outdate every read in flight. Never raises.

        Call it after the SQL transaction that changed them has committed. If Redis
        cannot be reached the keys are remembered and replayed later (module docstring).
        """
        wanted = list(dict.fromkeys(customer_keys))
        if not wanted:
            return
        if self._kept is not None:
            for key in wanted:
                self._kept.forget(key)
        if self.pending:
            await self._replay()
        done = 0
        try:
            for start in range(0, len(wanted), INVALIDATE_CHUNK):
                chunk = wanted[start : start + INVALIDATE_CHUNK]
                await self.breaker.call(self._bump_versions(chunk))
                done += len(chunk)
        except RedisUnavailableError:
            self._remember(wanted[done:])

    async def _bump_versions(self, keys: list[str]) -> None:
        # INCR before DEL, in one transaction: a reader that noted the old version cannot
        # write back after it (its WATCH sees the INCR), and no entry survives.
        async with self._client.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(version_key(key, self.namespace))
                pipe.expire(version_key(key, self.namespace), VERSION_TTL_S)
                pipe.delete(entry_key(key, self.namespace))
            await pipe.execute()

    async def invalidate_all(self) -> bool:
        """Outdate every cached snapshot at once (after a batch job). Never raises.

        Returns whether Redis was reached; if not, the bump is replayed later by this
        process (a CLI job about to exit should warn instead, see :attr:`pending`).
        """
        sequence = next(self._sequence)
        if self._kept is not None:
            self._kept.forget(None)
        try:
            await self.breaker.call(
                self._client.set(generation_key(self.namespace), uuid.uuid4().hex)
            )
        except RedisUnavailableError:
            self._pending_all = sequence
            logger.warning(
                "Could not invalidate the profile cache; cached profiles may be stale for "
                "up to %.0f s unless Redis answers again first.",
                self.ttl_s,
            )
            return False
        self._settled_all(sequence)
        return True

    def _settled_all(self, sequence: int) -> None:
        # A new generation outdates every entry, so older per-key debts are paid too.
        if self._pending_all is not None and self._pending_all <= sequence:
            self._pending_all = None
        self._pending = {k: s for k, s in self._pending.items() if s > sequence}

    def _remember(self, keys: list[str]) -> None:
        if not self.pending:
            logger.warning(
                "Could not invalidate %d cached profile(s); replaying when Redis answers "
                "(this process reads them from SQL meanwhile).",
                len(keys),
            )
        sequence = next(self._sequence)
        for key in keys:
            self._pending[key] = sequence
        if len(self._pending) > self._max_pending:
            # Too many to replay one by one: one generation bump covers them all.
            self._pending.clear()
            self._pending_all = sequence

    async def _replay(self) -> None:
        """Send pending invalidations if the breaker lets us try; keep what still fails."""
        if self._replaying or self.breaker.is_open:
            return
        self._replaying = True
        try:
            if self._pending_all is not None:
                sequence = self._pending_all
                await self.breaker.call(
                    self._client.set(generation_key(self.namespace), uuid.uuid4().hex)
                )
                self._settled_all(sequence)
            owed = list(self._pending.items())
            for start in range(0, len(owed), INVALIDATE_CHUNK):
                chunk = owed[start : start + INVALIDATE_CHUNK]
                await self.breaker.call(self._bump_versions([key for key, _ in chunk]))
                for key, sequence in chunk:
                    if self._pending.get(key) == sequence:
                        del self._pending[key]
            logger.info("Replayed the profile cache invalidations that had failed.")
        except RedisUnavailableError:
            pass  # still down: the breaker logged it; try again later
        finally:
            self._replaying = False

    async def close(self) -> None:
        """Close the client's connection pool."""
        await self._client.aclose()


def _copy_ttl(snapshot: CustomerSnapshot | None) -> float:
    return COPY_TTL_S if snapshot is not None else ABSENT_TTL_S


def watch_profiles(
    feed: ChangeFeed, *, capacity: int, namespace: str = NAMESPACE
) -> KeptCopies[CustomerSnapshot | None]:
    """Copies of snapshots for a :class:`ProfileCache`, dropped when ``feed`` reports a
    version bump of their customer (a writer's invalidation) or a new generation."""
    kept: KeptCopies[CustomerSnapshot | None] = KeptCopies(feed, capacity=capacity)
    versions = version_key("", namespace).removesuffix("{}")
    generation = generation_key(namespace)

    def version_changed(rest: str | None) -> None:
        # "{customer key}" after the prefix; None: everything may have changed.
        kept.changed(rest[1:-1] if rest is not None else None)

    def generation_changed(rest: str | None) -> None:
        if rest is None or rest == "":
            kept.changed(None)

    feed.watch(versions, version_changed)
    feed.watch(generation, generation_changed)
    return kept


def redis_client(url: str, timeout_s: float) -> RedisClient:
    """A redis.asyncio client with socket timeouts (connects on first use, not here).

    Raises:
        MissingExtraError: the ``redis`` extra is not installed.
    """
    require_redis()
    # Imported only when Redis is configured: it is an extra.
    from redis import asyncio as redis_asyncio  # noqa: PLC0415

    return redis_asyncio.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def profile_cache_for(settings: Settings, *, timeout_s: float | None = None) -> ProfileCache | None:
    """A profile cache with its own client and breaker, or None when no Redis is configured.

    For processes other than the action server (CLI jobs, the event worker); batch jobs
    pass a longer ``timeout_s`` than the hot path's ``redis_timeout_s``.
    """
    if not settings.redis_url:
        return None
    timeout = timeout_s or settings.redis_timeout_s
    breaker = RedisBreaker(
        "profile cache", timeout_s=timeout, retry_after_s=settings.redis_retry_after_s
    )
    return ProfileCache(
        redis_client(settings.redis_url, timeout),
        ttl_s=settings.profile_cache_ttl_s,
        breaker=breaker,
    )


async def forget_profiles(
    client: RedisClient, customer_keys: Iterable[str], *, namespace: str = NAMESPACE
) -> int:
    """Erase customers from the cache: their entries and versions, then a generation bump.

    For erasure, after the SQL rows are gone. Unlike :meth:`ProfileCache.invalidate` it
    leaves no key naming the customer; the new generation outdates any read that noted
    the old state before the erasure (its write-back is stored under the old generation
    and reads as a miss), at the price of every cached profile being read from SQL once.

    Returns:
        How many keys were deleted. Redis errors propagate: the caller reports them.
    """
    keys = list(dict.fromkeys(customer_keys))
    if not keys:
        return 0
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.delete(entry_key(key, namespace), version_key(key, namespace))
        pipe.set(generation_key(namespace), uuid.uuid4().hex)
        results = await pipe.execute()
    return sum(int(count) for count in results[:-1])
