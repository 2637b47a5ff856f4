"""``personalize worker``: events from the Redis Stream into SQL, in batches.

Delivery is at least once, the effect exactly once: a batch is acknowledged only after
its SQL transaction committed, and storing is idempotent by event id, so a worker killed
between the commit and the XACK costs a redelivery, never a duplicate row.

Each step reads, in this order:

1. its own pending messages (after a failed batch, or when restarted under the same
   consumer name), so nothing it was handed is forgotten;
2. messages other consumers were handed but left idle for ``claim_idle_ms`` (a worker
   that died), taken over with XAUTOCLAIM;
3. new messages, blocking for at most ``block_ms`` so a stop request is seen quickly.

Behavioural metrics and rule tags are refreshed per customer, not per event: a stored
batch marks its customers "dirty" in a Redis sorted set (in the same MULTI as its XACK),
and every ``refresh_every_s`` one transaction recomputes the metrics and tags of all
dirty customers, then invalidates their cached profiles. Metrics and tag features come
from running totals that each refresh brings up to date with the customers' new
interactions only (:mod:`rasa_personalize.store.totals`), so a refresh costs what the
new events cost, however long the customers' histories. A customer with 50 events in a
second costs one refresh, not 50. The set lives in Redis, so a worker killed before its
refresh leaves the marks to the next one; a mark is removed only if no newer batch set it
again meanwhile (each batch's marks carry a version), so a refresh that read the store
before a newer batch committed never clears that batch's mark. When more customers wait
than one refresh takes (``refresh_chunk``), those whose first unrefreshed event was stored
earliest go first: a customer with events every second keeps its place in the queue, so
under a sustained peak every customer's wait is bounded by the refresh rate, not by a
lull. (Workers from before that order clear marks by their first version: stop them
before starting these.)

Redis errors (down, restarted, slow) and store errors back off and retry; the worker
never exits because a dependency is away, and resumes when it returns. A batch the store
refuses while it answers otherwise holds a message it cannot take: the batch is stored
again message by message, the good ones are acknowledged, and each refused one counts a
failure (in Redis, so restarts do not reset it). After ``max_deliveries`` failures it goes
to the dead letters (:mod:`rasa_personalize.events.dead_letters`) and the stream moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rasa_personalize.errors import MissingExtraError
from rasa_personalize.events import ingest
from rasa_personalize.events.dead_letters import bury, failure_counts_key
from rasa_personalize.events.stream import (
    EVENTS_PER_MESSAGE,
    GROUP,
    MalformedMessageError,
    decode_events,
    ensure_group,
)
from rasa_personalize.events.validation import ValidEvent
from rasa_personalize.metrics import count_events, observe_worker_batch
from rasa_personalize.privacy.consent import ConsentDefault
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.segments.tags import apply_tag_rules, counted_kinds
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.profiles import fold_profile_metrics
from rasa_personalize.store.types import SessionFactory

try:
    from redis import asyncio as redis_asyncio
    from redis.exceptions import RedisError, ResponseError
except ImportError as missing:  # the worker only reads the Redis stream: say which extra
    raise MissingExtraError("personalize worker", "redis") from missing

logger = logging.getLogger(__name__)

# Consumers that have been idle this long and hold nothing are removed from the group.
FORGET_CONSUMERS_AFTER_MS: Final = 10 * 60 * 1000
HOUSEKEEPING_EVERY_S: Final = 60.0
MAX_BACKOFF_S: Final = 10.0
# Customers refreshed per transaction, those waiting longest first. Under a sustained
# peak every customer is dirty again by the time its refresh commits: in chunks, the
# longest-waiting customers' metrics and tags commit a chunk's time after they are
# taken, not after everyone's (measured at 5,000 events/s over 5,000 customers, tables
# analyzed while they grew: p99 from event to tags 3.8 s in one chunk of 5,000, 1.8 s in
# chunks of 500).
REFRESH_CHUNK: Final = 500
# A claim on customers being refreshed lapses after this long, so that the customers of
# a worker stopped mid-refresh are refreshed by another. Longer than a refresh takes; a
# slower one only lets a second worker repeat some of its work.
CLAIM_LEASE_MS: Final = 60_000
# Refreshes triggered by a drained stream come at most this often.
MIN_REFRESH_GAP_S: Final = 0.05

# KEYS: dirty set, version counter, latest versions. ARGV: customer ids. One version per
# batch. The set's score is the version of a customer's first mark since its last
# refresh (NX), so refreshes take customers in the order their first unrefreshed event
# was stored: a customer with new events every second keeps its place instead of moving
# behind everyone else for ever. The hash holds each customer's newest version.
_MARK_DIRTY: Final = """
local version = redis.call('INCR', KEYS[2])
for _, id in ipairs(ARGV) do
  redis.call('ZADD', KEYS[1], 'NX', version, id)
  redis.call('HSET', KEYS[3], id, version)
end
return version
"""
# KEYS: dirty set, latest versions, claims. ARGV: the version counter when the marks
# were read, then customer ids. Releases the claims; removes a mark only if no batch has
# marked the customer again since (a newer version). The set's own score counts too:
# marks written before the hash existed carry their newest version there.
_CLEAR_DIRTY: Final = """
local read = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[3], ARGV[i])
  local first = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if first then
    local latest = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or first)
    if math.max(latest, tonumber(first)) <= read then
      redis.call('ZREM', KEYS[1], ARGV[i])
      redis.call('HDEL', KEYS[2], ARGV[i])
      removed = removed + 1
    end
  end
end
return removed
"""

# KEYS: dirty set, claims, version counter. ARGV: chunk size, now (ms), lease (ms).
# Claims up to a chunk of the longest-waiting customers that no other worker is
# refreshing (claims past their lease are a stopped worker's, taken over), and returns
# the version counter with them: several workers share the refresh instead of each
# recomputing the same customers one after the other behind their row locks.
_CLAIM_DIRTY: Final = """
local chunk, now, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local claimed, start = {}, 0
while #claimed < chunk do
  local page = redis.call('ZRANGE', KEYS[1], start, start + chunk - 1)
  if #page == 0 then break end
  for _, id in ipairs(page) do
    if #claimed < chunk and not redis.call('ZSCORE', KEYS[2], id) then
      claimed[#claimed + 1] = id
    end
  end
  start = start + chunk
end
for _, id in ipairs(claimed) do redis.call('ZADD', KEYS[2], now + lease, id) end
return {redis.call('GET', KEYS[3]) or '0', claimed}
"""

Message = tuple[str, dict[Any, Any]]
OnStored = Callable[[frozenset[str]], Awaitable[None]]
# A job run beside the worker: it returns once the event it is given is set.
Periodic = Callable[[asyncio.Event], Awaitable[None]]


def tune_garbage_collector() -> None:
    """Fewer, cheaper garbage collections for a batch process.

    A refresh makes hundreds of thousands of short-lived objects (rows, documents,
    totals), none in reference cycles; at the default threshold (a collection every 700
    allocations) the collector took about a third of a refresh's CPU in a probe. What the
    process holds after start-up lives as long as it does, so it leaves later collections
    (freeze), and the youngest generation is collected every 50,000 allocations.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def default_consumer_name() -> str:
    """host-pid: unique per process, so a restarted worker claims its predecessor's work."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker reads the stream."""

    # Events per SQL transaction at most, in whole stream messages (each holds up to 100
    # events). Large: a worker behind on the stream stores fewer, larger batches, and
    # each statement's cost spreads over more events (at 5,000 events/s on two cores,
    # 1,000 let the stream grow and 5,000 kept it bounded).
    batch_size: int = 5_000
    block_ms: int = 1_000
    # A consumer silent this long is taken for dead and its pending messages claimed.
    claim_idle_ms: int = 30_000
    consumer: str = field(default_factory=default_consumer_name)
    # Stop once the stream is drained and nothing is pending (jobs, tests, benchmarks).
    exit_when_idle: bool = False
    retry_delay_s: float = 0.5
    # How often metrics and tags of customers with new events are recomputed.
    refresh_every_s: float = 1.0
    # Customers refreshed per transaction, the longest-waiting first.
    refresh_chunk: int = REFRESH_CHUNK
    # Store failures of one message before it goes to the dead letters.
    max_deliveries: int = 5

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.block_ms < 1:
            raise ValueError("block_ms must be at least 1")
        if self.claim_idle_ms < 0:
            raise ValueError("claim_idle_ms must not be negative")
        if self.refresh_every_s < 0:
            raise ValueError("refresh_every_s must not be negative")
        if self.refresh_chunk < 1:
            raise ValueError("refresh_chunk must be at least 1")
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")


@dataclass
class WorkerStats:
    """Counters of one worker's run."""

    batches: int = 0
    stored: int = 0
    already_stored: int = 0
    dropped: int = 0
    # Events not stored: no tracking consent, or from before the customer's erasure.
    suppressed: int = 0
    malformed: int = 0
    claimed: int = 0
    refreshes: int = 0
    refreshed_customers: int = 0
    redis_errors: int = 0
    store_errors: int = 0
    refused: int = 0
    dead_letters: int = 0


class StreamWorker:
    """Reads the event stream with a consumer group and stores batches in SQL.

    Args:
        client: redis.asyncio client; its socket timeout must exceed ``block_ms``.
        stream: The stream's key.
        sessions: Session factory of the SQL store.
        options: Batch size, blocking, claiming, consumer name.
        tag_rules: Re-applied to the customers with new events at each refresh.
        on_stored: Called with the customer keys whose metrics and tags were refreshed
            (cache invalidation); its failures are logged, never retried.
        consent_default: ``PERSONALIZE_CONSENT_DEFAULT``: events of customers who never
            answered for tracking are stored only when it is ``granted``.
        periodic: Jobs that run beside the worker until it stops, each given an event
            that is set then (daily retention:
            ``rasa_personalize.privacy.retention.RetentionSchedule.run``).
    """

    def __init__(
        self,
        client: redis_asyncio.Redis,
        stream: str,
        sessions: SessionFactory,
        *,
        options: WorkerOptions | None = None,
        tag_rules: TagRules | None = None,
        on_stored: OnStored | None = None,
        consent_default: ConsentDefault = "granted",
        periodic: Sequence[Periodic] = (),
    ) -> None:
        self.client = client
        self.stream = stream
        self.sessions = sessions
        self.options = options or WorkerOptions()
        self.tag_rules = tag_rules
        # What the running totals keep so that count rules need not read interactions.
        self._counted = counted_kinds(tag_rules) if tag_rules is not None else ()
        self.on_stored = on_stored
        self.consent_default: ConsentDefault = consent_default
        self.periodic = tuple(periodic)
        self.stats = WorkerStats()
        self._group_ready = False
        # Read our own pending list first: after a restart under the same name, or a
        # batch that failed, those messages are ours to finish.
        self._own_pending = True
        self._claim_cursor = "0-0"
        self._failures = 0
        self._last_housekeeping = 0.0
        self.failures_key = failure_counts_key(stream)
        self.dirty_key = f"{stream}:dirty"
        self._dirty_version_key = f"{stream}:dirty-version"
        self._dirty_latest_key = f"{stream}:dirty-latest"
        self._dirty_claims_key = f"{stream}:dirty-claims"
        self._mark_dirty = client.register_script(_MARK_DIRTY)
        self._clear_dirty = client.register_script(_CLEAR_DIRTY)
        self._claim_dirty = client.register_script(_CLAIM_DIRTY)
        self._rules_checked = False
        self._messages_per_read = max(1, self.options.batch_size // EVENTS_PER_MESSAGE)
        # Set when a stored batch emptied the stream: the refresh need not wait its turn.
        self._caught_up = asyncio.Event()

    async def run(self, stop: asyncio.Event | None = None) -> WorkerStats:
        """Work until ``stop`` is set (or, with ``exit_when_idle``, the stream is drained).

        Storing and refreshing run side by side (two transactions at a time): the store
        is busy with one while Python prepares the other. They do not block each other:
        the refresh locks customer rows FOR NO KEY UPDATE, which new interactions'
        foreign keys (KEY SHARE) do not wait for.
        """
        stop = stop or asyncio.Event()
        logger.info("Worker %s reading %s.", self.options.consumer, self.stream)
        storing_done = asyncio.Event()
        refresher = asyncio.create_task(self._refresh_until(storing_done))
        background: list[asyncio.Future[None]] = [
            asyncio.ensure_future(job(storing_done)) for job in self.periodic
        ]
        try:
            while not stop.is_set() and not refresher.done():
                handled = await self.step()
                if handled is None:
                    await _sleep_or_stop(stop, self._backoff())
                elif handled == 0 and self.options.exit_when_idle and await self._drained():
                    break
        finally:
            storing_done.set()
            # Stopping: refresh what this worker marked, rather than leave it to the next.
            await refresher
            await asyncio.gather(*background)
        return self.stats

    async def _refresh_until(self, storing_done: asyncio.Event) -> None:
        """Refresh dirty customers until storing stops, then once more.

        A refresh follows at once after a full chunk; otherwise after ``refresh_every_s``,
        or as soon as a stored batch has emptied the stream: while events pour in,
        refreshes gather many batches' customers, and when the worker has caught up,
        metrics and tags follow the last events without waiting out the interval. While
        storing is behind, it gets at least as long as the last refresh took first, so
        that the stream stays bounded.
        """
        loop = asyncio.get_running_loop()
        while True:
            finished = storing_done.is_set()
            started = loop.time()
            self._caught_up.clear()
            marked = await self.refresh_dirty()
            if finished:
                return
            took = loop.time() - started
            if marked is None:
                await _sleep_or_stop(storing_done, self._backoff())
                continue
            if marked < self.options.refresh_chunk:
                await _wait_for_any((storing_done, self._caught_up), self.options.refresh_every_s)
            if not storing_done.is_set() and await self._stream_behind():
                # Storing fell behind (more than two reads wait): it gets at least as
                # long as the refresh took before the next one starts, or until it
                # empties the stream. Refreshes cost per customer, storing per event: a
                # refresh that followed on the heels of the last would take the event
                # loop from storing, the stream would grow, and the refreshes would find
                # fewer new events each time.
                self._caught_up.clear()
                waited_since = loop.time() - started - took
                owed = took - waited_since
                if owed > 0:
                    await _wait_for_any((storing_done, self._caught_up), owed)
            gap = MIN_REFRESH_GAP_S - (loop.time() - started)
            if gap > 0 and not storing_done.is_set():
                await _sleep_or_stop(storing_done, gap)

    async def step(self) -> int | None:
        """One batch: the events (and malformed messages) handled, None after a failure."""
        try:
            if not self._group_ready:
                await ensure_group(self.client, self.stream)
                self._group_ready = True
            await self._housekeeping()
            messages = await self._next_messages()
        except (RedisError, OSError) as error:
            self._redis_failed(error)
            return None
        if not messages:
            self._failures = 0
            return 0
        started = time.perf_counter()
        events, malformed = _decode(messages)
        try:
            async with self.sessions.begin() as session:
                # Metrics and tags are refreshed per customer by refresh_dirty().
                stored = await ingest.store_events(
                    session, events, refresh=False, consent_default=self.consent_default
                )
        except (DatabaseError, OSError) as error:
            self.stats.store_errors += 1
            self._own_pending = True
            if not await self._store_answers():
                self._failures += 1
                logger.warning(
                    "Storing a batch of %d events failed (%s); retrying.",
                    len(events),
                    type(error).__name__,
                )
                return None
            # The store answers but refused the batch: find the message it refuses.
            return await self._store_one_by_one(messages, type(error).__name__)
        if malformed:
            self.stats.malformed += len(malformed)
            logger.error("Dropped %d stream messages that hold no events.", len(malformed))
        acknowledged = await self._finish(
            [message_id for message_id, _ in messages], stored.customer_ids
        )
        self._count(stored)
        if not acknowledged:
            return None
        observe_worker_batch(time.perf_counter() - started)
        self._failures = 0
        if len(messages) < self._messages_per_read:
            self._caught_up.set()  # a short read: the stream held no more than this
        # Never 0 for a batch of messages, even when none held events: 0 means idle.
        return len(events) + len(malformed)

    async def _finish(self, message_ids: Sequence[str], customer_ids: Collection[int]) -> bool:
        """Acknowledge stored messages; False if Redis failed (they come back, already
        stored)."""
        try:
            await self._acknowledge(message_ids, customer_ids)
        except (RedisError, OSError) as error:
            self._redis_failed(error)
            return False
        return True

    def _count(self, stored: ingest.StoredEvents) -> None:
        self.stats.batches += 1
        self.stats.stored += len(stored.inserted)
        self.stats.already_stored += len(stored.already_stored)
        self.stats.dropped += len(stored.dropped)
        self.stats.suppressed += len(stored.suppressed)
        count_events(
            "worker",
            accepted=len(stored.inserted),
            duplicate=len(stored.already_stored),
            rejected=len(stored.dropped),
            suppressed=len(stored.suppressed),
        )
        if stored.dropped:
            logger.warning("%d events name skus removed from the catalogue.", len(stored.dropped))

    async def _store_answers(self) -> bool:
        """Whether the store takes connections: tells an outage (retry everything, count
        nothing) from a message it refuses."""
        try:
            async with self.sessions() as session:
                await session.connection()
        except (DatabaseError, OSError):
            return False
        return True

    async def _store_one_by_one(self, messages: Sequence[Message], batch_error: str) -> int | None:
        """Store each message in its own transaction after its batch failed.

        The stored ones are acknowledged; each refused one counts a failure and, at
        ``max_deliveries``, goes to the dead letters. None while refused messages stay
        pending (the worker backs off, then reads them again).
        """
        done: list[str] = []
        customer_ids: set[int] = set()
        refused: list[tuple[Message, str]] = []
        handled = 0
        for message in messages:
            try:
                events = decode_events(message[1])
            except MalformedMessageError:
                self.stats.malformed += 1
                logger.error("Dropped a stream message that holds no events.")
                done.append(message[0])
                handled += 1
                continue
            if len(messages) == 1:
                # The failed batch was this message alone: that was its attempt.
                refused.append((message, batch_error))
                continue
            try:
                async with self.sessions.begin() as session:
                    stored = await ingest.store_events(
                        session, events, refresh=False, consent_default=self.consent_default
                    )
            except (DatabaseError, OSError) as error:
                refused.append((message, type(error).__name__))
                continue
            done.append(message[0])
            customer_ids.update(stored.customer_ids)
            self._count(stored)
            handled += len(events)
        if done and not await self._finish(done, customer_ids):
            return None
        still_pending = False
        try:
            for (message_id, fields), reason in refused:
                if not await self._refused(message_id, fields, reason):
                    still_pending = True
        except (RedisError, OSError) as error:
            self._redis_failed(error)
            return None
        if still_pending:
            self._failures += 1
            return None
        self._failures = 0
        # Never 0: the messages were handled, even if only into the dead letters.
        return max(handled, 1)

    async def _refused(self, message_id: str, fields: dict[Any, Any], reason: str) -> bool:
        """Count a refusal of one message; at ``max_deliveries`` move it to the dead
        letters (True). Only the error's class is logged: its text may quote values."""
        self.stats.refused += 1
        failures = int(await self.client.hincrby(self.failures_key, message_id, 1))
        if failures < self.options.max_deliveries:
            logger.warning(
                "The store refused stream message %s (%s, failure %d of %d).",
                message_id,
                reason,
                failures,
                self.options.max_deliveries,
            )
            return False
        details: Any = await self.client.xpending_range(
            self.stream, GROUP, min=message_id, max=message_id, count=1
        )
        deliveries = int(details[0]["times_delivered"]) if details else failures
        await bury(
            self.client,
            self.stream,
            message_id,
            fields,
            deliveries=deliveries,
            failures=failures,
            reason=reason,
        )
        self.stats.dead_letters += 1
        logger.error(
            "Stream message %s moved to the dead letters after %d failures (%s); see "
            "`personalize worker dead-letters list`.",
            message_id,
            failures,
            reason,
        )
        return True

    async def _next_messages(self) -> list[Message]:
        options = self.options
        if self._own_pending:
            mine = await self._read("0", block=None)
            if mine:
                return mine
            self._own_pending = False
        claimed = await self._claim()
        if claimed:
            return claimed
        return await self._read(">", block=options.block_ms)

    async def _read(self, start: str, block: int | None) -> list[Message]:
        try:
            # RESP2 layout: [[stream, [(id, fields), ...]]] (the client's default protocol).
            response: Any = await self.client.xreadgroup(
                GROUP,
                self.options.consumer,
                {self.stream: start},
                count=self._messages_per_read,
                block=block,
            )
        except ResponseError as error:
            if "NOGROUP" in str(error):
                # Redis restarted without its data, or the stream was deleted.
                self._group_ready = False
            raise
        messages: list[Message] = []
        for _stream, entries in response or []:
            for message_id, fields in entries:
                # Entries deleted while pending come back with no fields.
                messages.append((_text(message_id), fields or {}))
        return messages

    async def _claim(self) -> list[Message]:
        response = await self.client.xautoclaim(
            self.stream,
            GROUP,
            self.options.consumer,
            min_idle_time=self.options.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self._messages_per_read,
        )
        next_cursor, entries = response[0], response[1]
        self._claim_cursor = _text(next_cursor)
        deleted = response[2] if len(response) > 2 else []
        if deleted:
            # Pending entries whose data is gone (deleted or trimmed): nothing to store.
            await self.client.xack(self.stream, GROUP, *deleted)
        messages = [(_text(message_id), fields or {}) for message_id, fields in entries]
        if messages:
            self.stats.claimed += len(messages)
            logger.info("Claimed %d messages left by a stopped worker.", len(messages))
        return messages

    async def _acknowledge(self, message_ids: Sequence[str], customer_ids: Collection[int]) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, *message_ids)
            # Stored messages leave the stream, so it holds only work still to do.
            pipe.xdel(self.stream, *message_ids)
            # A message that failed before and is stored now starts afresh if redelivered.
            pipe.hdel(self.failures_key, *message_ids)
            if customer_ids:
                await self._mark_dirty(
                    keys=[self.dirty_key, self._dirty_version_key, self._dirty_latest_key],
                    args=sorted(customer_ids),
                    client=pipe,
                )
            await pipe.execute()

    async def refresh_dirty(self) -> int | None:
        """Recompute metrics and tags of (up to a chunk of) the customers marked dirty.

        Returns how many were marked, or None on failure (the marks stay).
        """
        try:
            read_version, marked = await self._claim_dirty(
                keys=[self.dirty_key, self._dirty_claims_key, self._dirty_version_key],
                args=[self.options.refresh_chunk, int(time.time() * 1000), CLAIM_LEASE_MS],
            )
        except (RedisError, OSError) as error:
            self._redis_failed(error)
            return None
        if not marked:
            return 0
        # Every batch marked at or before ``read_version`` committed before this read,
        # hence before the refresh's transaction starts: its events are seen.
        customer_ids = [int(_text(member)) for member in marked]
        try:
            async with self.sessions.begin() as session:
                # The customers' keys come back with their row locks: no extra query.
                # Running totals: each refresh costs the customers' new events, not
                # their whole history.
                refreshed = await fold_profile_metrics(session, customer_ids, counted=self._counted)
                if self.tag_rules is not None:
                    await apply_tag_rules(
                        session,
                        self.tag_rules,
                        customer_ids,
                        check_catalogue=not self._rules_checked,
                        count_qualifying=False,
                        totals=refreshed.totals,
                    )
                    self._rules_checked = True
        except (DatabaseError, OSError) as error:
            self.stats.store_errors += 1
            self._failures += 1
            logger.warning(
                "Refreshing customer metrics failed (%s); retrying.", type(error).__name__
            )
            with contextlib.suppress(RedisError, OSError):  # else they expire with the lease
                await self.client.zrem(self._dirty_claims_key, *customer_ids)
            return None
        try:
            await self._clear_dirty(
                keys=[self.dirty_key, self._dirty_latest_key, self._dirty_claims_key],
                args=[_text(read_version or 0), *map(str, customer_ids)],
            )
        except (RedisError, OSError) as error:
            # The marks stay: the next refresh does the same work again, harmlessly.
            self._redis_failed(error)
            return None
        self.stats.refreshes += 1
        self.stats.refreshed_customers += refreshed.written
        if self.on_stored is not None and refreshed.customer_keys:
            try:
                await self.on_stored(refreshed.customer_keys)
            except Exception as error:  # a hook must not stop the worker
                logger.warning("After-refresh hook failed (%s).", type(error).__name__)
        return len(customer_ids)

    async def _stream_behind(self) -> bool:
        """Whether more than two reads' worth of messages wait (False if Redis fails:
        the reads will tell)."""
        try:
            length = int(await self.client.xlen(self.stream))
        except (RedisError, OSError):
            return False
        return length > 2 * self._messages_per_read

    async def _drained(self) -> bool:
        try:
            pending = await self.client.xpending(self.stream, GROUP)
            length = await self.client.xlen(self.stream)
            dirty = await self.client.zcard(self.dirty_key)
        except (RedisError, OSError) as error:
            self._redis_failed(error)
            return False
        return int(pending["pending"]) == 0 and int(length) == 0 and int(dirty) == 0

    async def _housekeeping(self) -> None:
        """Forget consumers that are long gone and hold nothing (each restart adds one)."""
        now = time.monotonic()
        if now - self._last_housekeeping < HOUSEKEEPING_EVERY_S:
            return
        self._last_housekeeping = now
        for consumer in await self.client.xinfo_consumers(self.stream, GROUP):
            name = _text(consumer["name"])
            if (
                name != self.options.consumer
                and int(consumer["pending"]) == 0
                and int(consumer["idle"]) > FORGET_CONSUMERS_AFTER_MS
            ):
                await self.client.xgroup_delconsumer(self.stream, GROUP, name)

    def _redis_failed(self, error: BaseException) -> None:
        self.stats.redis_errors += 1
        self._own_pending = True
        self._group_ready = False
        if self._failures == 0:
            logger.warning(
                "Redis unavailable (%s); the worker retries until it returns.",
                type(error).__name__,
            )
        self._failures += 1

    def _backoff(self) -> float:
        return float(min(MAX_BACKOFF_S, self.options.retry_delay_s * 2 ** min(self._failures, 5)))


def _decode(messages: Sequence[Message]) -> tuple[list[ValidEvent], list[str]]:
    events: list[ValidEvent] = []
    malformed: list[str] = []
    for message_id, fields in messages:
        try:
            events.extend(decode_events(fields))
        except MalformedMessageError:
            malformed.append(message_id)
    return events, malformed


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_for_any(events: tuple[asyncio.Event, ...], seconds: float) -> None:
    """Until one of ``events`` is set, or ``seconds`` have passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def redis_persists(client: redis_asyncio.Redis) -> bool | None:
    """Whether Redis keeps its data across a restart (None: it will not say)."""
    try:
        config = await client.config_get("appendonly")
        snapshots = await client.config_get("save")
    except (RedisError, OSError):
        return None  # managed services often disable CONFIG
    appendonly = _text(config.get("appendonly", "no")).lower() == "yes"
    return appendonly or bool(_text(snapshots.get("save", "")).strip())
