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

Paced mode (``--rate``, PostgreSQL and Redis): freshness under a sustained load rather
than throughput. The server and the workers run as in the other mode, on a scratch
database per worker count; after a warm-up, batches are posted open loop, batch i at
``i * batch / rate`` s whatever the answers (at most ``--connections`` requests in
flight, like a forwarder's connection pool; a 503 is sent again). For the events of every
``--track-every``'th customer the bench notes when each was due, and polls those
customers' profiles every ``--poll-ms``: the k-th event of a customer is reflected once
the interaction count of its stored metrics reaches k (metrics and tags are written in
one transaction, so tags are then current too; see ``freshness.py``). Reported: p50,
p99 and max of due -> reflected, per 10 s of posting too (a pipeline that keeps up holds
them level); the stream's length (messages of up to 100 events) and the dirty customers
twice a second; the rate sent and answered, how late the sender ran, 503s; and the CPU
seconds of the workers, the server, the bench, PostgreSQL and Redis (when they run on
this machine), with how busy the whole machine was. ``--py-spy PREFIX`` records each
worker with py-spy for the run.

    python bench/events_throughput.py --rate 5000 --duration 60 [--workers 1 2]
                                      --database-url postgresql://...
                                      --redis-url redis://127.0.0.1:6379/13
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import shutil
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
from freshness import FreshnessTracker
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from redis import asyncio as redis_asyncio
from sqlalchemy import insert, select, text

from harness import (
    add_database_url_option,
    admin_connection,
    autovacuum_is_on,
    percentile,
    run_on_scratch,
    stand_in_for_autovacuum,
)
from proctree import CLOCK_TICKS, tree_cpu_s
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.identity import customer_key
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.repository import rebuild_profile_metrics
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


async def seed_history(store: SqlStore, customers: int, products: int, per_customer: int) -> None:
    """Every customer stored, with ``per_customer`` interactions each from the 60 days
    before the run's events (written directly, as an import would), and their profiles
    built from them: histories of a shop that has been running a while."""
    async with store.sessions.begin() as session:
        await session.execute(
            insert(Customer),
            [
                {"customer_key": customer_key(SECRET, f"customer-{n:05d}"), "created_at": START,
                 "loyalty_tier": "none"}
                for n in range(1, customers, 2)
            ],
        )  # fmt: skip
    ids = await resolve_ids(store, customers)
    rng = random.Random(17)
    rows = []
    for n in range(customers):
        customer_id = ids["customers"][f"customer-{n:05d}"]
        for k in range(per_customer):
            kind = rng.choice(KINDS)
            when = START - timedelta(seconds=rng.randrange(60 * 86_400))
            rows.append({
                "event_id": f"history-{n}-{k}", "customer_id": customer_id,
                "product_id": None if kind == "search"
                else ids["products"][f"SKU-{rng.randrange(products):04d}"],
                "kind": kind, "value": None, "quantity": 1,
                "price": 20.0 if kind == "purchase" else None, "channel": "web",
                "device": "mobile", "occurred_at": when,
            })  # fmt: skip
    for start in range(0, len(rows), 20_000):
        async with store.sessions.begin() as session:
            await session.execute(insert(Interaction), rows[start : start + 20_000])
    async with store.sessions.begin() as session:
        await rebuild_profile_metrics(session)
    if store.engine.dialect.name == "postgresql":
        async with store.engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("ANALYZE"))


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


def events_server(args: argparse.Namespace, env: dict[str, str], port: int) -> ServerProcess:
    """This script's ``--serve`` mode on ``port``, as a separate process with ``env``."""
    root = SCRIPT.parent.parent
    return ServerProcess(
        [sys.executable, str(SCRIPT), "--serve", str(port)],
        f"http://127.0.0.1:{port}/health",
        env={**env, "PYTHONPATH": str(root)},
        cwd=root,
        log_path=Path(args.server_log) if args.server_log else None,
    )


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
    server = events_server(args, env, port)
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
        await client.delete(*stream_keys(stream))
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


# Two primary-key lookups. One join keyed by customer key was planned as a scan of all
# profiles, which without autovacuum hold every version a refresh wrote: polled ten
# times a second it cost PostgreSQL more CPU than the pipeline it measured.
CUSTOMER_IDS = "SELECT customer_key, id FROM customers WHERE customer_key = ANY($1::text[])"
PROFILE_COUNTS = """
SELECT customer_id, (metrics ->> 'interaction_count')::int
FROM customer_profiles WHERE customer_id = ANY($1::bigint[])
"""


class ProfileCounts:
    """Reads the interaction count each tracked customer's stored metrics were computed
    from; resolves keys to ids once (asking again only for customers not created yet)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.ids: dict[int, str] = {}

    async def read(self, connection: Any) -> dict[str, int]:
        """customer key -> interaction count (customers without a profile left out)."""
        if len(self.ids) < len(self.keys):
            known = set(self.ids.values())
            missing = [key for key in self.keys if key not in known]
            for key, customer_id in await connection.fetch(CUSTOMER_IDS, missing):
                self.ids[int(customer_id)] = key
        rows = await connection.fetch(PROFILE_COUNTS, list(self.ids))
        return {self.ids[int(row[0])]: int(row[1] or 0) for row in rows}


def paced_batches(
    args: argparse.Namespace, tracked: dict[str, str]
) -> list[tuple[bytes, list[str]]]:
    """The paced run's request bodies, encoded before the clock starts, each with the
    keys of the tracked customers of its events (in order)."""
    total = int(args.rate * args.duration)
    events = make_events(total, args.customers, args.products, "paced", 7)
    return [
        (
            json.dumps({"events": batch}).encode(),
            [tracked[e["customer"]] for e in batch if e["customer"] in tracked],
        )
        for batch in chunked(events, args.batch)
    ]


async def send_on_schedule(
    url: str,
    key: str,
    batches: list[tuple[bytes, list[str]]],
    pace: tuple[float, int],
    tracker: Any,
) -> dict[str, float]:
    """Open loop: batch i is sent at ``i * batch / rate`` s whatever the answers so far.

    Latencies count from the scheduled time, so a sender that falls behind (or requests
    that wait for a connection) is charged to the pipeline, never hidden.
    """
    rate, max_in_flight_requests = pace
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    answers: list[float] = []
    accepted = retried = 0
    in_flight = max_in_flight = 0
    max_lag = 0.0
    pending: set[asyncio.Task[None]] = set()
    # A shop's event forwarder holds a bounded pool of connections: batches beyond it wait
    # in the client (still timed from their schedule) instead of piling onto the server.
    connector = aiohttp.TCPConnector(limit=max_in_flight_requests)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes, due: float) -> None:
            nonlocal accepted, in_flight, retried
            while True:
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.json()
                    if response.status == 200:
                        break
                    if response.status != 503:
                        raise SystemExit(f"HTTP {response.status}: {answer}")
                # An overloaded store answers 503 (retry later): a client sends the batch
                # again, and its events' latencies still count from the first schedule.
                retried += 1
                await asyncio.sleep(0.1)
            accepted += len(answer["accepted"])
            answers.append(time.perf_counter() - due)
            in_flight -= 1

        interval = len(json.loads(batches[0][0])["events"]) / rate
        started = time.perf_counter() + 0.05
        for n, (body, customers) in enumerate(batches):
            due = started + n * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            max_lag = max(max_lag, time.perf_counter() - due)
            for customer in customers:
                tracker.posted(customer, due)
            in_flight += 1
            max_in_flight = max(max_in_flight, in_flight)
            task = asyncio.create_task(post(body, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        sent = time.perf_counter()
        await asyncio.gather(*pending)
        finished = time.perf_counter()
    return {
        "accepted": accepted,
        "send_s": sent - started,
        "answered_s": finished - started,
        "max_send_lag_s": max_lag,
        "max_in_flight": min(max_in_flight, max_in_flight_requests),
        "max_queued_in_client": max(0, max_in_flight - max_in_flight_requests),
        "retried_503": retried,
        "http_p50_ms": statistics.median(answers) * 1000,
        "http_p99_ms": percentile(answers, 99) * 1000,
    }


async def watch(
    args: argparse.Namespace,
    database_url: str,
    stream: str,
    tracker: FreshnessTracker,
    stop: asyncio.Event,
) -> list[tuple[float, int, int]]:
    """Poll the tracked profiles every ``--poll-ms`` and the stream's length and dirty
    set twice a second until ``stop``; returns (time, stream messages, dirty customers)."""
    connection = await admin_connection(database_url)
    client = redis_asyncio.from_url(args.redis_url)
    counter = ProfileCounts(tracker.tracked)
    samples: list[tuple[float, int, int]] = []
    next_sample = 0.0
    try:
        while not stop.is_set():
            counts = await counter.read(connection)
            # After the read: an upper bound on when the rows it saw were committed.
            at = time.perf_counter()
            for customer, count in counts.items():
                tracker.observed(customer, count, at)
            if at >= next_sample:
                length, dirty = await asyncio.gather(
                    client.xlen(stream), client.zcard(f"{stream}:dirty")
                )
                samples.append((at, int(length), int(dirty)))
                next_sample = at + 0.5
            await _sleep_or_stop(stop, args.poll_ms / 1000)
    finally:
        await connection.close()
        await client.aclose()
    return samples


async def maintain(
    args: argparse.Namespace, database_url: str, stop: asyncio.Event
) -> dict[str, Any]:
    """The database's upkeep during the run: PostgreSQL's own autovacuum, or the bench's
    stand-in for it when the server runs without (as CI servers do)."""
    if not database_url.startswith("postgresql") or await autovacuum_is_on(database_url):
        return {"by": "server"}
    runs = await stand_in_for_autovacuum(database_url, stop, args.autovacuum_every)
    return {"by": "bench", "every_s": args.autovacuum_every, **runs}


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


def start_py_spy(args: argparse.Namespace, workers: list[Any]) -> list[Any]:
    """``py-spy record`` of each worker for the paced run (raw collapsed stacks)."""
    if not args.py_spy:
        return []
    binary = shutil.which("py-spy") or os.environ.get("PY_SPY")
    if binary is None:
        raise SystemExit("--py-spy needs py-spy on the PATH (or its path in $PY_SPY)")
    seconds = str(int(args.duration) + 5)
    spies = []
    for n, worker in enumerate(workers):
        output = f"{args.py_spy}-{len(workers)}w-{n}.txt"
        command = [binary, "record", "--pid", str(worker.pid), "--rate", "50", "--nonblocking",
                   "--format", "raw", "--duration", seconds, "--output", output]  # fmt: skip
        spies.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    return spies


def windows(
    reflected: list[tuple[float, float]], started: float, width_s: float
) -> list[dict[str, float]]:
    """p50 and p99 of POST -> reflected by when the events were posted (``width_s``
    windows): a pipeline that keeps up holds them level, one that falls behind grows."""
    by_window: dict[int, list[float]] = {}
    for posted_at, latency in reflected:
        by_window.setdefault(int((posted_at - started) // width_s), []).append(latency)
    return [
        {"from_s": n * width_s, "events": len(values),
         "p50_s": round(statistics.median(values), 3), "p99_s": round(percentile(values, 99), 3)}
        for n, values in sorted(by_window.items())
    ]  # fmt: skip


async def run_paced(args: argparse.Namespace, database_url: str, count: int) -> dict[str, Any]:
    """``count`` workers under ``--rate`` events/s for ``--duration`` s: POST -> metrics
    and tags reflected, the stream's length, and the rate achieved."""
    store = await open_store(database_url)
    key = await seed(store, args.customers, args.products)
    if args.history:
        await seed_history(store, args.customers, args.products, args.history)
    await store.dispose()
    port = free_port()
    stream = f"bench:events:{uuid.uuid4().hex}"
    env = {**os.environ, "PERSONALIZE_DATABASE_URL": database_url,
           "PERSONALIZE_SECRET_KEY": SECRET, "PERSONALIZE_REDIS_URL": args.redis_url,
           "PERSONALIZE_EVENT_STREAM": stream}  # fmt: skip
    server = events_server(args, env, port)
    url = f"http://127.0.0.1:{port}/personalize/events"
    # Every --track-every'th customer: its events are the sample whose freshness is timed.
    tracked = {
        f"customer-{n:05d}": customer_key(SECRET, f"customer-{n:05d}")
        for n in range(0, args.customers, args.track_every)
    }
    batches = paced_batches(args, tracked)
    extra = shlex.split(args.worker_args or "")
    client = redis_asyncio.from_url(args.redis_url)
    with server:
        workers = [start_worker(env, args, *extra) for _ in range(count)]
        try:
            # Warm up the server and the workers, then start from an empty stream.
            warm = make_events(1_000, args.customers, args.products, "warm", 0)
            if args.history:
                # One event per customer, so that every customer's first refresh (its
                # running totals summed from its history) happens before the timing.
                warm = make_events(args.customers, args.customers, args.products, "warm", 0)
                for n, event in enumerate(warm):
                    event["customer"] = f"customer-{n:05d}"
            await post_batches(url, key, chunked(warm, args.batch), 4)
            await wait_drained(client, stream, 120)
            connection = await admin_connection(database_url)
            try:
                tracker = FreshnessTracker(
                    await ProfileCounts(list(tracked.values())).read(connection)
                )
                tracker.counts |= {k: 0 for k in tracked.values() if k not in tracker.counts}
            finally:
                await connection.close()
            spies = start_py_spy(args, workers)
            pids = [worker.pid for worker in workers] + [server.pid]
            services = local_server_pids()
            cpu_before = [tree_cpu_s(pid) for pid in pids]
            services_before = {name: server_cpu_s(pid) for name, pid in services.items()}
            bench_before, machine_before = time.process_time(), machine_busy()
            load_before = os.getloadavg()
            stop = asyncio.Event()
            watcher = asyncio.create_task(watch(args, database_url, stream, tracker, stop))
            maintenance = asyncio.create_task(maintain(args, database_url, stop))
            started = time.perf_counter()
            pace = (args.rate, args.connections)
            sent = await send_on_schedule(url, key, batches, pace, tracker)
            posted_until = time.perf_counter()
            # Then until every tracked event is reflected (or a minute has passed).
            deadline = posted_until + 60
            # The watcher updates the tracker: poll it, as it polls the store.
            while tracker.pending and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            caught_up = time.perf_counter()
            stop.set()
            samples = await watcher
            maintained = await maintenance
            cpu_after = [tree_cpu_s(pid) for pid in pids]
            services_used = {
                name: server_cpu_s(pid) - services_before[name] for name, pid in services.items()
            }
            bench_used = time.process_time() - bench_before
            machine_after = machine_busy()
            load_after = os.getloadavg()
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=60)
        for spy in spies:
            spy.wait(timeout=60)
        await client.delete(*stream_keys(stream))
        await client.aclose()
    latencies = [latency for _, latency in tracker.reflected]
    during = [s for s in samples if s[0] <= posted_until]
    cpu = [after - before for before, after in zip(cpu_before, cpu_after, strict=True)]
    return {
        "workers": count,
        "target_events_per_s": round(args.rate),
        "sent_events_per_s": round(len(batches) * args.batch / sent["send_s"]),
        "accepted_events_per_s": round(sent["accepted"] / sent["answered_s"]),
        "accepted": sent["accepted"],
        "max_send_lag_ms": round(sent["max_send_lag_s"] * 1000, 1),
        "max_in_flight": sent["max_in_flight"],
        "max_queued_in_client": sent["max_queued_in_client"],
        "retried_503": sent["retried_503"],
        "http_p50_ms": round(sent["http_p50_ms"], 1),
        "http_p99_ms": round(sent["http_p99_ms"], 1),
        "tracked_events": len(latencies) + tracker.pending,
        "not_reflected": tracker.pending,
        "reflected_p50_s": round(statistics.median(latencies), 3),
        "reflected_p99_s": round(percentile(latencies, 99), 3),
        "reflected_max_s": round(max(latencies), 3),
        "stream_max_messages": max(s[1] for s in during),
        "stream_at_end_messages": during[-1][1],
        "dirty_max": max(s[2] for s in during),
        "dirty_at_end": during[-1][2],
        "caught_up_after_s": round(caught_up - posted_until, 2),
        "stream_over_time": [(round(t - started), n) for t, n, _ in during[::10]],
        "windows": windows(tracker.reflected, started, 10.0),
        "worker_cpu_s": round(sum(cpu[:-1]), 1),
        "server_cpu_s": round(cpu[-1], 1),
        "bench_cpu_s": round(bench_used, 1),
        **{f"{name}_cpu_s": round(used, 1) for name, used in services_used.items()},
        # Every process on the machine, this run's and others': how saturated it was.
        "machine_busy_share": round(
            (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1]), 3
        ),
        "measured_s": round(caught_up - started, 1),
        "autovacuum": maintained,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }


def local_server_pids() -> dict[str, int]:
    """PostgreSQL's postmaster and redis-server when they run on this machine (their CPU
    counts in the paced run's figures); an empty dict when they do not."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # redis-server rewrites its title to one argument ("redis-server 127.0.0.1:6379").
        program = Path(arguments[0].decode(errors="replace").split(" ")[0]).name
        if program == "postgres" and b"-D" in arguments:
            found["postgres"] = int(entry.name)
        elif program == "redis-server":
            found["redis"] = int(entry.name)
    return found


def server_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``'s tree plus its reaped children (PostgreSQL backends that
    ended meanwhile)."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return tree_cpu_s(pid) + (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every core."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


async def wait_drained(client: Any, stream: str, timeout_s: float) -> None:
    """Until the stream and the dirty set are empty."""
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        if not await client.xlen(stream) and not await client.zcard(f"{stream}:dirty"):
            return
        await asyncio.sleep(0.05)
    raise SystemExit("the workers did not drain the warm-up events")


def print_paced(summary: dict[str, Any]) -> None:
    s = summary
    print(
        f"  {s['workers']} worker(s): sent {s['sent_events_per_s']:,} events/s (target "
        f"{s['target_events_per_s']:,}), answered {s['accepted_events_per_s']:,}/s; "
        f"sender lag max {s['max_send_lag_ms']} ms, {s['max_in_flight']} requests in "
        f"flight and {s['max_queued_in_client']} waiting for a connection at most, "
        f"{s['retried_503']} retried after a 503, HTTP p50 "
        f"{s['http_p50_ms']} ms p99 {s['http_p99_ms']} ms"
    )
    print(
        f"    POST -> metrics and tags reflected ({s['tracked_events']:,} tracked events, "
        f"{s['not_reflected']} not reflected): p50 {s['reflected_p50_s']:.3f} s  "
        f"p99 {s['reflected_p99_s']:.3f} s  max {s['reflected_max_s']:.3f} s"
    )
    print(
        f"    stream: max {s['stream_max_messages']} messages, {s['stream_at_end_messages']} "
        f"when posting ended; dirty customers max {s['dirty_max']}, {s['dirty_at_end']} at "
        f"the end; all reflected {s['caught_up_after_s']} s after the last POST"
    )
    print(f"    stream messages over time (s, messages): {s['stream_over_time']}")
    for w in s["windows"]:
        print(
            f"    posted from {w['from_s']:>4.0f} s: {w['events']:>6,} events  "
            f"p50 {w['p50_s']:.3f} s  p99 {w['p99_s']:.3f} s"
        )
    print(f"    CPU s over {s['measured_s']} s: workers {s['worker_cpu_s']}, server "
          f"{s['server_cpu_s']}, bench {s['bench_cpu_s']}, PostgreSQL "
          f"{s.get('postgres_cpu_s', '-')}, Redis {s.get('redis_cpu_s', '-')}; machine busy "
          f"{s['machine_busy_share']:.0%}; load average {s['load_before']} before, "
          f"{s['load_after']} after")  # fmt: skip
    upkeep = s["autovacuum"]
    if upkeep["by"] == "bench":
        print(f"    the server runs without autovacuum: the bench stood in for it every "
              f"{upkeep['every_s'] or 'autovacuum_naptime'} s ({upkeep['vacuum']} VACUUM, "
              f"{upkeep['analyze']} ANALYZE runs)")  # fmt: skip


def stream_keys(stream: str) -> list[str]:
    """The stream and the worker's keys beside it (dirty customers and their versions)."""
    return [stream + suffix for suffix in ("", ":dirty", ":dirty-version", ":dirty-latest",
                                           ":dirty-claims")]  # fmt: skip


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
    parser.add_argument("--worker-batch", type=int, default=5_000, help="worker batch size")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="worker process counts to measure in every round (one consumer group)",
    )
    parser.add_argument(
        "--rate", type=float, help="paced mode: post this many events/s (needs --redis-url)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="paced mode: seconds")
    parser.add_argument(
        "--connections", type=int, default=16, help="paced mode: requests in flight at most"
    )
    parser.add_argument(
        "--track-every", type=int, default=10, help="paced mode: time every n-th customer"
    )
    parser.add_argument("--poll-ms", type=float, default=100.0, help="paced mode: profile polls")
    parser.add_argument(
        "--autovacuum-every",
        type=float,
        help="paced mode, on a PostgreSQL server without autovacuum: run its stand-in this "
        "often (s; default: the server's autovacuum_naptime)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="paced mode: interactions per customer stored before the run (default: none)",
    )
    parser.add_argument("--worker-args", help="paced mode: more `personalize worker` options")
    parser.add_argument(
        "--py-spy",
        metavar="PREFIX",
        help="paced mode: record each worker to PREFIX-<count>w-<n>.txt (py-spy's raw format)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--server-log", help="append the server's output to this file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.rate:
        if not (args.redis_url and args.database_url):
            raise SystemExit("--rate measures the stream: give --redis-url and --database-url")
        # Each worker count on a database of its own, so that histories start equal.
        paced = [
            run_on_scratch(
                args.database_url,
                lambda database_url, count=count: run_paced(args, database_url, count),
            )
            for count in args.workers
        ]
        if args.json:
            print(json.dumps(paced))
            return
        print(f"paced: {args.rate:,.0f} events/s for {args.duration:.0f} s in batches of "
              f"{args.batch}, {args.customers:,} customers, every {args.track_every}th timed, "
              f"profiles polled every {args.poll_ms:.0f} ms")  # fmt: skip
        for summary in paced:
            print_paced(summary)
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
