"""The stream worker against a real Redis and both SQL backends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis import asyncio as redis_asyncio
from sqlalchemy import func, select

from rasa_personalize.cache.breaker import RedisBreaker, RedisUnavailableError
from rasa_personalize.events.stream import FIELD, GROUP, EventStream, ensure_group
from rasa_personalize.events.validation import ValidEvent, validate_event
from rasa_personalize.events.worker import StreamWorker, WorkerOptions
from rasa_personalize.segments.tag_rules import parse_tag_rules
from rasa_personalize.store.models import Customer, CustomerProfile, CustomerTag, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import NOW, add_product

pytestmark = pytest.mark.redis


def make_event(number: int, customer: str = "jane", sku: str = "SKU-1") -> ValidEvent:
    return validate_event(
        {
            "event_id": f"e{number}",
            "customer": customer,
            "product": sku,
            "kind": "view",
            "timestamp": (NOW - timedelta(minutes=number)).isoformat(),
            "location": "Lisbon",
        },
        secret_key=TEST_SECRET,
        now=NOW,
    )


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    sql = await migrated_store(database_url)
    async with sql.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=50.0)
        await add_product(session, "SKU-2", "socks", price=5.0)
    yield sql
    await sql.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[tuple[redis_asyncio.Redis, str]]:
    """A client and a stream name of this test's own, deleted afterwards."""
    client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
    stream = f"test:events:{uuid.uuid4().hex}"
    yield client, stream
    suffixes = ("", ":dirty", ":dirty-version", ":dirty-latest", ":dirty-claims")
    await client.delete(*(stream + suffix for suffix in suffixes))
    await client.aclose()


def worker_for(
    client: redis_asyncio.Redis, stream: str, store: SqlStore, **options: Any
) -> StreamWorker:
    settings = {"block_ms": 50, "claim_idle_ms": 60_000, "exit_when_idle": True} | options
    return StreamWorker(client, stream, store.sessions, options=WorkerOptions(**settings))


async def publish(client: redis_asyncio.Redis, stream: str, events: list[ValidEvent]) -> None:
    breaker = RedisBreaker("test", timeout_s=5.0)
    await EventStream(client, stream, breaker=breaker).publish(events)


async def stored_ids(store: SqlStore) -> list[str]:
    async with store.sessions() as session:
        return sorted((await session.execute(select(Interaction.event_id))).scalars().all())


async def pending(client: redis_asyncio.Redis, stream: str) -> int:
    return int((await client.xpending(stream, GROUP))["pending"])


async def test_worker_stores_every_event_once_and_empties_the_stream(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    client, stream = redis
    events = [make_event(n, customer=f"c{n % 7}") for n in range(250)]
    await publish(client, stream, events)
    await publish(client, stream, events[:10])  # a sender that retried

    stats = await worker_for(client, stream, store, batch_size=100).run()

    assert stats.stored == 250
    assert stats.already_stored == 10
    assert await stored_ids(store) == sorted(f"e{n}" for n in range(250))
    assert await client.xlen(stream) == 0
    assert await pending(client, stream) == 0
    async with store.sessions() as session:
        # First-seen customers were created and their metrics computed.
        assert await session.scalar(select(func.count()).select_from(Customer)) == 7
        assert await session.scalar(select(func.count()).select_from(CustomerProfile)) == 7
        locations = set((await session.execute(select(Interaction.location))).scalars())
    assert locations == {"Lisbon"}


async def test_messages_of_a_dead_consumer_are_claimed(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """A worker took messages and died before acknowledging: another one finishes them."""
    client, stream = redis
    await publish(client, stream, [make_event(n) for n in range(20)])
    await ensure_group(client, stream)
    taken = await client.xreadgroup(GROUP, "dead-worker", {stream: ">"}, count=20)
    assert len(taken[0][1]) == 1  # one message holds the 20 events
    assert await pending(client, stream) == 1

    stats = await worker_for(client, stream, store, claim_idle_ms=0).run()

    assert stats.claimed == 1
    assert stats.stored == 20
    assert await pending(client, stream) == 0
    assert len(await stored_ids(store)) == 20


async def test_a_batch_stored_but_not_acknowledged_has_no_second_effect(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """Killed between commit and XACK: the redelivery finds every event already stored."""
    client, stream = redis
    events = [make_event(n) for n in range(5)]
    await publish(client, stream, events)
    first = worker_for(client, stream, store)
    assert await first.step() == 5
    # Simulate the crash: put the same events back as unacknowledged messages.
    await publish(client, stream, events)
    await client.xreadgroup(GROUP, "crashed", {stream: ">"}, count=5)

    stats = await worker_for(client, stream, store, claim_idle_ms=0).run()

    assert stats.claimed == 1
    assert stats.already_stored == 5
    assert stats.stored == 0
    assert await stored_ids(store) == sorted(f"e{n}" for n in range(5))


async def test_a_failed_store_keeps_the_batch_pending_until_it_succeeds(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str], tmp_path: Any
) -> None:
    client, stream = redis
    await publish(client, stream, [make_event(n) for n in range(3)])
    worker = worker_for(client, stream, store)
    broken = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'store.db'}")
    worker.sessions = broken.sessions

    assert await worker.step() is None
    assert worker.stats.store_errors == 1
    assert await pending(client, stream) == 1  # the one message holding the three events

    worker.sessions = store.sessions
    assert await worker.step() == 3
    assert await pending(client, stream) == 0
    assert len(await stored_ids(store)) == 3
    await broken.dispose()


async def test_malformed_messages_are_dropped_and_counted(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    client, stream = redis
    await client.xadd(stream, {FIELD: "not json"})
    await client.xadd(stream, {"other": "field"})
    await publish(client, stream, [make_event(1)])

    stats = await worker_for(client, stream, store).run()

    assert stats.malformed == 2
    assert stats.stored == 1
    assert await client.xlen(stream) == 0


async def test_events_for_removed_products_are_dropped(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    client, stream = redis
    await publish(client, stream, [make_event(1, sku="SKU-GONE"), make_event(2)])

    stats = await worker_for(client, stream, store).run()

    assert (stats.stored, stats.dropped) == (1, 1)
    assert await stored_ids(store) == ["e2"]


async def test_a_deleted_stream_is_recreated(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """Redis restarted without its data: the group is recreated and work goes on."""
    client, stream = redis
    await publish(client, stream, [make_event(1)])
    worker = worker_for(client, stream, store)
    assert await worker.step() == 1
    await client.delete(stream)

    assert await worker.step() is None  # NOGROUP
    await publish(client, stream, [make_event(2)])
    assert await worker.step() == 1
    assert await stored_ids(store) == ["e1", "e2"]


async def test_an_unreachable_redis_is_retried_not_fatal(store: SqlStore) -> None:
    client = redis_asyncio.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    worker = worker_for(client, "test:events:nowhere", store)
    assert await worker.step() is None
    assert await worker.step() is None
    assert worker.stats.redis_errors == 2
    await client.aclose()


async def test_publishing_to_an_unreachable_redis_raises_the_fallback_error() -> None:
    client = redis_asyncio.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    stream = EventStream(client, "x", breaker=RedisBreaker("test", timeout_s=0.5))
    with pytest.raises(RedisUnavailableError):
        await stream.publish([make_event(1)])
    # The breaker is open now: the next call fails at once, without a connection attempt.
    assert stream.breaker.is_open
    with pytest.raises(RedisUnavailableError):
        await stream.publish([make_event(2)])
    await client.aclose()


async def test_metrics_are_refreshed_once_per_customer_not_per_batch(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    client, stream = redis
    worker = worker_for(client, stream, store, batch_size=100, refresh_every_s=3600)
    for start in (0, 10, 20):  # three messages, read one per step
        await publish(client, stream, [make_event(n) for n in range(start, start + 10)])
    for _ in range(3):
        assert await worker.step() == 10
    # Three batches, one customer: one mark, no profile yet.
    assert await client.zcard(worker.dirty_key) == 1
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(CustomerProfile)) == 0

    assert await worker.refresh_dirty()

    assert await client.zcard(worker.dirty_key) == 0
    assert (worker.stats.refreshes, worker.stats.refreshed_customers) == (1, 1)
    async with store.sessions() as session:
        metrics = await session.scalar(select(CustomerProfile.metrics))
    assert metrics is not None
    assert metrics["interaction_count"] == 30


async def test_a_caught_up_worker_refreshes_without_waiting_out_the_interval(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """With an hour between scheduled refreshes, a batch that empties the stream still
    gets its customers' metrics refreshed right after it is stored."""
    client, stream = redis
    worker = worker_for(client, stream, store, exit_when_idle=False, refresh_every_s=3600)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0.2)  # the first scheduled refresh has run: the next is in 1 h
        await publish(client, stream, [make_event(n) for n in range(5)])
        metrics = None
        for _ in range(200):
            async with store.sessions() as session:
                metrics = await session.scalar(select(CustomerProfile.metrics))
            if metrics is not None:
                break
            await asyncio.sleep(0.05)
        assert metrics is not None, "not refreshed: the worker waited for its schedule"
        assert metrics["interaction_count"] == 5
        assert await client.zcard(worker.dirty_key) == 0
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)


async def test_storing_counts_as_behind_only_when_more_than_two_reads_wait(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """Behind, the worker lets storing catch up before its next refresh; one or two
    reads' worth of messages is the normal state under load, not a backlog."""
    client, stream = redis
    # 100 events per message and per read.
    worker = worker_for(client, stream, store, batch_size=100)
    await publish(client, stream, [make_event(n) for n in range(200)])
    assert await client.xlen(stream) == 2
    assert not await worker._stream_behind()
    await publish(client, stream, [make_event(n) for n in range(200, 300)])
    assert await worker._stream_behind()


async def test_a_refresh_never_clears_a_newer_mark(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """A batch marks a customer again while a refresh is running: the mark survives."""
    client, stream = redis
    worker = worker_for(client, stream, store, refresh_every_s=3600)
    await publish(client, stream, [make_event(1)])
    assert await worker.step() == 1
    [member] = await client.zrange(worker.dirty_key, 0, -1)
    read_version = await client.get(f"{stream}:dirty-version")

    # The refresh read the marks at `read_version`; a newer batch marks the customer
    # before the clear.
    keys = [worker.dirty_key, f"{stream}:dirty-version", f"{stream}:dirty-latest"]
    await worker._mark_dirty(keys=keys, args=[member])
    clear_keys = [worker.dirty_key, f"{stream}:dirty-latest", f"{stream}:dirty-claims"]
    cleared = await worker._clear_dirty(keys=clear_keys, args=[read_version, member])

    assert cleared == 0
    assert await client.zcard(worker.dirty_key) == 1
    assert await worker.refresh_dirty()
    assert await client.zcard(worker.dirty_key) == 0
    assert await client.hlen(f"{stream}:dirty-latest") == 0


async def test_customers_are_refreshed_in_the_order_their_first_event_was_stored(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """jane waits first; bob's batch, then jane's next one, do not push her behind bob."""
    client, stream = redis
    worker = worker_for(client, stream, store, batch_size=100, refresh_chunk=1)
    for number, customer in ((1, "jane"), (2, "bob"), (3, "jane")):
        await publish(client, stream, [make_event(number, customer=customer)])
        assert await worker.step() == 1

    assert await worker.refresh_dirty() == 1

    async with store.sessions() as session:
        refreshed = (
            await session.execute(
                select(Customer.customer_key, CustomerProfile.metrics).join(
                    CustomerProfile, CustomerProfile.customer_id == Customer.id
                )
            )
        ).all()
    jane = make_event(1, customer="jane").customer_key
    # Both of jane's events are in her metrics (the refresh read after her second batch).
    assert [(key, metrics["interaction_count"]) for key, metrics in refreshed] == [(jane, 2)]
    assert await client.zcard(worker.dirty_key) == 1  # bob's turn next
    assert await worker.refresh_dirty() == 1
    assert await client.zcard(worker.dirty_key) == 0


async def test_marks_written_before_the_latest_versions_hash_are_cleared_by_their_score(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """A set left by an older worker (score = newest version, no hash entry): a refresh
    that read after that version clears it, one that read before keeps it."""
    client, stream = redis
    worker = worker_for(client, stream, store)
    await client.zadd(worker.dirty_key, {"7": 5, "8": 9})
    clear_keys = [worker.dirty_key, f"{stream}:dirty-latest", f"{stream}:dirty-claims"]

    assert await worker._clear_dirty(keys=clear_keys, args=["6", "7", "8"]) == 1

    assert await client.zrange(worker.dirty_key, 0, -1) == [b"8"]


async def test_workers_refreshing_at_once_claim_different_customers(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    """Two workers' refreshes share the dirty customers instead of both taking all."""
    client, stream = redis
    first, second = (
        worker_for(client, stream, store, batch_size=100, refresh_chunk=2) for _ in range(2)
    )
    await publish(client, stream, [make_event(n, customer=f"c{n}") for n in range(3)])
    assert await first.step() == 3
    keys = [first.dirty_key, f"{stream}:dirty-claims", f"{stream}:dirty-version"]

    # The first is still refreshing its two when the second asks.
    _, mine = await first._claim_dirty(keys=keys, args=[2, 1_000, 60_000])
    _, theirs = await second._claim_dirty(keys=keys, args=[2, 1_000, 60_000])
    # A minute later the first's lease has lapsed (it stopped): its customers are free.
    _, after_lease = await second._claim_dirty(keys=keys, args=[2, 62_000, 60_000])

    assert len(mine) == 2
    assert len(theirs) == 1
    assert not set(mine) & set(theirs)
    assert sorted(after_lease) == sorted(mine)


async def test_a_refresh_releases_its_claims_and_a_second_worker_finds_nothing_left(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    client, stream = redis
    first, second = (worker_for(client, stream, store, batch_size=100) for _ in range(2))
    await publish(client, stream, [make_event(n, customer=f"c{n}") for n in range(3)])
    assert await first.step() == 3

    assert await first.refresh_dirty() == 3
    assert await second.refresh_dirty() == 0

    assert await client.zcard(f"{stream}:dirty-claims") == 0
    assert (first.stats.refreshed_customers, second.stats.refreshed_customers) == (3, 0)


async def test_tag_rules_are_reapplied_for_customers_with_new_events(
    store: SqlStore, redis: tuple[redis_asyncio.Redis, str]
) -> None:
    client, stream = redis
    rules = parse_tag_rules(
        "version: 1\ntags:\n  - tag: shoe_fan\n    when:\n"
        "      count: {kind: view, category: shoes, within_days: 3650, at_least: 3}\n",
        "tags.yml",
    )
    worker = StreamWorker(
        client,
        stream,
        store.sessions,
        options=WorkerOptions(block_ms=50, exit_when_idle=True),
        tag_rules=rules,
    )
    await publish(client, stream, [make_event(n) for n in range(3)])
    await publish(client, stream, [make_event(10, customer="bob")])
    await worker.run()
    async with store.sessions() as session:
        tagged = (await session.execute(select(CustomerTag.customer_id, CustomerTag.tag))).all()
    assert [tag for _, tag in tagged] == ["shoe_fan"]  # jane (3 views), not bob (1)
