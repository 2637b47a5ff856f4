"""Footprint of the action server: cold start, memory, and the CLI's answer to --help.

For each run, starts ``personalize serve`` (one worker) on the store that
``PERSONALIZE_DATABASE_URL`` names, from the project folder (``--project-dir``), and measures:

- **ready**: seconds from the process start to the first answer of ``/health``;
- **first personalized answer**: seconds from the process start to the first
  ``action_recommend_products`` answer that carries recommendations (warm-up done);
- **RSS**: resident memory of the whole server (the main process and its worker),
  from ``/proc``, after that answer;

and times ``personalize --help`` on its own. Prints medians and the spread of the runs.
Standard library only, so it measures any installed version the same way:

    python bench/serve_footprint.py [--personalize .venv/bin/personalize] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from proctree import tree_rss_kb

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def recommend_call(user_id: str) -> bytes:
    message = {
        "intent": {"name": "ask_recommendation", "confidence": 0.99},
        "entities": [],
        "text": "what do you recommend?",
        "message_id": "m-1",
        "metadata": {"user_id": user_id},
    }
    tracker = {
        "sender_id": "footprint",
        "slots": {"session_started_metadata": {"user_id": user_id}},
        "latest_message": message,
        "latest_event_time": 1_700_000_000.0,
        "followup_action": None,
        "paused": False,
        "events": [],
        "latest_input_channel": "rest",
        "active_loop": {},
        "latest_action_name": "action_listen",
    }
    body = {"next_action": "action_recommend_products", "tracker": tracker, "domain": {}}
    return json.dumps(body).encode()


def one_run(
    personalize: str, project: Path, user_id: str, timeout_s: float
) -> tuple[float, float, float]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    process = subprocess.Popen(
        [personalize, "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=project,
        # The seeded demo store (development secret unless one is set): demo only.
        env={"PERSONALIZE_ALLOW_DEV_SECRET": "true", **os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = answered = None
    try:
        while time.perf_counter() - start < timeout_s:
            try:
                if ready is None:
                    urllib.request.urlopen(f"{base}/health", timeout=1).read()
                    ready = time.perf_counter() - start
                request = urllib.request.Request(
                    f"{base}/webhook",
                    data=recommend_call(user_id),
                    headers={"Content-Type": "application/json"},
                )
                answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
                slots = {e["name"]: e["value"] for e in answer["events"] if e["event"] == "slot"}
                if slots.get("recommended_products"):
                    answered = time.perf_counter() - start
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.02)
        if ready is None or answered is None:
            raise SystemExit(f"the server did not answer with recommendations in {timeout_s} s")
        return ready, answered, tree_rss_kb(process.pid) / 1024
    finally:
        process.terminate()
        process.wait(timeout=30)


def time_help(personalize: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([personalize, "--help"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--personalize", default=str(ROOT / ".venv" / "bin" / "personalize"))
    parser.add_argument("--project-dir", type=Path, default=ROOT, help="where models/ lives")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--customer", default="demo-loyal", help="a customer of the store")
    parser.add_argument("--timeout-s", type=float, default=120.0)
    args = parser.parse_args()

    runs = [
        one_run(args.personalize, args.project_dir, args.customer, args.timeout_s)
        for _ in range(args.runs)
    ]
    helps = time_help(args.personalize, args.runs)
    print(f"personalize serve, {args.runs} runs (median, min, max)")
    print(f"  ready (/health answers)          s  {spread([r[0] for r in runs])}")
    print(f"  first personalized answer        s  {spread([r[1] for r in runs])}")
    print(f"  RSS, main process + worker      MB  {spread([r[2] for r in runs])}")
    print(f"personalize --help                 s  {spread(helps)}")


if __name__ == "__main__":
    main()
