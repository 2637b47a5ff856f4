"""Webhook throughput: a no-op action vs action_session_start on the seeded store.

Starts `personalize serve` (one worker) with the no-op baseline action registered, posts a
realistic tracker (about 5 kB, 30 events) with 16 concurrent connections, and prints req/s,
p50 and p99 for both actions, measured in alternating rounds of the same run, and the ratio
session_start / no-op. Run after `personalize seed-demo` (``make bench`` does both).

    python bench/webhook_throughput.py [--requests 2000] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import aiohttp

from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.testing import action_call

ROOT = Path(__file__).resolve().parent.parent
TRACKER = ROOT / "tests" / "data" / "tracker_mid_conversation.json"
ACTIONS = {
    "session_start": "action_session_start",
    "recommend": "action_recommend_products",
}


def customer_calls(action: str, count: int, customers: int, seed: int) -> list[bytes]:
    """Calls of ``action`` for seeded customers, a few unknown ones mixed in."""
    rng = random.Random(seed)
    template = json.loads(TRACKER.read_text())
    calls = []
    for _ in range(count):
        n = rng.randint(1, customers + customers // 10)  # ~9% are not in the store
        user_id = f"customer-{n:05d}"
        tracker = {**template, "slots": {**template["slots"]}}
        tracker["slots"]["session_started_metadata"] = {"user_id": user_id, "channel": "web"}
        tracker["latest_message"] = {
            **template["latest_message"],
            "metadata": {"user_id": user_id, "channel": "web"},
        }
        calls.append(json.dumps(action_call(action, tracker)).encode())
    return calls


def noop_calls(count: int) -> list[bytes]:
    """The same tracker sent to the no-op action."""
    body = json.dumps(action_call("action_bench_noop", json.loads(TRACKER.read_text())))
    return [body.encode()] * count


async def hammer(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """POST every body with ``concurrency`` connections; returns (seconds, latencies in ms)."""
    latencies: list[float] = []
    queue = list(reversed(bodies))
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        failures += 1
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{failures} requests failed: see the server log")
    return elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def measure(args: argparse.Namespace, webhook: str) -> dict[str, dict[str, float]]:
    await hammer(webhook, noop_calls(200), args.concurrency)  # warm-up: imports, pools
    for action in ACTIONS.values():
        await hammer(webhook, customer_calls(action, 200, args.customers, 0), args.concurrency)
    results: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "lat": []} for name in ("noop", *ACTIONS)
    }
    for round_number in range(args.rounds):
        for name, bodies in (
            ("noop", noop_calls(args.requests)),
            *(
                (name, customer_calls(action, args.requests, args.customers, round_number + 1))
                for name, action in ACTIONS.items()
            ),
        ):
            elapsed, latencies = await hammer(webhook, bodies, args.concurrency)
            results[name]["rps"].append(len(bodies) / elapsed)
            results[name]["lat"].extend(latencies)
    return {
        name: {
            "rps": statistics.median(r["rps"]),
            "p50_ms": statistics.median(r["lat"]),
            "p99_ms": percentile(r["lat"], 99),
        }
        for name, r in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per action per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per action")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--customers", type=int, default=2000, help="seeded customer count")
    parser.add_argument("--url", help="use a running server (must register bench.noop_action)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    if args.url:
        figures = asyncio.run(measure(args, f"{args.url.rstrip('/')}/webhook"))
    else:
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "rasa_personalize.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--actions", "bench.noop_action"]
        with ServerProcess(command, f"http://127.0.0.1:{port}/health", env=env, cwd=ROOT):
            figures = asyncio.run(measure(args, f"http://127.0.0.1:{port}/webhook"))

    ratio = figures["session_start"]["rps"] / figures["noop"]["rps"]
    recommend_ratio = figures["recommend"]["rps"] / figures["noop"]["rps"]
    if args.json:
        print(
            json.dumps(
                {
                    **figures,
                    "ratio_session_start_to_noop": ratio,
                    "ratio_recommend_to_noop": recommend_ratio,
                }
            )
        )
        return
    tracker_kb = len(TRACKER.read_bytes()) / 1024
    print(
        f"webhook benchmark: {args.concurrency} connections, tracker {tracker_kb:.1f} kB, "
        f"{args.rounds} rounds x {args.requests} requests per action"
    )
    print(f"{'action':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    labels = (
        ("noop", "no-op (baseline)"),
        ("session_start", "action_session_start"),
        ("recommend", "action_recommend_products"),
    )
    for name, label in labels:
        f = figures[name]
        print(f"{label:<28}{f['rps']:>10.0f}{f['p50_ms']:>10.2f}{f['p99_ms']:>10.2f}")
    print(f"ratio session_start / no-op (req/s): {ratio:.2f}")
    print(f"ratio recommend / no-op (req/s): {recommend_ratio:.2f}")


if __name__ == "__main__":
    main()
