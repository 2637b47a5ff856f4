"""Webhook throughput with more than one server process: 1 and 2 workers in the same run.

``action_session_start`` on ``personalize serve --workers N`` against the stock rasa-sdk
no-op with ``ACTION_SERVER_SANIC_WORKERS=N`` (``bench/webhook_throughput.py`` describes
the baseline, the load and the figures; this script reuses its code). For each worker
count N it runs, all at once, in alternating rounds:

- the stock no-op server with N Sanic workers;
- ours on a copy of the seeded SQLite demo store (``make seed``), without Redis;
- with ``--postgres-url``, ours on PostgreSQL + Redis: a scratch database on that server,
  filled like ``make seed`` (``seed-demo``, ``segment``, ``tag``; no model training,
  session start reads none) and dropped at the end, and the Redis database of
  ``--redis-url``, which must be empty and is emptied at the end. All its servers share
  that store and that Redis, as replicas do.
- with ``--existing-postgres URL`` instead, ours on that database as it is (the million
  customers of ``bench/million.py``, say; ``--customers`` must say how many it holds;
  nothing is written into it but what serving writes) with Redis warm (the requests'
  customers asked before, in the warm-up) and, as a target of its own, with Redis
  cold: the Redis database is emptied before each run, and each run asks customers
  that no earlier run of that target asked (``--cold-bodies`` distinct ones in all).

Per target, medians over rounds: req/s, p50, p99, server CPU per 1,000 requests (whole
process tree), the ratios N workers / 1 worker and to the no-op with as many workers,
both taken round by round. For PostgreSQL + Redis also the store's CPU per 1,000
requests: the PostgreSQL backends of the scratch database and the whole redis-server
process (other users of that Redis count too).

    python bench/webhook_workers.py [--workers 1 2] [--rounds 3] [--duration 10]
        [--connections 32] [--postgres-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--redis-url redis://127.0.0.1:6379/14] [--json]
    python bench/webhook_workers.py --workers 1 --customers 1000000 \
        --existing-postgres postgresql://postgres@127.0.0.1:5432/million \
        --secret-key million-bench-secret-key-0123456789
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from sqlalchemy.engine import make_url
from webhook_throughput import (
    DEMO_SECRET,
    NOOP_ACTION,
    Runner,
    add_server_options,
    alternate,
    call_body,
    check_stock,
    check_wrk,
    customer_ids,
    http,
    medians,
    our_server,
    run_wrk,
    scratch_store,
    stock_server,
    write_bodies,
)

from harness import admin_connection, scratch_postgres
from proctree import tree_cpu_s

SESSION_START = "action_session_start"
# (store, label): the no-op first in every round, then ours per store.
STORES = (
    ("noop", "no-op, stock rasa-sdk"),
    ("sqlite", "session start, SQLite"),
    ("postgres", "session start, PostgreSQL + Redis"),
    ("pgcold", "session start, PostgreSQL + Redis cold"),
)


def seed_postgres(args: argparse.Namespace, url: str, models: Path) -> None:
    """Fill the scratch database as ``make seed`` fills the demo store (no training)."""
    env = {**DEMO_SECRET, **os.environ, "PERSONALIZE_MODEL_DIR": str(models)}
    env.pop("PERSONALIZE_REDIS_URL", None)
    steps = (["db", "upgrade"], ["seed-demo", "--customers", str(args.customers)])
    for step in (*steps, ["segment"], ["tag"]):
        done = subprocess.run(  # our own command line
            [args.personalize, *step, "--database-url", url],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"personalize {step[0]} failed:\n{done.stdout}{done.stderr}")


def empty_redis(url: str) -> redis.Redis:
    """A client of the bench's Redis database, which must hold nothing yet."""
    client = redis.Redis.from_url(url)
    if client.dbsize():
        raise SystemExit(f"{url} holds keys: give the bench an empty Redis database")
    return client


def store_cpu(database_url: str, client: redis.Redis) -> Callable[[], dict[int, float]]:
    """A function giving the CPU seconds so far of each PostgreSQL backend connected to
    the scratch database, and of the redis-server process, by pid."""
    parsed = make_url(database_url)
    redis_pid = int(client.info("server")["process_id"])

    async def backends() -> list[int]:
        connection = await admin_connection(database_url, "postgres")
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", parsed.database
            )
        finally:
            await connection.close()
        return [row["pid"] for row in rows]

    def sample() -> dict[int, float]:
        pids = [*asyncio.run(backends()), redis_pid]
        return {pid: tree_cpu_s(pid) for pid in pids}

    return sample


def with_store_cpu(sample: Callable[[], dict[int, float]]) -> Runner:
    """:func:`run_wrk` that also reports the store's CPU time during the run (backends
    opened during the run count from zero; backends closed during it are missed)."""

    def run(
        args: argparse.Namespace, base: str, bodies: Path, pid: int, seconds: float
    ) -> dict[str, float]:
        before = sample()
        figures = run_wrk(args, base, bodies, pid, seconds)
        after = sample()
        used = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
        return {**figures, "store_cpu_ms_per_1k": used / figures["requests"] * 1e6}

    return run


def check_ours(base: str) -> None:
    """Ours answers session start with the demo store's data (demo-loyal is gold)."""
    status, answer = http("POST", f"{base}/webhook", call_body(SESSION_START, "demo-loyal"))
    if status != 200:
        raise SystemExit(f"{base}: session start answered {status}")
    slots = {e["name"]: e["value"] for e in answer["events"] if e["event"] == "slot"}
    if slots.get("loyalty_tier") != "gold":
        raise SystemExit(f"{base}: demo-loyal is not gold ({slots.get('loyalty_tier')!r})")


def cold_runner(runner: Runner, client: redis.Redis, cold: set[str]) -> Runner:
    """``runner`` that empties the Redis database before each run of a cold target, so
    that no profile is cached (the customers of its bodies are asked once each)."""

    def run(
        args: argparse.Namespace, base: str, bodies: Path, pid: int, seconds: float
    ) -> dict[str, float]:
        if str(bodies) in cold:
            client.flushdb()
        return runner(args, base, bodies, pid, seconds)

    return run


def next_database(redis_url: str) -> str:
    """The URL of the Redis database after ``redis_url``'s (the cold runs' own)."""
    parsed = urlsplit(redis_url)
    number = int(parsed.path.strip("/") or 0) + 1
    return urlunsplit(parsed._replace(path=f"/{number}"))


def cold_bodies(args: argparse.Namespace, scratch: Path) -> list[Path]:
    """One file per cold run (warm-ups, then each round's), each with customers of its own."""
    users = customer_ids(args.cold_bodies, args.customers, seed=1)
    runs = (args.rounds + 1) * len(args.workers)
    share = len(users) // runs
    return [
        write_bodies(scratch / f"cold-{n}.jsonl", SESSION_START, users[n * share : (n + 1) * share])
        for n in range(runs)
    ]


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, list[dict[str, float]]]:
    """Start every server, check them, run the rounds; per-round figures per target."""
    users = customer_ids(args.bodies, args.customers, seed=0)
    bodies = {
        "noop": write_bodies(scratch / "noop.jsonl", NOOP_ACTION, users),
        "ours": write_bodies(scratch / "ours.jsonl", SESSION_START, users),
    }
    envs = {"sqlite": {**scratch_store(scratch), "PERSONALIZE_REDIS_URL": ""}}
    runner: Runner = run_wrk
    cold: list[Path] = []
    with ExitStack() as stack:
        if args.existing_postgres:
            # That database as it is, Redis warm and cold (a Redis database each, so
            # that emptying the cold one leaves the warm one warm); no SQLite demo store.
            client = empty_redis(args.redis_url)
            cold_url = next_database(args.redis_url)
            cold_client = empty_redis(cold_url)
            for each in (client, cold_client):
                stack.callback(each.close)
                stack.callback(each.flushdb)
            database = {"PERSONALIZE_DATABASE_URL": args.existing_postgres}
            if args.secret_key:
                database["PERSONALIZE_SECRET_KEY"] = args.secret_key
            envs = {
                "postgres": {**database, "PERSONALIZE_REDIS_URL": args.redis_url},
                "pgcold": {**database, "PERSONALIZE_REDIS_URL": cold_url},
            }
            cold = cold_bodies(args, scratch)
            runner = cold_runner(
                with_store_cpu(store_cpu(args.existing_postgres, client)),
                cold_client,
                {str(path) for path in cold},
            )
        elif args.postgres_url:
            database_url = stack.enter_context(scratch_postgres(args.postgres_url))
            client = empty_redis(args.redis_url)
            stack.callback(client.close)
            stack.callback(client.flushdb)
            seed_postgres(args, database_url, scratch / "models")
            envs["postgres"] = {
                "PERSONALIZE_DATABASE_URL": database_url,
                "PERSONALIZE_REDIS_URL": args.redis_url,
                "PERSONALIZE_MODEL_DIR": str(scratch / "models"),
            }
            # Every run samples the store; only PostgreSQL + Redis runs report it.
            runner = with_store_cpu(store_cpu(database_url, client))
        runs = []
        for store, label in STORES:
            for workers in args.workers:
                key = f"{store}-{workers}"
                if store == "noop":
                    pid, base = stack.enter_context(stock_server(scratch, workers, key))
                    check_stock(base)
                elif store in envs:
                    pid, base = stack.enter_context(
                        our_server(args, scratch, workers, envs[store], key)
                    )
                    check_ours(base)
                else:
                    continue
                body = bodies["noop" if store == "noop" else "ours"]
                if store == "pgcold":
                    # A file per run: the warm-up's, then each round's (alternate's order).
                    body = cold[0]
                runs.append((key, f"{label}, {workers} worker(s)", base, pid, body))
        if not cold:
            return alternate(args, runs, runner)
        files = iter(cold)

        def next_cold(
            args: argparse.Namespace, base: str, bodies: Path, pid: int, seconds: float
        ) -> dict[str, float]:
            if bodies == cold[0]:
                bodies = next(files)
            return runner(args, base, bodies, pid, seconds)

        return alternate(args, runs, next_cold)


def summarize(
    args: argparse.Namespace, rounds: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    """Medians over rounds; ratios to 1 worker and to the no-op with as many workers, round
    by round, then their median and range."""

    def ratios(runs: list[dict[str, float]], bases: list[dict[str, float]]) -> dict[str, Any]:
        rps = [r["rps"] / b["rps"] for r, b in zip(runs, bases, strict=True)]
        cpu = [
            r["server_cpu_ms_per_1k"] / b["server_cpu_ms_per_1k"]
            for r, b in zip(runs, bases, strict=True)
        ]
        return {
            "rps": statistics.median(rps),
            "rps_range": [min(rps), max(rps)],
            "cpu": statistics.median(cpu),
            "cpu_range": [min(cpu), max(cpu)],
        }

    one = min(args.workers)
    figures: dict[str, Any] = {}
    for key, runs in rounds.items():
        store, workers = key.rsplit("-", 1)
        figures[key] = {
            **medians(runs),
            "vs_one_worker": ratios(runs, rounds[f"{store}-{one}"]),
            "vs_noop": ratios(runs, rounds[f"noop-{workers}"]),
            "wrk_cpu_per_server_cpu": sum(r["wrk_cpu_s"] for r in runs)
            / sum(r["server_cpu_s"] for r in runs),
            "rounds": runs,
        }
        if store in ("postgres", "pgcold"):
            figures[key]["store_cpu_ms_per_1k"] = statistics.median(
                r["store_cpu_ms_per_1k"] for r in runs
            )
    return {"targets": figures}


def print_report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    print(
        f"webhook with more than one worker: wrk -t{args.threads} -c{args.connections}, "
        f"{args.rounds} rounds x {args.duration:g} s per target; medians over rounds, "
        "ratios round by round"
    )
    header = ("req/s", "p50 ms", "p99 ms", "CPU ms/1k", "cores", "req/s /1w", "CPU /1w")
    header += ("req/s /noop", "CPU /noop")
    print(f"{'target':<46}" + "".join(f"{h:>12}" for h in header))
    for key, f in summary["targets"].items():
        label = key.replace("-", ", ") + " worker(s)"
        one, noop = f["vs_one_worker"], f["vs_noop"]
        print(
            f"{label:<46}{f['rps']:>12.0f}{f['p50_ms']:>12.2f}{f['p99_ms']:>12.2f}"
            f"{f['server_cpu_ms_per_1k']:>12.0f}{f['server_cores']:>12.2f}"
            f"{one['rps']:>12.2f}{one['cpu']:>12.2f}{noop['rps']:>12.2f}{noop['cpu']:>12.2f}"
        )
    print("ranges over rounds (req/s vs 1 worker; vs the no-op):")
    for key, f in summary["targets"].items():
        (a, b), (c, d) = f["vs_one_worker"]["rps_range"], f["vs_noop"]["rps_range"]
        print(f"  {key:<14}{a:.2f} to {b:.2f}; {c:.2f} to {d:.2f}")
    for key, f in summary["targets"].items():
        if "store_cpu_ms_per_1k" in f:
            print(
                f"store CPU ({key}): {f['store_cpu_ms_per_1k']:.0f} ms per 1,000 requests "
                "(PostgreSQL backends of the database + redis-server)"
            )
    worst = max(summary["targets"].values(), key=lambda f: f["wrk_cpu_per_server_cpu"])
    load = summary["loadavg"]
    print(f"machine: {os.cpu_count()} cores; /proc/loadavg before: {load[0]}; after: {load[1]}")
    print(f"load generator: wrk used at most {worst['wrk_cpu_per_server_cpu']:.2f} CPU-s per "
          "server CPU-s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--customers", type=int, default=2000, help="seeded customer count")
    parser.add_argument("--bodies", type=int, default=2000, help="distinct requests per target")
    parser.add_argument(
        "--postgres-url",
        help="also measure on PostgreSQL + Redis: a scratch database on this server is "
        "seeded and dropped at the end",
    )
    parser.add_argument(
        "--existing-postgres",
        help="instead: ours on this PostgreSQL database as it is (with Redis warm and "
        "cold), not on the SQLite demo store; --customers says how many it holds",
    )
    parser.add_argument(
        "--secret-key",
        help="with --existing-postgres: the secret its customer keys were made with "
        "(bench/million.py's: million-bench-secret-key-0123456789); default: the demo's",
    )
    parser.add_argument(
        "--cold-bodies",
        type=int,
        default=60_000,
        help="distinct customers over all Redis-cold runs (each asked once)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/14",
        help="an empty Redis database for the PostgreSQL runs (emptied at the end)",
    )
    add_server_options(parser)
    args = parser.parse_args()
    check_wrk(args.wrk)
    args.workers = sorted(set(args.workers))
    if args.existing_postgres and args.postgres_url:
        parser.error("--existing-postgres and --postgres-url exclude each other")

    # Other jobs on the machine slow every server; the figures say how busy it was.
    load_before = Path("/proc/loadavg").read_text().strip()
    with tempfile.TemporaryDirectory(prefix="webhook-workers-") as scratch:
        summary = summarize(args, measure(args, Path(scratch)))
    summary["loadavg"] = [load_before, Path("/proc/loadavg").read_text().strip()]
    if args.json:
        print(json.dumps({"config": vars(args), **summary}))
    else:
        print_report(args, summary)


if __name__ == "__main__":
    main()
