"""Erasing a big customer: ``erase_customer`` on one customer with many interactions.

Each round seeds a shop (``--others`` customers with a few events each, and one customer
with ``--interactions`` events, a profile, tags, a segment, precomputed items, consent,
an alias, a cached profile and precomputed list in Redis, queued events in a stream,
and an ALS artifact that knows them), then times the whole erasure: tombstones, the
batched deletes, every other row, Redis and the model rewrite. Prints the median and
p99 in milliseconds over the rounds, and the rows erased per second; asserts nothing.

    python bench/erasure.py [--interactions 10000] [--others 2000] [--rounds 5]
        [--batch-size 5000] [--database-url postgresql://...] [--redis-url redis://...]

PostgreSQL: ``--database-url`` names a server; the bench creates a scratch database on
it and drops it at the end. Redis: the keys and the stream are the bench's own and are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from harness import add_database_url_option, run_on_scratch, summary
from rasa_personalize.cache.precomputed import cache_key
from rasa_personalize.cache.profiles import entry_key, redis_client, version_key
from rasa_personalize.events.stream import FIELD, encode_events
from rasa_personalize.events.validation import ValidEvent
from rasa_personalize.privacy.audit import Actor
from rasa_personalize.privacy.erasure import erase_customer
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import save_artifact
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.versions import als_dir
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import (
    ConsentState,
    Customer,
    CustomerAlias,
    CustomerProfile,
    CustomerTag,
    Interaction,
    PrecomputedRecommendations,
    Product,
    SegmentAssignment,
)
from rasa_personalize.store.sql_store import SqlStore

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
KINDS = ("view", "view", "view", "cart", "purchase", "chat_click")


def key_of(n: int, round_: int) -> str:
    return f"{round_:04d}{n:060d}"


async def seed_sql(session: AsyncSession, args: argparse.Namespace, round_: int) -> int:
    """The shop of one round; returns the store id of the customer to erase."""
    products = [
        row[0]
        for row in (
            await session.execute(
                insert(Product).returning(Product.id),
                [{"sku": f"R{round_}-SKU-{n}", "title": f"P{n}", "description": "",
                  "category": "shoes", "brand": None, "price": 20.0 + n, "in_stock": True,
                  "attributes": {}} for n in range(50)],
            )
        ).all()
    ]  # fmt: skip
    ids = [
        row[0]
        for row in (
            await session.execute(
                insert(Customer).returning(Customer.id),
                [{"customer_key": key_of(n, round_), "created_at": NOW, "loyalty_tier": "none"}
                 for n in range(args.others + 1)],
            )
        ).all()
    ]  # fmt: skip
    target = ids[0]
    events: list[dict[str, Any]] = []
    for n in range(args.interactions):
        events.append(_interaction(f"r{round_}-t{n}", target, products[n % 50], n))
    for index, customer_id in enumerate(ids[1:]):
        for n in range(5):
            events.append(_interaction(f"r{round_}-o{index}-{n}", customer_id, products[n], n))
    for start in range(0, len(events), 10_000):
        await session.execute(insert(Interaction), events[start : start + 10_000])
    session.add_all(
        [
            CustomerProfile(customer_id=target, attributes={"a": 1}, metrics={}),
            CustomerTag(customer_id=target, tag="runner", source="rule"),
            SegmentAssignment(
                customer_id=target, segment="loyal", method="kmeans", model_version="v"
            ),
            PrecomputedRecommendations(customer_id=target, items=[["x", 1.0]], model_version="v"),
            CustomerAlias(alias_key=key_of(999_999, round_), customer_id=target, match="exact"),
            ConsentState(
                customer_key=key_of(0, round_), purpose="tracking", granted=True, source="api"
            ),
        ]
    )
    return int(target)


def _interaction(event_id: str, customer_id: int, product_id: int, n: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "product_id": product_id,
        "kind": KINDS[n % len(KINDS)],
        "quantity": 1,
        "price": 30.0,
        "occurred_at": NOW - timedelta(minutes=n),
    }


def seed_model(model_dir: Path, users: int, round_: int) -> None:
    """An ALS artifact with ``users`` customers (the one to erase among them)."""
    rng = np.random.default_rng(round_)
    model = AlsRecommender.from_factors(
        AlsParams(factors=64),
        user_ids=IdMap.from_ids([key_of(n, round_) for n in range(users)]),
        item_ids=IdMap.from_ids([f"SKU-{n}" for n in range(50)]),
        user_factors=rng.normal(size=(users, 64)),
        item_factors=rng.normal(size=(50, 64)),
    )
    save_artifact(model, als_dir(model_dir), trained_at=NOW + timedelta(seconds=round_))


async def measure(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    store = SqlStore(database_url, StoreTimeouts(connect_s=10.0, statement_s=None))
    client = redis_client(args.redis_url, 5.0) if args.redis_url else None
    stream = f"bench:erasure:{uuid.uuid4().hex}"
    timings: list[float] = []
    erased_rows = 0
    try:
        async with store.engine.begin() as connection:
            await upgrade_connection(connection)
        with tempfile.TemporaryDirectory() as directory:
            model_dir = Path(directory)
            for round_ in range(args.rounds):
                async with store.sessions.begin() as session:
                    await seed_sql(session, args, round_)
                if store.engine.dialect.name == "postgresql":
                    async with store.engine.connect() as connection:
                        await connection.execute(text("ANALYZE"))
                seed_model(model_dir, args.others + 1, round_)
                key = key_of(0, round_)
                if client is not None:
                    await client.set(entry_key(key), "{}")
                    await client.set(version_key(key), 1)
                    await client.set(cache_key(key), "{}")
                    queued = [
                        ValidEvent(f"q{n}", key, None, "search", NOW, None, None, None, None, 1,
                                   None, "shoes")
                        for n in range(100)
                    ]  # fmt: skip
                    await client.xadd(stream, {FIELD: encode_events(queued)})
                started = time.perf_counter()
                receipt = await erase_customer(
                    store.sessions,
                    customer_key=key,
                    actor=Actor.cli(),
                    model_dir=model_dir,
                    redis=client,
                    event_stream=stream,
                    now=NOW + timedelta(days=1),
                    batch_size=args.batch_size,
                )
                timings.append((time.perf_counter() - started) * 1000)
                if receipt.tables["interactions"] != args.interactions:
                    raise SystemExit(f"erased {receipt.tables['interactions']} interactions")
                erased_rows = receipt.sql_rows
    finally:
        if client is not None:
            await client.delete(stream)
            await client.aclose()
        await store.dispose()
    figures = summary(timings)
    return {
        "database": store.engine.dialect.name,
        "redis": bool(args.redis_url),
        "interactions": args.interactions,
        "other_customers": args.others,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "sql_rows_per_erasure": erased_rows,
        **figures,
        "rows_per_s": erased_rows / (figures["p50_ms"] / 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=int, default=10_000)
    parser.add_argument("--others", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=5_000)
    parser.add_argument("--redis-url", help="also erase from this Redis (default: no Redis)")
    add_database_url_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    figures = run_on_scratch(args.database_url, lambda url: measure(args, url))
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"erasing one customer with {figures['interactions']} interactions "
        f"({figures['sql_rows_per_erasure']} SQL rows) on {figures['database']}"
        f"{' with Redis' if figures['redis'] else ''}, batches of {figures['batch_size']}, "
        f"{figures['rounds']} rounds"
    )
    print(f"p50 {figures['p50_ms']:.0f} ms   p99 {figures['p99_ms']:.0f} ms   "
          f"{figures['rows_per_s']:.0f} rows/s")  # fmt: skip


if __name__ == "__main__":
    main()
