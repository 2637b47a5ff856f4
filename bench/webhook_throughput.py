"""Webhook throughput: our actions against a stock rasa-sdk server running a no-op action.

Starts two servers, one worker each, on the loopback interface:

- **baseline**: a stock rasa-sdk server (``python -m rasa_sdk``, the same rasa-sdk) serving
  only ``bench/noop_action.py``. This distribution installs a ``rasa_sdk_plugins`` hook
  that attaches the plugin to every rasa-sdk server in the environment, so the baseline
  runs with an empty stand-in module first on its import path; the bench checks that its
  ``GET /actions`` lists the no-op alone and that ``/personalize/events`` is 404 there.
- **ours**: ``personalize serve`` on the seeded demo store (``make seed``) at the project root.

``wrk`` (Debian package ``wrk``) drives the load through ``bench/webhook_post.lua``: the
realistic 30-event tracker (``tests/data/tracker_mid_conversation.json``), each request
for another demo customer (``user_id`` in the metadata, about 9% unknown to the store).
Targets: the no-op on the baseline, then ``action_session_start``,
``action_refresh_personalization`` and ``action_recommend_products`` on ours, in
alternating rounds so that drift on a shared machine hits every target.

Per target, medians over the rounds: req/s, p50 and p99 (wrk's), the server's CPU time
per 1,000 requests (utime + stime of its whole process tree, Sanic's worker included,
from ``/proc``), and both as ratios to the no-op measured in the same round. wrk's own
CPU time is reported against the server's, to show the load generator was not the limit.

    python bench/webhook_throughput.py [--rounds 3] [--duration 10] [--connections 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any

from proctree import tree_cpu_s
from rasa_personalize.processes import free_port
from rasa_personalize.testing import action_call

ROOT = Path(__file__).resolve().parent.parent
TRACKER = ROOT / "tests" / "data" / "tracker_mid_conversation.json"
LUA_SCRIPT = Path(__file__).resolve().parent / "webhook_post.lua"
NOOP_ACTION = "action_bench_noop"

# (key, label, server, action): the no-op first, so each round starts with the baseline.
TARGETS = (
    ("noop", "no-op, stock rasa-sdk (baseline)", "stock", NOOP_ACTION),
    ("session_start", "action_session_start", "ours", "action_session_start"),
    ("refresh", "action_refresh_personalization", "ours", "action_refresh_personalization"),
    ("recommend", "action_recommend_products", "ours", "action_recommend_products"),
)

# Shadows this distribution's rasa_sdk_plugins module, so the baseline stays stock.
STUB_PLUGINS = '''"""Stand-in for rasa-personalize's hook: the baseline registers no plugin."""


def init_hooks(manager):
    """Register nothing."""
'''


def customer_ids(count: int, customers: int, seed: int) -> list[str]:
    """Seeded demo customers in random order, about 9% of them not in the store."""
    rng = random.Random(seed)
    return [f"customer-{rng.randint(1, customers + customers // 10):05d}" for _ in range(count)]


def call_body(action: str, user_id: str) -> str:
    """The /webhook body for ``action`` with the recorded tracker, as ``user_id``'s."""
    template = json.loads(TRACKER.read_text())
    metadata = {"user_id": user_id, "channel": "web"}
    tracker = {
        **template,
        "slots": {**template["slots"], "session_started_metadata": metadata},
        "latest_message": {**template["latest_message"], "metadata": metadata},
    }
    return json.dumps(action_call(action, tracker))


def write_bodies(path: Path, action: str, users: list[str]) -> Path:
    """One call of ``action`` per user, one JSON document per line (read by the Lua script)."""
    path.write_text("".join(call_body(action, user) + "\n" for user in users))
    return path


@contextmanager
def server(
    name: str, command: list[str], env: dict[str, str], cwd: Path, logs: Path
) -> Iterator[tuple[int, str]]:
    """Run ``command`` in its own process group until /health answers; yields (pid, base URL).

    The port is the command's last argument. The whole group is stopped at the end.
    """
    base = f"http://127.0.0.1:{command[-1]}"
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"{name} server did not start:\n{log_path.read_text()[-3000:]}"
                    )
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=1):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.2)
            yield process.pid, base
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                    process.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue


def http(method: str, url: str, body: str | None = None) -> tuple[int, Any]:
    """(status, decoded JSON or None) of one request."""
    data = body.encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token := os.environ.get("PERSONALIZE_WEBHOOK_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None


def check_stock(stock: str) -> None:
    """The baseline is stock: it serves the no-op alone and no plugin is attached."""
    status, actions = http("GET", f"{stock}/actions")
    names = sorted(action["name"] for action in actions or [])
    if status != 200 or names != [NOOP_ACTION]:
        raise SystemExit(f"baseline GET /actions: {status} {names}, expected [{NOOP_ACTION!r}]")
    # rasa-sdk's error handler answers an unknown route with 500 "Requested URL ... not found".
    status, answer = http("GET", f"{stock}/personalize/events")
    if status not in (404, 500) or "not found" not in str((answer or {}).get("error")):
        raise SystemExit(f"baseline /personalize/events answered {status}: the plugin is attached")


def check_servers(stock: str, ours: str) -> None:
    """The baseline is stock (no plugin) and ours answers every target with personalization."""
    check_stock(stock)
    for _, label, side, action in TARGETS:
        webhook = f"{stock if side == 'stock' else ours}/webhook"
        status, answer = http("POST", webhook, call_body(action, "demo-loyal"))
        if status != 200:
            raise SystemExit(f"{label}: /webhook answered {status}")
        if action == "action_recommend_products":
            slots = {e["name"]: e["value"] for e in answer["events"] if e["event"] == "slot"}
            if not slots.get("recommended_products"):
                raise SystemExit("no recommendations for demo-loyal: run `make seed` first")


def run_wrk(
    args: argparse.Namespace, base: str, bodies: Path, server_pid: int, seconds: float
) -> dict[str, float]:
    """One wrk run; figures of the run, with wrk's CPU time and the server tree's."""
    command = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s"]
    command += ["--timeout", "10s", "-s", str(LUA_SCRIPT), base, "--", str(bodies)]
    cpu_before = tree_cpu_s(server_pid)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        output = process.stdout.read().decode() if process.stdout else ""
        # wait4 gives this child's own rusage: wrk's CPU time, nothing else.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    time.sleep(0.2)  # let the server finish the requests wrk left in flight
    server_cpu = tree_cpu_s(server_pid) - cpu_before
    lines = [line for line in output.splitlines() if line.startswith("wrk-result: ")]
    if process.returncode != 0 or not lines:
        raise SystemExit(f"wrk failed ({process.returncode}):\n{output}")
    result = json.loads(lines[-1].removeprefix("wrk-result: "))
    errors = {k: v for k, v in result.items() if k.endswith(("errors", "timeouts")) and v}
    if errors:
        raise SystemExit(f"wrk against {base}: {errors} (see the server logs)\n{output}")
    requests, wall_s = result["requests"], result["duration_us"] / 1e6
    return {
        "requests": requests,
        "rps": requests / wall_s,
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_1k": server_cpu / requests * 1e6,
        "server_cores": server_cpu / wall_s,
        "wrk_cpu_s": usage.ru_utime + usage.ru_stime,
    }


def scratch_store(scratch: Path) -> dict[str, str]:
    """A consistent copy of the embedded demo store in ``scratch`` (SQLite's backup API),
    as the environment that points the server at it; nothing for a server database."""
    url = os.environ.get("PERSONALIZE_DATABASE_URL", "sqlite:///personalize.db")
    if not url.startswith("sqlite:///"):
        return {}
    source = ROOT / url.removeprefix("sqlite:///")
    copy = scratch / "store.db"
    with sqlite3.connect(source) as original, sqlite3.connect(copy) as target:
        original.backup(target)
    return {"PERSONALIZE_DATABASE_URL": f"sqlite:///{copy}"}


# The seeded demo store (development secret unless one is set): demo only.
DEMO_SECRET = {"PERSONALIZE_ALLOW_DEV_SECRET": "true"}


def stock_server(
    scratch: Path, workers: int, name: str = "stock"
) -> AbstractContextManager[tuple[int, str]]:
    """The stock rasa-sdk server with ``workers`` Sanic workers, serving the no-op alone
    from ``scratch``, where a stand-in shadows this distribution's plugin hook."""
    plugins = scratch / "stock" / "rasa_sdk_plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "__init__.py").write_text(STUB_PLUGINS)
    sanic = {"ACTION_SERVER_SANIC_WORKERS": str(workers), "SANIC_HOST": "127.0.0.1"}
    # python -m puts the working directory first on sys.path: the stand-in shadows the hook.
    env = {**os.environ, **sanic, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "rasa_sdk", "--actions", "bench.noop_action"]
    return server(name, [*command, "--port", str(free_port())], env, plugins.parent, scratch)


def our_server(
    args: argparse.Namespace, scratch: Path, workers: int, env: dict[str, str], name: str = "ours"
) -> AbstractContextManager[tuple[int, str]]:
    """``personalize serve --workers N`` from the project root, ``env`` over the caller's."""
    command = [args.personalize, "serve", "--host", "127.0.0.1", "--workers", str(workers)]
    full_env = {**DEMO_SECRET, **os.environ, "ACTION_SERVER_SANIC_WORKERS": "1", **env}
    return server(name, [*command, "--port", str(free_port())], full_env, ROOT, scratch)


Runner = Callable[[argparse.Namespace, str, Path, int, float], dict[str, float]]


def alternate(
    args: argparse.Namespace,
    runs: list[tuple[str, str, str, int, Path]],
    runner: Runner = run_wrk,
) -> dict[str, list[dict[str, float]]]:
    """Warm every (key, label, base URL, server pid, bodies) up, then run the rounds, each
    target once per round in the given order; per-round figures per key (``runner``'s:
    :func:`run_wrk` or a function around it)."""
    for _, _, base, pid, bodies in runs:  # warm-up: imports, connection pools, models
        runner(args, base, bodies, pid, args.warmup)
    rounds: dict[str, list[dict[str, float]]] = {key: [] for key, *_ in runs}
    for round_number in range(args.rounds):
        for key, label, base, pid, bodies in runs:
            if not args.json:
                print(f"round {round_number + 1}/{args.rounds}: {label}", file=sys.stderr)
            rounds[key].append(runner(args, base, bodies, pid, args.duration))
    return rounds


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Start both servers, warm them up, run the rounds; per-round figures per target."""
    users = customer_ids(args.bodies, args.customers, seed=0)
    bodies = {
        key: write_bodies(scratch / f"{key}.jsonl", action, users) for key, _, _, action in TARGETS
    }
    # The recommend action stores what it shows: run on a copy, so that every run starts
    # from the seeded store and the demo store is left as it was.
    store_env = scratch_store(scratch)

    with ExitStack() as stack:
        stock_pid, stock = stack.enter_context(stock_server(scratch, 1))
        ours_pid, ours = stack.enter_context(our_server(args, scratch, 1, store_env))
        check_servers(stock, ours)
        where = {"stock": (stock, stock_pid), "ours": (ours, ours_pid)}
        runs = [(key, label, *where[side], bodies[key]) for key, label, side, _ in TARGETS]
        return alternate(args, runs)


MEDIAN_FIGURES = ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_1k", "server_cores")


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """The median over rounds of each figure in MEDIAN_FIGURES."""
    return {name: statistics.median(run[name] for run in runs) for name in MEDIAN_FIGURES}


def summarize(rounds: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians over rounds; ratios to the no-op of the same round, then their median."""
    baseline = rounds["noop"]
    figures: dict[str, Any] = {}
    for key, runs in rounds.items():
        rps_ratios = [r["rps"] / b["rps"] for r, b in zip(runs, baseline, strict=True)]
        cpu_ratios = [
            r["server_cpu_ms_per_1k"] / b["server_cpu_ms_per_1k"]
            for r, b in zip(runs, baseline, strict=True)
        ]
        figures[key] = {
            **medians(runs),
            "rps_ratio": statistics.median(rps_ratios),
            "rps_ratio_range": [min(rps_ratios), max(rps_ratios)],
            "cpu_ratio": statistics.median(cpu_ratios),
            "cpu_ratio_range": [min(cpu_ratios), max(cpu_ratios)],
            "wrk_cpu_per_server_cpu": sum(r["wrk_cpu_s"] for r in runs)
            / sum(r["server_cpu_s"] for r in runs),
            "rounds": runs,
        }
    all_runs = [run for runs in rounds.values() for run in runs]
    return {
        "targets": figures,
        "wrk_cpu_per_server_cpu": sum(r["wrk_cpu_s"] for r in all_runs)
        / sum(r["server_cpu_s"] for r in all_runs),
    }


def print_report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    tracker_kb = len(TRACKER.read_bytes()) / 1024
    print(
        f"webhook benchmark: wrk -t{args.threads} -c{args.connections}, "
        f"tracker {tracker_kb:.1f} kB, "
        f"{args.rounds} rounds x {args.duration:g} s per target, one server worker each; "
        "medians over rounds, ratios to the no-op of the same round"
    )
    header = ("target", "req/s", "p50 ms", "p99 ms", "CPU ms/1k", "req/s x", "CPU/req x")
    print(f"{header[0]:<34}" + "".join(f"{h:>11}" for h in header[1:]))
    for key, label, _, _ in TARGETS:
        f = summary["targets"][key]
        print(
            f"{label:<34}{f['rps']:>11.0f}{f['p50_ms']:>11.2f}{f['p99_ms']:>11.2f}"
            f"{f['server_cpu_ms_per_1k']:>11.0f}{f['rps_ratio']:>11.3f}{f['cpu_ratio']:>11.2f}"
        )
    print("ratio ranges over rounds (req/s; CPU per request):")
    for key, label, _, _ in TARGETS[1:]:
        f = summary["targets"][key]
        (r_lo, r_hi), (c_lo, c_hi) = f["rps_ratio_range"], f["cpu_ratio_range"]
        print(f"  {label:<32}{r_lo:.3f} to {r_hi:.3f}; {c_lo:.2f} to {c_hi:.2f}")
    busy = (
        f"{label.split(',')[0]} {summary['targets'][key]['server_cores']:.2f}"
        for key, label, _, _ in TARGETS
    )
    print("server CPU busy (cores, median): " + ", ".join(busy))
    worst = max(TARGETS, key=lambda t: summary["targets"][t[0]]["wrk_cpu_per_server_cpu"])
    print(
        f"machine: {os.cpu_count()} cores, 1-minute load average {summary['load_1min'][0]:.2f} "
        f"before, {summary['load_1min'][1]:.2f} after"
    )
    print(
        f"load generator: wrk used {summary['wrk_cpu_per_server_cpu']:.2f} CPU-s per server "
        f"CPU-s (highest: {worst[1].split(',')[0]}, "
        f"{summary['targets'][worst[0]]['wrk_cpu_per_server_cpu']:.2f})"
    )


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The options every webhook bench shares: the wrk binary, the personalize command of
    the environment to measure, and ``--json``."""
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk binary")
    parser.add_argument(
        "--personalize",
        default=str(Path(sys.executable).with_name("personalize")),
        help="the personalize command of the environment to measure",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def check_wrk(wrk: str) -> None:
    """Stop before anything starts when the wrk binary is missing, saying how to get it."""
    if not Path(wrk).is_file():
        raise SystemExit("wrk not found: apt-get install -y wrk (make bench does)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per target")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--customers", type=int, default=2000, help="seeded customer count")
    parser.add_argument("--bodies", type=int, default=2000, help="distinct requests per target")
    add_server_options(parser)
    args = parser.parse_args()
    check_wrk(args.wrk)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as scratch:
        summary = summarize(measure(args, Path(scratch)))
    # Other jobs on the machine slow both servers; the figures say how busy it was.
    summary["load_1min"] = [load_before, os.getloadavg()[0]]
    if args.json:
        print(json.dumps({"config": vars(args), **summary}))
    else:
        print_report(args, summary)


if __name__ == "__main__":
    main()
