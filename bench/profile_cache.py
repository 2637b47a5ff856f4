"""Snapshot read latency: the Redis profile cache (hit) vs the SQL read it saves.

Seeds a scratch PostgreSQL database (created next to ``--database-url``'s database and
dropped at the end) with customers that each have a profile document, tags and a stored
segment, then reads random customers' snapshots one at a time, in alternating rounds:

* ``sql``: ``SqlStore.load_snapshot`` (the baseline: three indexed point reads);
* ``cache hit``: ``ProfileCache.lookup`` returning the cached snapshot (one pipelined
  round trip and a JSON decode);
* ``cache miss``: what a miss costs the answer (the lookup, then the SQL read); the key
  is invalidated before each, outside the timing;
* ``write-back``: the compare-and-set that caches a SQL answer (the engine runs it in
  the background, after answering);
* ``personalize``: the whole ``PersonalizationService.personalize`` (snapshot, session
  counters, decision rules, slot plan) without Redis vs with the snapshot cached.

Before timing, every cached snapshot is checked equal to the SQL one. Prints the median
and p99 in milliseconds and the ratios; asserts nothing. Redis keys live in a namespace of
the bench's own and are deleted at the end.

    python bench/profile_cache.py [--customers 2000] [--requests 2000] [--rounds 3]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]
        [--redis-url redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from redis import asyncio as redis_asyncio
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from harness import scratch_database, summary
from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.cache.profiles import CachedProfile, ProfileCache, ProfileTicket
from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.settings import Settings
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer, CustomerProfile, CustomerTag, SegmentAssignment
from rasa_personalize.store.sql_store import SqlStore

SECRET = "bench-secret-key-0123456789abcdef"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
TAGS = ("premium", "interested_in_running", "newsletter", "gift_buyer", "night_owl", "vip")


def engine_settings(database_url: str, redis_url: str | None) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=SECRET,
        redis_timeout_s=2.0,
        rules_path=Path("personalization.yml"),
    )


def request_for(key: str, index: dict[str, int]) -> PersonalizationRequest:
    """The request of the customer whose key is ``key`` (external ids are by index)."""
    return PersonalizationRequest(
        CustomerIdentity(f"customer-{index[key]:05d}", "message_metadata")
    )


async def seed(store: SqlStore, customers: int, seed_value: int) -> list[str]:
    """Customers with a profile, 2-4 tags and a segment; returns their keys."""
    rng = random.Random(seed_value)
    keys = [customer_key(SECRET, f"customer-{n:05d}") for n in range(customers)]
    async with store.sessions.begin() as session:
        await session.execute(
            insert(Customer),
            [
                {"customer_key": key, "created_at": START, "loyalty_tier": "gold", "age": 30,
                 "country": "DE", "city": "Berlin"}
                for key in keys
            ],
        )  # fmt: skip
        ids = list(range(1, customers + 1))
        metrics = {
            "interaction_count": 40, "view_count": 30, "purchase_count": 5,
            "total_spent": 412.5, "first_seen_at": START.isoformat(),
            "last_seen_at": (START + timedelta(days=30)).isoformat(),
            "last_purchase_at": (START + timedelta(days=20)).isoformat(),
            "discounted_purchase_share": 0.2, "favorite_category": "running",
            "category_affinity": {"running": 0.7, "books": 0.2, "kitchen": 0.1},
        }  # fmt: skip
        await session.execute(
            insert(CustomerProfile),
            [
                {"customer_id": cid, "attributes": {"newsletter": "weekly"}, "metrics": metrics,
                 "version": 3, "updated_at": START}
                for cid in ids
            ],
        )  # fmt: skip
        await session.execute(
            insert(CustomerTag),
            [
                {"customer_id": cid, "tag": tag, "source": "rule", "weight": 1.0,
                 "updated_at": START}
                for cid in ids
                for tag in rng.sample(TAGS, rng.randint(2, 4))
            ],
        )  # fmt: skip
        await session.execute(
            insert(SegmentAssignment),
            [
                {"customer_id": cid, "segment": "loyal", "method": "kmeans",
                 "model_version": "bench", "score": 0.8, "assigned_at": START}
                for cid in ids
            ],
        )  # fmt: skip
    return keys


async def measure(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    store = SqlStore(database_url, StoreTimeouts(connect_s=10.0, statement_s=None))
    async with store.engine.begin() as connection:
        await upgrade_connection(connection)
    keys = await seed(store, args.customers, seed_value=0)
    index = {key: n for n, key in enumerate(keys)}
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    client = redis_asyncio.from_url(args.redis_url, socket_timeout=2.0)
    cache = ProfileCache(
        client,
        ttl_s=3600.0,
        breaker=RedisBreaker("bench", timeout_s=2.0, retry_after_s=0.0),
        namespace=namespace,
    )
    services: list[PersonalizationService] = []
    try:
        # Fill the cache, and check it hands back exactly what SQL does.
        for key in keys:
            ticket = await cache.lookup(key)
            assert isinstance(ticket, ProfileTicket)
            await cache.store(ticket, await store.load_snapshot(key))
        for key in keys:
            hit = await cache.lookup(key)
            if not isinstance(hit, CachedProfile) or hit.snapshot != await store.load_snapshot(key):
                raise SystemExit("cached and SQL snapshots differ: the comparison would be unfair")

        async def sql(key: str) -> None:
            await store.load_snapshot(key)

        async def cache_hit(key: str) -> None:
            await cache.lookup(key)

        async def miss(key: str) -> None:
            lookup = await cache.lookup(key)
            snapshot = await store.load_snapshot(key)
            tickets.append((lookup, snapshot))

        async def write_back() -> None:
            for lookup, snapshot in tickets:
                if isinstance(lookup, ProfileTicket):
                    await cache.store(lookup, snapshot)
            tickets.clear()

        async def before_miss(key: str) -> None:
            await write_back()  # the previous miss's write-back, outside the timing
            await cache.invalidate([key])

        # The whole action path: PersonalizationService.personalize (rules included),
        # without Redis and with every snapshot cached.
        plain = PersonalizationService(engine_settings(database_url, None), store)
        cached = PersonalizationService(engine_settings(database_url, args.redis_url), store)
        services.extend([plain, cached])
        assert cached.profile_cache is not None
        cached.profile_cache.namespace = namespace
        for key in keys:
            await cached.personalize(request_for(key, index))
        await cached.drain()

        async def engine_sql(key: str) -> None:
            await plain.personalize(request_for(key, index))

        async def engine_hit(key: str) -> None:
            await cached.personalize(request_for(key, index))

        tickets: list[tuple[Any, Any]] = []
        variants: dict[str, tuple[Callable[[str], Awaitable[None]], Any]] = {
            "sql": (sql, None),
            "cache_hit": (cache_hit, None),
            "cache_miss": (miss, before_miss),
            "personalize_sql": (engine_sql, None),
            "personalize_cache_hit": (engine_hit, None),
        }
        rng = random.Random(1)
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        for call, _ in variants.values():  # warm-up: pools, statement caches
            for _ in range(200):
                await call(rng.choice(keys))
        for _ in range(args.rounds):
            for name, (call, prepare) in variants.items():
                for _ in range(args.requests):
                    key = rng.choice(keys)
                    if prepare is not None:
                        await prepare(key)
                    started = time.perf_counter()
                    await call(key)
                    latencies[name].append((time.perf_counter() - started) * 1000)
        await write_back()
        # The write-back alone (the engine runs it in the background, after the answer):
        # compare-and-set = WATCH + GET, then MULTI/SET/EXEC.
        latencies["write_back"] = []
        for _ in range(args.requests):
            key = rng.choice(keys)
            await cache.invalidate([key])
            lookup = await cache.lookup(key)
            snapshot = await store.load_snapshot(key)
            assert isinstance(lookup, ProfileTicket)
            started = time.perf_counter()
            await cache.store(lookup, snapshot)
            latencies["write_back"].append((time.perf_counter() - started) * 1000)
        return {name: summary(values) for name, values in latencies.items()}
    finally:
        for service in services:
            await service.close()  # also disposes the shared store; again below is harmless
        stale = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
        for start in range(0, len(stale), 1000):
            await client.delete(*stale[start : start + 1000])
        await client.aclose()
        await store.dispose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if make_url(args.database_url).get_backend_name() != "postgresql":
        raise SystemExit("the bench measures PostgreSQL: pass a postgresql:// --database-url")
    async with scratch_database(args.database_url) as url:
        return await measure(args, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=2_000, help="per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "PERSONALIZE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL server; the bench creates and drops a scratch database next to it",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("PERSONALIZE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    figures = asyncio.run(run(args))
    ratios = {
        "p50_sql_to_cache_hit": figures["sql"]["p50_ms"] / figures["cache_hit"]["p50_ms"],
        "p99_sql_to_cache_hit": figures["sql"]["p99_ms"] / figures["cache_hit"]["p99_ms"],
        "p50_miss_to_sql": figures["cache_miss"]["p50_ms"] / figures["sql"]["p50_ms"],
        "p50_personalize_sql_to_hit": figures["personalize_sql"]["p50_ms"]
        / figures["personalize_cache_hit"]["p50_ms"],
    }
    if args.json:
        print(json.dumps({**figures, **ratios}))
        return
    print(
        f"snapshot read latency: PostgreSQL vs Redis profile cache, {args.customers} customers, "
        f"{args.rounds} rounds x {args.requests} sequential reads per variant"
    )
    print(f"{'variant':<44}{'p50 ms':>10}{'p99 ms':>10}")
    labels = {
        "sql": "baseline: SqlStore.load_snapshot (SQL)",
        "cache_hit": "ProfileCache.lookup (hit)",
        "cache_miss": "miss: lookup + SQL (what the answer waits)",
        "write_back": "write-back after a miss (background)",
        "personalize_sql": "baseline: personalize(), no Redis",
        "personalize_cache_hit": "personalize(), snapshot cached",
    }
    for name, label in labels.items():
        print(f"{label:<44}{figures[name]['p50_ms']:>10.3f}{figures[name]['p99_ms']:>10.3f}")
    print(f"ratio p50 SQL / cache hit:       {ratios['p50_sql_to_cache_hit']:.2f}")
    print(f"ratio p99 SQL / cache hit:       {ratios['p99_sql_to_cache_hit']:.2f}")
    print(f"ratio p50 miss / SQL:            {ratios['p50_miss_to_sql']:.2f}")
    print(f"ratio p50 personalize SQL / hit: {ratios['p50_personalize_sql_to_hit']:.2f}")


if __name__ == "__main__":
    main()
