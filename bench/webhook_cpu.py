"""Webhook CPU per request, in process: our actions against rasa-sdk's stock no-op.

The webhook benchmark (``bench/webhook_throughput.py``) needs a quiet machine: its req/s
and latencies move with whatever else runs. This one measures what those figures are
made of, the CPU time of the server's own request handling, which other jobs on the
machine change far less.

Each side runs in a child process of its own, as the two servers do:

- **stock**: rasa-sdk's app (``rasa_sdk.endpoint.create_app``) serving only
  ``bench/noop_action.py``, without this distribution's plugin;
- **ours**: the app ``personalize serve`` builds (``create_personalize_app``), on a copy of
  the seeded demo store (``make seed``; copied with SQLite's backup API).

The child calls the app through its ASGI interface (Sanic's routing, the route's handler,
the answer's encoding; no sockets and no HTTP parsing, which cost both sides alike) with
the body ``webhook_throughput.py`` sends: the 30-event tracker, each request for another
demo customer, ``--concurrency`` calls in flight (16, as wrk's connections there). Per
target and round: CPU time (``time.process_time``, every thread of the process) over
``--requests`` calls, including the background writes those calls started, divided by
the calls. Each timed slice of calls is sent once untimed first, so the session actions
are measured on snapshots already read (a quiet store). Medians over rounds, and each as
a ratio to the no-op. With ``--instructions`` the children run under valgrind's
callgrind and the figure is instructions per call, which the machine's load does not move.

    python bench/webhook_cpu.py [--requests 2000] [--rounds 3] [--only recommend] [--json]
    python bench/webhook_cpu.py --instructions --requests 200 --rounds 1   # about 5 minutes
    python bench/webhook_cpu.py --profile session_start [--profiler pyinstrument]

``--profile`` runs one target of ours under cProfile (or pyinstrument, which is not a
dependency: ``pip install pyinstrument``) and prints where its time goes instead; the
profiler itself costs time, so compare profiles with profiles only. ``--verbose`` prints
each round and the garbage collections it had. To compare with another version of the
package, put a copy of it first on ``PYTHONPATH``: the children import that one.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# After the installed package: PYTHONPATH may name another copy of it to compare with.
sys.path[1:1] = [str(Path(__file__).resolve().parent)]
sys.path.append(str(ROOT))

from webhook_throughput import TARGETS, call_body, customer_ids  # noqa: E402

AsgiApp = Callable[..., Awaitable[None]]


class Answer:
    """What the app sent for one request: status and body."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")


def _scope(length: int, token: str | None) -> dict[str, Any]:
    headers = [
        (b"host", b"127.0.0.1:5055"),
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
    ]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/webhook",
        "raw_path": b"/webhook",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5055),
    }


async def post(app: AsgiApp, body: bytes, token: str | None) -> Answer:
    """One POST /webhook through the app's ASGI interface."""
    answer = Answer()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    await app(_scope(len(body), token), receive, answer.send)
    return answer


async def lifespan(app: AsgiApp, phase: str) -> None:
    """Run the app's start or stop listeners, as an ASGI server does."""
    done = asyncio.Event()
    messages = [{"type": f"lifespan.{phase}"}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the server never says more
        return {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"].endswith("failed"):
            raise SystemExit(f"lifespan {phase} failed: {message.get('message')}")
        if message["type"].endswith("complete"):
            done.set()

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    await done.wait()
    task.cancel()


def stock_app() -> AsgiApp:
    from rasa_sdk.endpoint import create_app  # noqa: PLC0415
    from rasa_sdk.executor import ActionExecutor  # noqa: PLC0415

    executor = ActionExecutor()
    executor.register_package("bench.noop_action")
    return create_app(executor, cors_origins=None)  # type: ignore[no-any-return]


def ours_app(scratch: Path, stack: ExitStack) -> AsgiApp:
    url = os.environ.get("PERSONALIZE_DATABASE_URL", "sqlite:///personalize.db")
    if url.startswith("sqlite:///"):
        source = ROOT / url.removeprefix("sqlite:///")
        copy = scratch / "store.db"
        with sqlite3.connect(source) as original, sqlite3.connect(copy) as target:
            original.backup(target)
        os.environ["PERSONALIZE_DATABASE_URL"] = f"sqlite:///{copy}"
    # The seeded demo store is keyed with the development secret unless one is set.
    os.environ.setdefault("PERSONALIZE_ALLOW_DEV_SECRET", "true")
    os.chdir(ROOT)  # models/personalize and personalization.yml, as `personalize serve`
    from rasa_personalize.metrics import multiprocess_directory  # noqa: PLC0415
    from rasa_personalize.server import create_personalize_app  # noqa: PLC0415

    # Metrics as `personalize serve` keeps them: in files shared by its workers.
    stack.enter_context(multiprocess_directory())
    return create_personalize_app()


async def drain() -> None:
    """Wait for the background writes the calls started (ours only)."""
    from rasa_personalize.runtime import current_service  # noqa: PLC0415

    service = current_service()
    if service is not None:
        await service.drain()
        # The chat writer commits in a task of its own; give it its turn.
        for _ in range(3):
            await asyncio.sleep(0)


async def profile(args: argparse.Namespace, work: Awaitable[int]) -> None:
    """Run ``work`` under the chosen profiler and print what it found."""
    if args.profiler == "pyinstrument":
        from pyinstrument import Profiler  # noqa: PLC0415  # pip install pyinstrument

        sampler = Profiler(interval=0.0002, async_mode="disabled")
        sampler.start()
        await work
        sampler.stop()
        print(sampler.output_text(unicode=True, show_all=False, short_mode=False))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    await work
    profiler.disable()
    if args.save:
        profiler.dump_stats(args.save)
    pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.top)


async def callgrind_control(option: str) -> None:
    """Ask the callgrind running this process to ``option`` (``--instr=on``, ``--dump=x``).

    Valgrind takes the command at its next scheduling point, so the loop ticks until
    ``callgrind_control`` has its answer.
    """
    process = await asyncio.create_subprocess_exec(
        "callgrind_control", option, str(os.getpid()), stdout=subprocess.DEVNULL
    )

    async def tick() -> None:
        while True:  # noqa: ASYNC110  # the point is to wake the loop, not to wait
            await asyncio.sleep(0.005)

    ticking = asyncio.create_task(tick())
    await process.wait()
    ticking.cancel()
    if process.returncode != 0:
        raise SystemExit(f"callgrind_control {option} failed ({process.returncode})")


class Pauses:
    """Garbage collections and the CPU time each took, per generation (``--verbose``).

    CPU time of the collecting thread, not wall time: on a busy machine a collection may
    wait for a core, which would say nothing about the collection.
    """

    def __init__(self) -> None:
        self.by_generation: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self.collected = {0: 0, 1: 0, 2: 0}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.by_generation[info["generation"]].append(time.thread_time() - self._started)
            self.collected[info["generation"]] += info["collected"]

    def describe(self) -> str:
        parts = []
        for generation, pauses in self.by_generation.items():
            if pauses:
                parts.append(
                    f"gen{generation} {len(pauses)} x, longest {max(pauses) * 1e3:.1f} ms, "
                    f"{self.collected[generation]} objects freed"
                )
            pauses.clear()
            self.collected[generation] = 0
        return "; ".join(parts) or "none"


async def run_child(args: argparse.Namespace) -> dict[str, Any]:
    side = args.child
    token = os.environ.get("PERSONALIZE_WEBHOOK_TOKEN")
    with tempfile.TemporaryDirectory(prefix="webhook-cpu-") as scratch, ExitStack() as stack:
        app = stock_app() if side == "stock" else ours_app(Path(scratch), stack)
        await lifespan(app, "startup")
        users = customer_ids(args.bodies, args.customers, seed=0)
        targets = [(key, action) for key, _, where, action in TARGETS if where == side]
        if args.profile or args.only:
            wanted = {args.profile} if args.profile else {*args.only, "noop"}
            targets = [(key, action) for key, action in targets if key in wanted]
        bodies = {key: [call_body(action, u).encode() for u in users] for key, action in targets}
        for key, action in targets:  # checked, and warmed up: imports, models, pools
            answer = await post(app, call_body(action, "demo-loyal").encode(), token)
            if answer.status != 200:
                raise SystemExit(f"{key}: /webhook answered {answer.status}: {answer.body[:300]!r}")
            if key == "recommend":
                events = json.loads(answer.body)["events"]
                slots = {e["name"]: e["value"] for e in events if e["event"] == "slot"}
                if not slots.get("recommended_products"):
                    raise SystemExit("no recommendations for demo-loyal: run `make seed` first")
            await asyncio.sleep(0.5)  # the service's warm-up, in the background
            for body in bodies[key][: args.warmup]:
                await post(app, body, token)
            await drain()

        async def batch(key: str, count: int, offset: int) -> int:
            sent, failed, turns = bodies[key], 0, iter(range(count))

            async def connection() -> None:
                # Each like one of wrk's connections: the next request once answered.
                nonlocal failed
                for index in turns:
                    answer = await post(app, sent[(offset + index) % len(sent)], token)
                    failed += answer.status != 200

            await asyncio.gather(*(connection() for _ in range(args.concurrency)))
            await drain()
            return failed

        if args.profile:
            await batch(args.profile, args.requests, 0)  # this slice's snapshots read
            await profile(args, batch(args.profile, args.requests, 0))
            return {}
        rounds: dict[str, list[float]] = {key: [] for key, _ in targets}
        gc.collect()
        pauses = Pauses()
        if args.verbose:
            gc.callbacks.append(pauses)
        for number in range(args.rounds):
            for key, _ in targets:
                offset = number * args.requests
                # The same slice once untimed: the session actions are measured on
                # snapshots already read, as on a quiet store (recommend's own writes
                # make it read them again whatever comes first).
                await batch(key, args.requests, offset)
                if args.callgrind:
                    await callgrind_control("--instr=on")
                pauses.describe()  # forget the untimed pass's
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                failed = await batch(key, args.requests, offset)
                cpu = time.process_time() - start_cpu
                wall = time.perf_counter() - start_wall
                if args.callgrind:
                    await callgrind_control("--instr=off")
                    await callgrind_control(f"--dump={side}-{key}-{number}")
                if failed:
                    raise SystemExit(f"{key}: {failed} requests failed")
                rounds[key].append(cpu / args.requests * 1e6)
                if args.verbose:
                    print(
                        f"{side} {key} round {number + 1}: {cpu / args.requests * 1e6:.1f} us "
                        f"CPU, {wall / args.requests * 1e6:.1f} us wall; garbage "
                        f"collections: {pauses.describe()} ({gc.get_freeze_count()} objects "
                        f"frozen, {len(gc.get_objects())} tracked)",
                        file=sys.stderr,
                    )
        await lifespan(app, "shutdown")
    return rounds


def child_figures(args: argparse.Namespace, side: str, scratch: Path) -> dict[str, list[float]]:
    """One side's figures per target and round: CPU us per call, or instructions per call
    with ``--instructions`` (read from callgrind's dumps)."""
    command = [sys.executable, __file__, "--child", side, "--json"]
    for option in ("requests", "rounds", "concurrency", "warmup", "customers", "bodies"):
        command += [f"--{option}", str(getattr(args, option))]
    if args.only:
        command += ["--only", *args.only]
    if args.verbose:
        command.append("--verbose")
    if args.instructions:
        out = scratch / f"callgrind.{side}"
        command = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            "-q",
            *command,
            "--callgrind",
        ]
    done = subprocess.run(command, stdout=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {side} side failed ({done.returncode})")
    figures: dict[str, list[float]] = json.loads(done.stdout.decode().splitlines()[-1])
    if args.instructions:
        figures = {key: [] for key in figures}
        for dump in sorted(scratch.glob(f"callgrind.{side}.*")):
            text = dump.read_text()
            trigger = text.split("desc: Trigger: dump ", 1)
            if len(trigger) < 2:
                continue  # the dump at exit
            _, key, number = trigger[1].split("\n", 1)[0].rsplit("-", 2)
            totals = int(text.split("\ntotals: ", 1)[1].split()[0])
            figures[key].append((int(number), totals / args.requests))
        figures = {key: [value for _, value in sorted(found)] for key, found in figures.items()}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="calls per target and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="calls in flight (wrk -c of the webhook bench)"
    )
    parser.add_argument("--warmup", type=int, default=300, help="calls per target before timing")
    parser.add_argument("--customers", type=int, default=2000, help="seeded customer count")
    parser.add_argument("--bodies", type=int, default=2000, help="distinct requests per target")
    parser.add_argument(
        "--profile",
        choices=[key for key, _, where, _ in TARGETS if where == "ours"],
        help="profile this target of ours (cProfile) instead of measuring",
    )
    parser.add_argument(
        "--profiler",
        choices=["cprofile", "pyinstrument"],
        default="cprofile",
        help="cProfile (every call, slows small functions most) or pyinstrument (sampling, a "
        "call tree; pip install pyinstrument)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[key for key, _, where, _ in TARGETS if where == "ours"],
        help="measure these targets of ours (and the no-op) only",
    )
    parser.add_argument("--sort", default="tottime", help="profile order (pstats key)")
    parser.add_argument("--save", help="also write the profile to this file (pstats format)")
    parser.add_argument("--top", type=int, default=40, help="profile lines to print")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--verbose", action="store_true", help="each round on stderr")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per call under valgrind's callgrind instead of CPU time "
        "(independent of the machine's load; about 50 times slower: use --requests 300 "
        "--rounds 1)",
    )
    parser.add_argument("--child", choices=["stock", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--callgrind", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.profile:
        args.child = args.child or "ours"
        figures = asyncio.run(run_child(args))
        if args.json:
            print(json.dumps(figures))
        return

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="webhook-cpu-") as scratch:
        rounds = {
            **child_figures(args, "stock", Path(scratch)),
            **child_figures(args, "ours", Path(scratch)),
        }
    unit = "instructions/req" if args.instructions else "CPU us/req"
    noop = statistics.median(rounds["noop"])
    summary = {
        key: {
            "per_request": statistics.median(values),
            "range": [min(values), max(values)],
            "ratio": statistics.median(values) / noop,
        }
        for key, values in rounds.items()
    }
    if args.json:
        print(json.dumps({"config": vars(args), "targets": summary, "rounds": rounds}))
        return
    print(
        f"webhook {'instructions' if args.instructions else 'CPU'} in process: "
        f"{args.rounds} rounds x {args.requests} calls per target, "
        f"{args.concurrency} in flight; medians; 1-minute load average {load_before:.2f} "
        f"before, {os.getloadavg()[0]:.2f} after"
    )
    print(f"{'target':<34}{unit:>17}{'min':>13}{'max':>13}{'vs no-op':>10}")
    for key, label, _, _ in TARGETS:
        if key not in summary:
            continue
        figures = summary[key]
        low, high = figures["range"]
        print(
            f"{label:<34}{figures['per_request']:>17,.1f}{low:>13,.1f}{high:>13,.1f}"
            f"{figures['ratio']:>9.2f}x"
        )


if __name__ == "__main__":
    main()
