"""Event ingestion throughput: POST /personalize/events vs a bare executemany baseline.

Starts an action server (one Sanic process, the rasa-sdk app plus the events API) on a
fresh store, posts batches of 100 events over HTTP, and in alternating rounds of the same
run inserts equally many rows with one plain ``executemany`` per batch (no validation,
no HTTP, no customer creation, no metrics refresh). Prints events/s, per-batch median
and p99 for both, and the ratio. Never asserts.

PostgreSQL: ``--database-url`` names a server; the bench creates a scratch database on
it and drops it at the end.

With ``--redis-url`` the server queues events in a Redis Stream (a stream of the bench's
own) and the bench also measures ``personalize worker`` (a real process) storing them:
"worker" is the rate at which it drains a filled stream into SQL, "end to end" the rate
from the first POST to the last event stored while both run at once. ``--workers 1 2``
measures one and then two worker processes (one consumer group) in every round, and
reports each count's rates and the workers' CPU time per 1,000 events while draining.

    python bench/events_throughput.py [--events 20000] [--rounds 3] [--concurrency 1]
                                      [--database-url postgresql://...]
                                      [--redis-url redis://127.0.0.1:6379/15]
                                      [--workers 1 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from redis import asyncio as redis_asyncio
from sqlalchemy import insert, select, text

from harness import add_database_url_option, percentile, run_on_scratch
from proctree import tree_cpu_s
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.identity import customer_key
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.sql_store import SqlStore

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
    # Customers not created yet (queued events are stored later) borrow a stored one,
    # spread over all of them so that no customer's history grows unlike the others'.
    known = sorted(ids["customers"].values())
    rows = [
        {
            "event_id": e["event_id"],
            "customer_id": ids["customers"].get(e["customer"])
            or known[int(e["customer"].rsplit("-", 1)[1]) % len(known)],
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


def chunked(events: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def newest_id(store: SqlStore) -> int:
    async with store.engine.connect() as connection:
        found = await connection.execute(text("SELECT coalesce(max(id), 0) FROM interactions"))
        return int(found.scalar() or 0)


async def stored_since(store: SqlStore, after_id: int) -> int:
    """Rows stored after row ``after_id``: a primary-key range, cheap to poll."""
    async with store.engine.connect() as connection:
        found = await connection.execute(
            text("SELECT count(*) FROM interactions WHERE id > :after"), {"after": after_id}
        )
        return int(found.scalar() or 0)


def start_worker(env: dict[str, str], args: argparse.Namespace, *extra: str) -> Any:
    """`personalize worker` as a real process (its own group, so it can be stopped)."""
    personalize = Path(sys.executable).parent / "personalize"
    command = [str(personalize), "worker", "--batch-size", str(args.worker_batch),
               "--block-ms", "50", *extra]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


async def wait_stored(store: SqlStore, after_id: int, expected: int, timeout_s: float) -> float:
    """Poll until ``expected`` rows are stored after ``after_id``; returns when."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if await stored_since(store, after_id) >= expected:
            return time.perf_counter()
        await asyncio.sleep(0.05)
    raise SystemExit(f"only {await stored_since(store, after_id)} of {expected} events stored")


async def wait_refreshed(args: argparse.Namespace, stream: str, timeout_s: float) -> float:
    """Poll until no customer waits for its metrics and tags refresh; returns when."""
    client = redis_asyncio.from_url(args.redis_url)
    deadline = time.perf_counter() + timeout_s
    try:
        while time.perf_counter() < deadline:
            if not await client.zcard(f"{stream}:dirty"):
                return time.perf_counter()
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise SystemExit("metrics refresh did not finish")


async def cpu_when_up(worker: subprocess.Popen[bytes], port: int) -> float:
    """The worker's CPU seconds once its /health answers: its start-up (imports,
    connections), which the drain figures leave out."""
    deadline = time.perf_counter() + 60
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            if worker.poll() is not None:
                raise SystemExit("a worker exited before its /health answered")
            try:
                async with session.get(f"http://127.0.0.1:{port}/health") as response:
                    if response.status == 200:
                        return tree_cpu_s(worker.pid)
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.02)
    raise SystemExit("a worker's /health did not answer within a minute")


async def measure_worker(
    args: argparse.Namespace,
    env: dict[str, str],
    store: SqlStore,
    target: tuple[str, str, str],
    run: tuple[int, int],
) -> dict[str, float]:
    """Events/s of ``count`` workers draining a full stream, and of HTTP + workers at once;
    ``run`` is (round number, count).

    "stored": every event is a row; "refreshed": also every affected customer's
    metrics and tags are recomputed (the worker does that every second, per customer).
    """
    url, key, stream = target
    round_number, count = run
    per_round = args.events // args.rounds
    tag = f"{round_number}-{count}"
    # Drain: fill the stream first, then time the workers alone (process start excluded by
    # timing from the first stored event).
    events = make_events(per_round, args.customers, args.products, f"w{tag}", 99)
    await post_batches(url, key, chunked(events, args.batch), args.concurrency)
    before = await newest_id(store)
    ports = [free_port() for _ in range(count)]
    workers = [
        start_worker(env, args, "--until-idle", "--metrics-port", str(port)) for port in ports
    ]
    first, *cpu_up = await asyncio.gather(
        wait_stored(store, before, 1, 60),
        *(cpu_when_up(worker, port) for worker, port in zip(workers, ports, strict=True)),
    )
    stored = await wait_stored(store, before, per_round, 600)
    refreshed = await wait_refreshed(args, stream, 600)
    # Not waited for yet: a worker that has exited is a zombie whose /proc entry still
    # holds its CPU time.
    cpu_used = sum(tree_cpu_s(worker.pid) for worker in workers) - sum(cpu_up)
    for worker in workers:
        worker.wait(timeout=60)
    rates = {
        "worker_stored": (per_round - 1) / (stored - first),
        "worker_refreshed": (per_round - 1) / (refreshed - first),
        "worker_cpu_ms_per_1k": cpu_used / per_round * 1e6,
    }
    # End to end: running workers, then post; from the first POST to the last row stored.
    workers = [start_worker(env, args) for _ in range(count)]
    await asyncio.sleep(3.0)  # let them start and block on the stream
    events = make_events(per_round, args.customers, args.products, f"e{tag}", 98)
    before = await newest_id(store)
    started = time.perf_counter()
    await post_batches(url, key, chunked(events, args.batch), args.concurrency)
    stored = await wait_stored(store, before, per_round, 600)
    refreshed = await wait_refreshed(args, stream, 600)
    for worker in workers:
        os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=60)
    rates["end_to_end_stored"] = per_round / (stored - started)
    rates["end_to_end_refreshed"] = per_round / (refreshed - started)
    return rates


async def run(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    store = await open_store(database_url)
    key = await seed(store, args.customers, args.products)
    port = free_port()
    env = {**os.environ, "PERSONALIZE_DATABASE_URL": database_url, "PERSONALIZE_SECRET_KEY": SECRET}
    stream = f"bench:events:{uuid.uuid4().hex}"
    if args.redis_url:
        env |= {"PERSONALIZE_REDIS_URL": args.redis_url, "PERSONALIZE_EVENT_STREAM": stream}
    else:
        env.pop("PERSONALIZE_REDIS_URL", None)
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
    worker_rates: dict[str, list[float]] = {}
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
            if args.redis_url:
                # These events were only queued: store them (untimed) before the next
                # measurement, so that it starts from an empty stream.
                start_worker(env, args, "--until-idle").wait(timeout=600)

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
            # Each worker count in turn, in every round, so that drift hits them all.
            for count in args.workers if args.redis_url else ():
                run = (round_number, count)
                rates = await measure_worker(args, env, store, (url, key, stream), run)
                for name, rate in rates.items():
                    worker_rates.setdefault(rate_name(args, name, count), []).append(rate)
    async with store.engine.connect() as connection:
        stored = (
            await connection.execute(
                text("SELECT count(*) FROM interactions WHERE event_id LIKE 'h%'")
            )
        ).scalar()
    await store.dispose()
    if args.redis_url:
        client = redis_asyncio.from_url(args.redis_url)
        await client.delete(stream, f"{stream}:dirty", f"{stream}:dirty-version")
        await client.aclose()
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
    summary["path"] = "redis stream + worker" if args.redis_url else "sql"
    for name, rates in worker_rates.items():
        if "cpu_ms" in name:
            summary[name] = round(statistics.median(rates), 1)
        elif rates:
            summary[f"{name}_events_per_s"] = round(statistics.median(rates))
            summary[f"ratio_{name}_to_baseline"] = round(
                statistics.median(rates) / summary["baseline"]["events_per_s"], 3
            )
    return summary


def rate_name(args: argparse.Namespace, name: str, count: int) -> str:
    """The summary's name of a worker figure: as before with one worker count, else with
    the count (``worker_stored_2w``)."""
    return name if len(args.workers) == 1 else f"{name}_{count}w"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="HTTP events in total")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight")
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--products", type=int, default=500)
    add_database_url_option(parser)
    parser.add_argument("--redis-url", help="queue through a Redis Stream and time the worker")
    parser.add_argument("--worker-batch", type=int, default=1_000, help="worker batch size")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="worker process counts to measure in every round (one consumer group)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--server-log", help="append the server's output to this file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    summary = run_on_scratch(args.database_url, lambda database_url: run(args, database_url))
    if args.json:
        print(json.dumps(summary))
        return
    backend = (args.database_url or "sqlite").split(":", 1)[0]
    print(f"events through HTTP vs executemany ({backend}, {summary['path']}, batches of "
          f"{args.batch}, concurrency {args.concurrency}, {args.rounds} rounds)")  # fmt: skip
    for name in ("http", "baseline"):
        s = summary[name]
        print(
            f"  {name:9s} {s['events_per_s']:>8,} events/s   "
            f"batch p50 {s['batch_p50_ms']:7.2f} ms   p99 {s['batch_p99_ms']:7.2f} ms"
        )
    print(f"  ratio http/baseline: {summary['ratio_http_to_baseline']:.3f}")
    for count in args.workers if args.redis_url else ():
        for base in ("worker_stored", "worker_refreshed", "end_to_end_stored",
                     "end_to_end_refreshed"):  # fmt: skip
            name = rate_name(args, base, count)
            print(f"  {name:24s} {summary[f'{name}_events_per_s']:>8,} events/s   "
                  f"ratio to baseline {summary[f'ratio_{name}_to_baseline']:.3f}")  # fmt: skip
        cpu = summary[rate_name(args, "worker_cpu_ms_per_1k", count)]
        print(f"  {count} worker(s) draining: {cpu:,.0f} CPU-ms per 1,000 events (workers only)")
    print(f"  sent {summary['http_events_sent']:,}, accepted {summary['http_events_accepted']:,}, "
          f"stored {summary['http_rows_stored']:,}")  # fmt: skip


if __name__ == "__main__":
    main()
