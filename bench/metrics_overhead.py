"""What recording metrics costs one action: microseconds per call of each recording step.

Runs itself twice, in fresh processes: with metrics in memory (one process, as under
``rasa run actions``) and in prometheus_client's multi-process mode (files in a
temporary ``PROMETHEUS_MULTIPROC_DIR``, as under ``personalize serve --workers N``).
Measured, per call:

- ``action wrapper``: ``time_actions``' wrapper around an executor whose ``run`` does
  nothing, minus the same call unwrapped (two clock reads, the name check, one
  histogram observation);
- ``count_defaults``, ``count_recommendation``, ``count_cache``: one counter each;
- ``typical action``: a wrapper plus two counters, what a recommendation action records.

Times are this process's CPU time (``time.process_time``), so other processes on a busy
machine do not count; prometheus_client's own ``Counter.inc`` is printed for scale.

    python bench/metrics_overhead.py [--calls 200000]

Prints figures; never asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from rasa_personalize import metrics

ACTION = "action_recommend_products"


class NoopExecutor:
    """The two things time_actions uses of rasa-sdk's ActionExecutor."""

    def __init__(self) -> None:
        self.actions = {ACTION: object()}

    async def run(self, action_call: dict[str, Any]) -> None:
        return None


def per_call_us(step: Callable[[], object], calls: int, rounds: int = 5) -> float:
    """The median over ``rounds`` of the mean microseconds per call."""
    means = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(calls):
            step()
        means.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(means)


def async_per_call_us(executor: NoopExecutor, calls: int, rounds: int = 5) -> float:
    call = {"next_action": ACTION}

    async def loop() -> float:
        means = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(calls):
                await executor.run(call)
            means.append((time.process_time() - started) / calls * 1e6)
        return statistics.median(means)

    return asyncio.run(loop())


def measure(calls: int) -> None:
    plain = NoopExecutor()
    timed = NoopExecutor()
    metrics.time_actions(timed)
    base = async_per_call_us(plain, calls)
    wrapped = async_per_call_us(timed, calls)
    defaults = per_call_us(lambda: metrics.count_defaults("unknown_customer"), calls)
    recommendation = per_call_us(lambda: metrics.count_recommendation("popular"), calls)
    cache = per_call_us(lambda: metrics.count_cache("hit"), calls)
    raw = Counter("bench", "x", ["reason"], registry=CollectorRegistry()).labels("a")
    inc = per_call_us(raw.inc, calls)
    mode = "multi-process (files)" if metrics.multiprocess() else "in memory (one process)"
    print(f"{mode}:")
    print(f"  action wrapper         {wrapped - base:6.2f} us  (unwrapped call {base:.2f} us)")
    print(f"  count_defaults         {defaults:6.2f} us")
    print(f"  count_recommendation   {recommendation:6.2f} us")
    print(f"  count_cache            {cache:6.2f} us")
    print(f"  (prometheus_client's own Counter.inc, for scale: {inc:.2f} us)")
    print(f"  typical action         {wrapped - base + defaults + recommendation:6.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        measure(arguments.calls)
        return
    print(f"Python {sys.version.split()[0]}, {arguments.calls} calls per step, median of 5")
    command = [sys.executable, __file__, "--child", "--calls", str(arguments.calls)]
    environment = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    subprocess.run(command, env=environment, check=True)
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as folder:
        subprocess.run(command, env=environment | {"PROMETHEUS_MULTIPROC_DIR": folder}, check=True)


if __name__ == "__main__":
    main()
