"""Event ingestion throughput: POST /personalize/events vs a bare executemany baseline.

Starts an action server (one Sanic process, the rasa-sdk app plus the events API) on a
fresh store, posts batches of 100 events over HTTP, and in alternating rounds of the same
run inserts equally many rows with one plain ``executemany`` per batch (no validation,
no HTTP, no customer creation, no metrics refresh). Prints events/s, per-batch median
and p99 for both, and the ratio. Never asserts.

PostgreSQL: pass a scratch database (the bench refuses a store that holds products).

    python bench/events_throughput.py [--events 20000] [--rounds 3] [--concurrency 1]
                                      [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sqlalchemy import insert, select, text

from actions.events.api import attach_event_routes
from actions.events.apikeys import create_api_key
from actions.identity import customer_key
from actions.processes import ServerProcess, free_port
from actions.store.database import StoreTimeouts
from actions.store.migrate import upgrade_connection
from actions.store.models import Customer, Interaction, Product
from actions.store.sql_store import SqlStore

SECRET = "bench-secret-key-0123456789abcdef"
KINDS = ("view", "view", "view", "search", "cart", "purchase", "chat_click")
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
SCRIPT = Path(__file__).resolve()


def serve(port: int) -> None:
    """The server side (run in its own process): rasa-sdk's app plus the events API."""
    app = attach_event_routes(create_app(ActionExecutor()))
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False)


def make_events(
    count: int, customers: int, products: int, prefix: str, seed: int
) -> list[dict[str, Any]]:
    """Random valid events over the seeded customers and products."""
    rng = random.Random(seed)
    events = []
    for n in range(count):
        kind = rng.choice(KINDS)
        event: dict[str, Any] = {
            "event_id": f"{prefix}-{n}",
            "customer": f"customer-{rng.randrange(customers):05d}",
            "kind": kind,
            "timestamp": (START + timedelta(seconds=n)).isoformat(),
            "channel": "web",
            "device": rng.choice(("mobile", "desktop")),
        }
        if kind != "search":
            event["product"] = f"SKU-{rng.randrange(products):04d}"
        if kind == "purchase":
            event["price"] = 20.0
        events.append(event)
    return events


async def seed(store: SqlStore, customers: int, products: int) -> str:
    """Products, half the customers (the rest are first seen during the run), and a key."""
    async with store.sessions.begin() as session:
        await session.execute(
            insert(Product),
            [
                {"sku": f"SKU-{n:04d}", "title": f"P{n}", "description": "",
                 "category": f"c{n % 12}", "brand": None, "price": 25.0, "in_stock": True,
                 "attributes": {}}
                for n in range(products)
            ],
        )  # fmt: skip
        await session.execute(
            insert(Customer),
            [
                {"customer_key": customer_key(SECRET, f"customer-{n:05d}"), "created_at": START,
                 "loyalty_tier": "none"}
                for n in range(0, customers, 2)
            ],
        )  # fmt: skip
        _, key = await create_api_key(session, "ingest", "bench")
    return key


async def baseline_batch(
    store: SqlStore, events: list[dict[str, Any]], ids: dict[str, dict[str, int]]
) -> None:
    """The floor: the same rows, ids already resolved, one executemany, one transaction."""
    rows = [
        {
            "event_id": e["event_id"],
            "customer_id": ids["customers"][e["customer"]],
            "product_id": ids["products"].get(e.get("product", "")),
            "kind": e["kind"],
            "value": None,
            "quantity": 1,
            "price": e.get("price"),
            "channel": e["channel"],
            "device": e["device"],
            "occurred_at": datetime.fromisoformat(e["timestamp"]),
        }
        for e in events
    ]
    async with store.sessions.begin() as session:
        await session.execute(insert(Interaction), rows)


async def resolve_ids(store: SqlStore, customers: int) -> dict[str, dict[str, int]]:
    """External customer id -> store id (customers created so far) and sku -> id."""
    async with store.sessions() as session:
        rows = await session.execute(select(Customer.customer_key, Customer.id))
        keys: dict[str, int] = dict(rows.all())  # type: ignore[arg-type]
        rows = await session.execute(select(Product.sku, Product.id))
        skus: dict[str, int] = dict(rows.all())  # type: ignore[arg-type]
    externals = (f"customer-{n:05d}" for n in range(customers))
    known = {external: customer_key(SECRET, external) for external in externals}
    return {
        "customers": {external: keys[key] for external, key in known.items() if key in keys},
        "products": skus,
    }


async def open_store(database_url: str) -> SqlStore:
    """The store at ``database_url`` with the schema at head; it must hold no products."""
    store = SqlStore(database_url, StoreTimeouts(connect_s=10.0, statement_s=None))
    async with store.engine.begin() as connection:
        await upgrade_connection(connection)
        if (await connection.execute(text("SELECT count(*) FROM products"))).scalar():
            raise SystemExit("the bench needs an empty store: use a scratch database")
    return store


async def post_batches(
    url: str, key: str, batches: list[list[dict[str, Any]]], concurrency: int
) -> tuple[float, list[float], int]:
    """POST each batch; returns (seconds, per-batch ms, accepted events)."""
    latencies: list[float] = []
    accepted = 0
    queue = list(reversed(batches))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal accepted
            while queue:
                body = json.dumps({"events": queue.pop()}).encode()
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.json()
                    if response.status != 200:
                        raise SystemExit(f"HTTP {response.status}: {answer}")
                latencies.append((time.perf_counter() - started) * 1000)
                accepted += len(answer["accepted"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, accepted


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def chunked(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def run(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    store = await open_store(database_url)
    key = await seed(store, args.customers, args.products)
    port = free_port()
    env = {**os.environ, "PERSONALIZE_DATABASE_URL": database_url, "PERSONALIZE_SECRET_KEY": SECRET}
    root = SCRIPT.parent.parent
    server = ServerProcess(
        [sys.executable, str(SCRIPT), "--serve", str(port)],
        f"http://127.0.0.1:{port}/health",
        env={**env, "PYTHONPATH": str(root)},
        cwd=root,
        log_path=Path(args.server_log) if args.server_log else None,
    )
    url = f"http://127.0.0.1:{port}/personalize/events"
    results: dict[str, dict[str, list[float]]] = {
        n: {"eps": [], "lat": []} for n in ("http", "baseline")
    }
    accepted_total = 0
    with server:
        warm = make_events(500, args.customers, args.products, "warm", 0)
        await post_batches(url, key, chunked(warm, args.batch), args.concurrency)
        per_round = args.events // args.rounds
        for round_number in range(args.rounds):
            events = make_events(
                per_round, args.customers, args.products, f"h{round_number}", round_number + 1
            )
            elapsed, latencies, accepted = await post_batches(
                url, key, chunked(events, args.batch), args.concurrency
            )
            accepted_total += accepted
            results["http"]["eps"].append(per_round / elapsed)
            results["http"]["lat"].extend(latencies)

            ids = await resolve_ids(store, args.customers)
            base = make_events(
                per_round, args.customers, args.products, f"b{round_number}", round_number + 1
            )
            latencies = []
            started = time.perf_counter()
            for batch in chunked(base, args.batch):
                t0 = time.perf_counter()
                await baseline_batch(store, batch, ids)
                latencies.append((time.perf_counter() - t0) * 1000)
            results["baseline"]["eps"].append(per_round / (time.perf_counter() - started))
            results["baseline"]["lat"].extend(latencies)
    async with store.engine.connect() as connection:
        stored = (
            await connection.execute(
                text("SELECT count(*) FROM interactions WHERE event_id LIKE 'h%'")
            )
        ).scalar()
    await store.dispose()
    summary = {
        name: {
            "events_per_s": round(statistics.median(r["eps"])),
            "batch_p50_ms": round(statistics.median(r["lat"]), 2),
            "batch_p99_ms": round(percentile(r["lat"], 99), 2),
        }
        for name, r in results.items()
    }
    summary["ratio_http_to_baseline"] = round(
        summary["http"]["events_per_s"] / summary["baseline"]["events_per_s"], 3
    )
    summary["http_events_sent"] = per_round * args.rounds
    summary["http_events_accepted"] = accepted_total
    summary["http_rows_stored"] = stored
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="HTTP events in total")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--server-log", help="append the server's output to this file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'bench.db'}"
        summary = asyncio.run(run(args, url))
    if args.json:
        print(json.dumps(summary))
        return
    backend = url.split(":", 1)[0]
    print(f"events through HTTP vs executemany ({backend}, batches of {args.batch}, "
          f"concurrency {args.concurrency}, {args.rounds} rounds)")  # fmt: skip
    for name in ("http", "baseline"):
        s = summary[name]
        print(
            f"  {name:9s} {s['events_per_s']:>8,} events/s   "
            f"batch p50 {s['batch_p50_ms']:7.2f} ms   p99 {s['batch_p99_ms']:7.2f} ms"
        )
    print(f"  ratio http/baseline: {summary['ratio_http_to_baseline']:.3f}")
    print(f"  sent {summary['http_events_sent']:,}, accepted {summary['http_events_accepted']:,}, "
          f"stored {summary['http_rows_stored']:,}")  # fmt: skip


if __name__ == "__main__":
    main()
