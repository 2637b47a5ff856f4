"""What tracing and correlation ids cost per action, off (the default) and on.

    python bench/tracing_overhead.py [--calls 20000]

Three figures:

1. One traced function call with tracing off, against the same function undecorated
   (sync and async): the price every traced step pays when nobody traces.
2. ``action_session_start`` through rasa-sdk's executor on a seeded SQLite store (the
   inline read path, the fastest the server has): the executor's own ``run`` against the
   plugin's wrapper (correlation scope, action span when on), tracing off and on (an
   in-memory exporter, so export costs nothing here).
3. The spans one such action records when on, to multiply figure 1 by.

Medians of several rounds; microseconds per call. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rasa_sdk.executor import ActionExecutor

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.instrumentation import observe_actions
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.settings import load_settings
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import action_call, tracker_state
from rasa_personalize.tracing import disable_tracing, enable_tracing, traced

ROUNDS = 7
SECRET = "bench-secret-key-0123456789"


def per_call_us(function: Callable[[], Any], calls: int) -> float:
    """Median over rounds of the time of one call, in microseconds."""
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


async def per_await_us(function: Callable[[], Awaitable[Any]], calls: int) -> float:
    """Median over rounds of the time of one awaited call, in microseconds."""
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(calls):
            await function()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def plain(value: int) -> int:
    return value + 1


async def plain_async(value: int) -> int:
    return value + 1


async def decorator_costs(calls: int) -> None:
    traced_sync = traced("bench")(plain)
    traced_async = traced("bench")(plain_async)
    disable_tracing()
    base_sync = per_call_us(lambda: plain(1), calls)
    off_sync = per_call_us(lambda: traced_sync(1), calls)
    base_async = await per_await_us(lambda: plain_async(1), calls)
    off_async = await per_await_us(lambda: traced_async(1), calls)
    print("1. one traced call, tracing off (microseconds per call)")
    print(f"   sync : plain {base_sync:.3f}  traced {off_sync:.3f}  +{off_sync - base_sync:.3f}")
    print(
        f"   async: plain {base_async:.3f}  traced {off_async:.3f}  +{off_async - base_async:.3f}"
    )


class _TrivialExecutor(ActionExecutor):  # type: ignore[misc]
    """An executor whose run does nothing: what is left is the plugin's wrapper."""

    async def run(self, action_call: Any) -> None:
        return None


async def wrapper_cost(calls: int) -> None:
    call = action_call("action_session_start", tracker_state(sender_id="bench-sender"))
    executor = _TrivialExecutor()
    disable_tracing()
    base = await per_await_us(lambda: _TrivialExecutor.run(executor, call), calls)
    observe_actions(executor, lambda: SECRET)
    off = await per_await_us(lambda: executor.run(call), calls)
    print("1b. the plugin's wrapper around one action call, tracing off (microseconds)")
    print(f"   executor run {base:.3f}  wrapped {off:.3f}  +{off - base:.3f}")


async def seeded_store(folder: Path) -> str:
    url = f"sqlite:///{folder / 'bench.db'}"
    store = SqlStore(url, StoreTimeouts(connect_s=5.0, statement_s=None))
    async with store.engine.begin() as connection:
        await upgrade_connection(connection)
    await store.dispose()
    return url


async def action_costs(calls: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = await seeded_store(Path(folder))
        settings = load_settings(
            database_url=url, secret_key=SECRET, rules_path=Path(folder) / "none.yml"
        )
        install_service(PersonalizationService(settings))
        executor = ActionExecutor()
        executor.register_package("rasa_personalize.handlers")
        call = action_call("action_session_start", tracker_state(sender_id="bench-sender"))
        stock = ActionExecutor.run
        await stock(executor, call)  # warm: the inline reader opens, the rules load

        async def unwrapped() -> Any:
            return await stock(executor, call)

        observe_actions(executor, lambda: SECRET)
        disable_tracing()

        async def wrapped() -> Any:
            return await executor.run(call)

        # Alternated, so that the machine's other work weighs on both alike.
        pairs = [
            (await per_await_us(unwrapped, calls), await per_await_us(wrapped, calls))
            for _ in range(5)
        ]
        baseline = statistics.median(pair[0] for pair in pairs)
        off = statistics.median(pair[1] for pair in pairs)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        enable_tracing(provider)
        await executor.run(call)
        spans = len(exporter.get_finished_spans())
        exporter.clear()
        on = await per_await_us(lambda: executor.run(call), max(calls // 10, 100))
        disable_tracing()
        await shutdown_service()
    print("2. action_session_start through the executor (microseconds per action)")
    print(f"   rasa-sdk's run alone        {baseline:8.1f}")
    print(f"   with the plugin, tracing off {off:8.1f}  (+{off - baseline:.1f})")
    print(f"   with the plugin, tracing on  {on:8.1f}  (+{on - baseline:.1f})")
    print(f"3. spans per action_session_start when on: {spans}")
    print("   (figure 2's 'off' includes the traced steps inside the action: the decorators")
    print("    cannot be taken out of the baseline, so figure 1 times that count adds to it)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    arguments = parser.parse_args()
    await decorator_costs(arguments.calls * 10)
    await wrapper_cost(arguments.calls * 10)
    await action_costs(arguments.calls // 10)


if __name__ == "__main__":
    asyncio.run(main())
