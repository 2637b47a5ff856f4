"""A million customers: seed the shop on PostgreSQL, run the offline pipeline, serve it.

Stages, each a ``personalize`` command in a child process of its own, so its wall time,
CPU time and peak RSS (``ru_maxrss`` from ``wait4``) are its own:

1. ``db upgrade`` and ``seed-demo --no-profiles`` (COPY; chunked generation);
2. the offline pipeline: ``profile rebuild`` (profile metrics), ``train --precompute``
   (optionally only for customers active in the last N days), ``segment``, ``tag``;
3. ``serve`` with the trained models: RSS of the whole server tree (from ``/proc``) once
   it answers ``action_recommend_products`` with recommendations, and again after
   personalized answers to ``--requests`` customers.

Targets: the pipeline (stage 2) <= 10 minutes on 2 cores;
the server <= 1.5 GB RSS. Seeding drops and recreates the database the URL names (it is
the bench's own: ``million`` by default); ``--skip-seed`` reuses it as it is.

    python bench/million.py [--database-url postgresql://postgres@127.0.0.1:5432/million]
        [--customers 1000000] [--products 50000] [--interactions 10000000]
        [--precompute-active-days N] [--skip-seed] [--stages profiles,train,segment,tag]
        [--no-serve] [--work-dir /tmp/million]

The server keeps the default statement limit of 1 s (``--serve-statement-timeout-s``):
its recommendations warm up on the popularity counts training stored, not on a count
over every interaction (13 s at this size).

Prints a table; never asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from serve_footprint import free_port, recommend_call
from sqlalchemy.engine import make_url

from harness import admin_connection
from proctree import tree_rss_kb

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/million"
# A fixed secret, so that the demo customers' keys are the same in every run.
SECRET = "million-bench-secret-key-0123456789"
PIPELINE = ("profiles", "train", "segment", "tag")
TARGET_PIPELINE_S = 600.0
TARGET_SERVER_MB = 1536.0


@dataclass(frozen=True)
class Stage:
    """One measured command."""

    name: str
    seconds: float
    cpu_s: float
    peak_mb: float
    summary: str


def prepare_database(url: str, *, fresh: bool) -> None:
    """Create the database ``url`` names when missing; with ``fresh``, drop it first
    (a DELETE of ten million rows would take longer than the seed)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        raise SystemExit(f"error: {url!r} is not a PostgreSQL database URL")

    async def create() -> None:
        connection = await admin_connection(url, "postgres")
        try:
            if fresh:
                await connection.execute(
                    f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'
                )
            exists = await connection.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", parsed.database
            )
            if not exists:
                await connection.execute(f'CREATE DATABASE "{parsed.database}"')
        finally:
            await connection.close()

    asyncio.run(create())


def run_stage(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Stage:
    """Run one command to its end; its own wall time, CPU time and peak RSS."""
    log = log_dir / f"{name}.log"
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(argv[1:])}", flush=True)
    with log.open("w") as output:
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=output)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(lines[-15:])
        raise SystemExit(f"error: {name} failed (log {log}):\n{tail}")
    # The command's first line of its own, past the progress bars and table borders.
    summary = next((line for line in lines if not any(c in line for c in "━│┃╭╰┏┗")), "")
    stage = Stage(
        name, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, summary[:90]
    )
    print(
        f"[{time.strftime('%H:%M:%S')}] {name}: {seconds:.1f} s wall, {stage.cpu_s:.1f} s CPU, "
        f"peak RSS {stage.peak_mb:.0f} MB",
        flush=True,
    )
    return stage


def serve_rss(
    personalize: str, env: dict[str, str], customers: int, requests: int, timeout_s: float
) -> tuple[float, float, float, float]:
    """Start ``personalize serve``; seconds to the first personalized answer, RSS (MB)
    then, RSS after ``requests`` more customers, and the slowest of those answers (ms)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [personalize, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    start = time.perf_counter()

    def answer(user_id: str) -> bool:
        request = urllib.request.Request(
            f"{base}/webhook",
            data=recommend_call(user_id),
            headers={"Content-Type": "application/json"},
        )
        events = json.loads(urllib.request.urlopen(request, timeout=30).read())["events"]
        slots = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
        return bool(slots.get("recommended_products"))

    try:
        while True:
            if time.perf_counter() - start > timeout_s:
                raise SystemExit(f"error: the server gave no recommendations in {timeout_s} s")
            if process.poll() is not None:
                raise SystemExit("error: the server exited; run `personalize serve` to see why")
            try:
                if answer("demo-loyal"):
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.2)
        ready = time.perf_counter() - start
        first_mb = tree_rss_kb(process.pid) / 1024
        chosen = random.Random(7).sample(range(1, customers - 4), min(requests, customers - 5))
        slowest = 0.0
        for number in chosen:
            began = time.perf_counter()
            answer(f"customer-{number:05d}")
            slowest = max(slowest, time.perf_counter() - began)
        return ready, first_mb, tree_rss_kb(process.pid) / 1024, slowest * 1000
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument(
        "--precompute-active-days",
        type=int,
        help="precompute lists only for customers active in the last N days (default: all)",
    )
    parser.add_argument("--skip-seed", action="store_true", help="reuse the seeded store")
    parser.add_argument(
        "--stages",
        default=",".join(PIPELINE),
        help=f"pipeline stages to run, comma-separated (default: {','.join(PIPELINE)})",
    )
    parser.add_argument("--no-serve", action="store_true", help="do not start the server")
    parser.add_argument("--requests", type=int, default=200, help="customers asked when serving")
    parser.add_argument(
        "--serve-statement-timeout-s",
        type=float,
        default=1.0,
        help="the server's PERSONALIZE_STORE_STATEMENT_TIMEOUT_S (the setting's default)",
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/million"))
    parser.add_argument("--personalize", default=str(ROOT / ".venv" / "bin" / "personalize"))
    parser.add_argument("--timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    chosen = [name.strip() for name in args.stages.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(PIPELINE))
    if unknown:
        raise SystemExit(f"error: unknown stage(s) {', '.join(unknown)}; known: {PIPELINE}")

    prepare_database(args.database_url, fresh=not args.skip_seed)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PERSONALIZE_DATABASE_URL": args.database_url,
        "PERSONALIZE_MODEL_DIR": str(args.work_dir / "models"),
        "PERSONALIZE_SECRET_KEY": SECRET,
        # The store holds many rows: no Redis side effects from another project's cache.
        "PERSONALIZE_REDIS_URL": "",
    }
    tool = args.personalize
    stages: list[Stage] = []
    if not args.skip_seed:
        run_stage("schema", [tool, "db", "upgrade"], env, args.work_dir)
        stages.append(
            run_stage(
                "seed",
                [
                    tool, "seed-demo", "--no-profiles",
                    "--customers", str(args.customers),
                    "--products", str(args.products),
                    "--interactions", str(args.interactions),
                ],
                env,
                args.work_dir,
            )
        )  # fmt: skip
    train = [tool, "train", "--precompute"]
    if args.precompute_active_days is not None:
        train += ["--precompute-active-days", str(args.precompute_active_days)]
    commands = {
        "profiles": [tool, "profile", "rebuild"],
        "train": train,
        "segment": [tool, "segment"],
        "tag": [tool, "tag", "--rules", str(ROOT / "tags.yml")],
    }
    for name in PIPELINE:
        if name in chosen:
            stages.append(run_stage(name, commands[name], env, args.work_dir))
    print_stages(args, stages)
    if args.no_serve:
        return
    print(f"[{time.strftime('%H:%M:%S')}] serve", flush=True)
    serve_env = {
        **env,
        "PERSONALIZE_STORE_STATEMENT_TIMEOUT_S": str(args.serve_statement_timeout_s),
    }
    ready, first_mb, warm_mb, slowest_ms = serve_rss(
        tool, serve_env, args.customers, args.requests, args.timeout_s
    )
    print(
        f"serve: first personalized answer after {ready:.1f} s; server RSS {first_mb:.0f} MB "
        f"then, {warm_mb:.0f} MB after {args.requests} more customers (slowest "
        f"{slowest_ms:.0f} ms); target <= {TARGET_SERVER_MB:.0f} MB"
    )


def print_stages(args: argparse.Namespace, stages: list[Stage]) -> None:
    """The table of measured stages, with the pipeline's total."""
    print(
        f"\n{args.customers:,} customers, {args.products:,} products, "
        f"{args.interactions:,} interactions on {make_url(args.database_url).database} "
        f"({os.cpu_count()} cores, Python {sys.version.split()[0]})"
    )
    print(f"{'stage':<10} {'wall s':>8} {'CPU s':>8} {'peak RSS MB':>12}  output")
    for stage in stages:
        print(
            f"{stage.name:<10} {stage.seconds:>8.1f} {stage.cpu_s:>8.1f} "
            f"{stage.peak_mb:>12.0f}  {stage.summary}"
        )
    pipeline = [s for s in stages if s.name in PIPELINE]
    if pipeline:
        total = sum(s.seconds for s in pipeline)
        print(
            f"{'pipeline':<10} {total:>8.1f} {sum(s.cpu_s for s in pipeline):>8.1f} "
            f"{max(s.peak_mb for s in pipeline):>12.0f}  target <= {TARGET_PIPELINE_S:.0f} s"
        )
    print(flush=True)


if __name__ == "__main__":
    main()
