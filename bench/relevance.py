"""Live relevance: would a shopper accept what the webhook recommends?

Starts ``personalize serve`` (one worker, loopback) on a copy of the demo store with a
model that ``personalize train --precompute`` trains into a scratch directory (so the
figures are those of this code), then asks ``action_recommend_products`` through the
real ``/webhook`` for every demo customer with a strong favourite category (the
profile's top category affinity at least ``--strong``), one new conversation each.

Per customer it reads from the store (not from the server): the profile's two top
categories, the segment (as the engine computes it) and the purchases of the last
``--substitute-days`` days. A product shown is *relevant* when it is in one of the two
top categories; a list *holds a substitute* when a product has the category and the
product type (the generator's noun, ``demo.generator.product_type``: the truth, not the
recommender's own rule) of such a purchase.

Variants: the shop's rules (``personalization.yml``: each segment gets its own strategy
and price cap) reported per segment, then one server per strategy with a rule file that
gives that strategy to everyone. Per group: the share of relevant products, the share of
lists holding a substitute, intra-list diversity (share of pairs of a list in different
categories) and catalogue coverage (distinct products shown / products). Targets: share
>= 0.8 in every segment; substitute lists < 5%. Prints figures, asserts nothing.

    python bench/relevance.py [--fresh] [--strong 0.5] [--json]

``--fresh`` seeds a new demo store with the current generator instead of copying the one
at ``PERSONALIZE_DATABASE_URL`` (default ``personalize.db``, ``make seed``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from pathlib import Path
from typing import Any

from webhook_throughput import ROOT, http, scratch_store, server

from rasa_personalize.clock import utc_now
from rasa_personalize.demo.generator import product_type
from rasa_personalize.engine import segment_of
from rasa_personalize.identity import customer_key
from rasa_personalize.processes import free_port
from rasa_personalize.settings import DEVELOPMENT_SECRET_KEY
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import action_call, slots_from_events, tracker_state

STRATEGIES = ("default", "cheapest_first", "premium", "new_arrivals", "bought_together")
SHARE_TARGET = 0.8
SUBSTITUTE_TARGET = 0.05


@dataclass(frozen=True)
class Shopper:
    """What the bench knows about one demo customer, read from the store."""

    external_id: str
    segment: str
    top_two: frozenset[str]
    # (category, type) of purchases in the substitute window.
    recent: frozenset[tuple[str, str]]


async def read_shoppers(
    url: str, customers: int, strong: float, window: timedelta, secret: str
) -> tuple[list[Shopper], dict[str, tuple[str, str]]]:
    """The customers with a strong favourite category, and sku -> (category, type)."""
    store = SqlStore(url, StoreTimeouts(connect_s=10.0, statement_s=None))
    now = utc_now()
    shoppers = []
    try:
        products, _ = await store.read_recommendation_inputs()
        kinds = {p.sku: (p.category, product_type(p.title) or p.title) for p in products}
        ids = ["demo-bargain", "demo-loyal", "demo-lapsed"]
        ids += [f"customer-{n:05d}" for n in range(1, customers + 1)]
        for external_id in ids:
            snapshot, items = await store.load_customer_context(
                customer_key(secret, external_id), now - timedelta(days=30)
            )
            if snapshot is None or items is None or not snapshot.metrics.category_affinity:
                continue
            ranked = sorted(snapshot.metrics.category_affinity.items(), key=lambda kv: -kv[1])
            if ranked[0][1] < strong:
                continue
            recent = frozenset(
                kinds[sku] for sku, when in items.purchases if now - when < window and sku in kinds
            )
            shoppers.append(
                Shopper(
                    external_id,
                    segment_of(snapshot, now),
                    frozenset(category for category, _ in ranked[:2]),
                    recent,
                )
            )
    finally:
        await store.dispose()
    return shoppers, kinds


def ask(base: str, shopper: Shopper, conversation: str) -> list[str]:
    """The skus ``action_recommend_products`` answers for ``shopper`` in a new conversation."""
    tracker = tracker_state(
        sender_id=conversation,
        user_id=shopper.external_id,
        text="what would you recommend for me?",
        intent="ask_recommendation",
        session_metadata={"user_id": shopper.external_id, "channel": "web"},
    )
    status, answer = http(
        "POST", f"{base}/webhook", json.dumps(action_call("action_recommend_products", tracker))
    )
    if status != 200:
        raise SystemExit(f"/webhook answered {status}: {answer}")
    slots = slots_from_events(answer["events"])
    return [item["sku"] for item in slots.get("recommended_products") or []]


def figures(
    lists: Sequence[tuple[Shopper, list[str]]], kinds: dict[str, tuple[str, str]]
) -> dict[str, float]:
    """Share relevant, share of lists with a substitute, diversity, coverage."""
    shown = [sku for _, skus in lists for sku in skus]
    relevant = sum(kinds[sku][0] in shopper.top_two for shopper, skus in lists for sku in skus)
    substitutes = sum(any(kinds[sku] in shopper.recent for sku in skus) for shopper, skus in lists)
    pairs = [
        sum(a != b for a, b in combinations([kinds[sku][0] for sku in skus], 2))
        / max(len(skus) * (len(skus) - 1) / 2, 1)
        for _, skus in lists
        if len(skus) > 1
    ]
    return {
        "customers": len(lists),
        "share_relevant": relevant / len(shown) if shown else 0.0,
        "substitute_lists": substitutes / len(lists) if lists else 0.0,
        "diversity": statistics.mean(pairs) if pairs else 0.0,
        "coverage": len(set(shown)) / len(kinds),
        "empty_lists": sum(not skus for _, skus in lists),
    }


def run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def prepare(args: argparse.Namespace, scratch: Path) -> dict[str, str]:
    """The environment of a scratch store with a freshly trained model."""
    env = {**os.environ, "PERSONALIZE_ALLOW_DEV_SECRET": "true"}
    if args.fresh:
        env["PERSONALIZE_DATABASE_URL"] = f"sqlite:///{scratch / 'store.db'}"
    else:
        env.update(scratch_store(scratch))
    env["PERSONALIZE_MODEL_DIR"] = str(scratch / "models")
    personalize = str(Path(sys.executable).with_name("personalize"))
    if args.fresh:
        run([personalize, "db", "upgrade"], env)
        run([personalize, "seed-demo"], env)
    started = time.perf_counter()
    run([personalize, "train", "--precompute"], env)
    print(f"trained in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return env


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    env = prepare(args, scratch)
    secret = env.get("PERSONALIZE_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
    shoppers, kinds = asyncio.run(
        read_shoppers(
            env["PERSONALIZE_DATABASE_URL"],
            args.customers,
            args.strong,
            timedelta(days=args.substitute_days),
            secret,
        )
    )
    variants: dict[str, Path] = {"rules": ROOT / "personalization.yml"}
    for strategy in STRATEGIES:
        path = scratch / f"{strategy}.yml"
        path.write_text(f"defaults: {{recommendation_strategy: {strategy}}}\nrules: []\n")
        variants[strategy] = path
    results: dict[str, Any] = {}
    for name, rules in variants.items():
        port = free_port()
        command = [str(Path(sys.executable).with_name("personalize")), "serve"]
        command += ["--host", "127.0.0.1", "--workers", "1", "--port", str(port)]
        serve_env = {
            **env,
            "PERSONALIZE_RULES_PATH": str(rules),
            "ACTION_SERVER_SANIC_WORKERS": "1",
        }
        with ExitStack() as stack:
            _, base = stack.enter_context(server(name, command, serve_env, ROOT, scratch))
            lists = [
                (shopper, ask(base, shopper, f"relevance-{name}-{n}"))
                for n, shopper in enumerate(shoppers)
            ]
        if name == "rules":
            by_segment: defaultdict[str, list[tuple[Shopper, list[str]]]] = defaultdict(list)
            for shopper, skus in lists:
                by_segment[shopper.segment].append((shopper, skus))
            results["rules"] = {
                "all": figures(lists, kinds),
                **{segment: figures(group, kinds) for segment, group in sorted(by_segment.items())},
            }
        else:
            results.setdefault("strategies", {})[name] = figures(lists, kinds)
        print(f"{name}: {len(lists)} lists", file=sys.stderr)
    return {"customers": len(shoppers), "strong": args.strong, **results}


def print_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(
        f"live relevance through /webhook: {report['customers']} demo customers whose top "
        f"category affinity is >= {args.strong}; substitutes: same category and type as a "
        f"purchase of the last {args.substitute_days} days"
    )
    header = ("group", "lists", "relevant", "substitute", "diversity", "coverage")
    line = f"{header[0]:<34}" + "".join(f"{h:>11}" for h in header[1:])

    def row(label: str, f: dict[str, float]) -> str:
        return (
            f"{label:<34}{f['customers']:>11}{f['share_relevant']:>11.3f}"
            f"{f['substitute_lists']:>11.3f}{f['diversity']:>11.3f}{f['coverage']:>11.3f}"
        )

    print("the shop's rules (personalization.yml), per segment:")
    print(line)
    for segment, f in report["rules"].items():
        print(row(segment, f))
    print("one strategy for everyone:")
    print(line)
    for strategy, f in report["strategies"].items():
        print(row(strategy, f))
    segments = {k: v for k, v in report["rules"].items() if k != "all"}
    worst = min(segments.items(), key=lambda kv: kv[1]["share_relevant"])
    substitutes = max(
        f["substitute_lists"] for f in [*report["rules"].values(), *report["strategies"].values()]
    )
    lowest = worst[1]["share_relevant"]
    print(
        f"target: share relevant >= {SHARE_TARGET} in every segment: lowest {worst[0]} "
        f"{lowest:.3f}, {'met' if lowest >= SHARE_TARGET else 'missed'}"
    )
    print(
        f"target: lists with a substitute < {SUBSTITUTE_TARGET:.0%}: highest {substitutes:.1%}, "
        f"{'met' if substitutes < SUBSTITUTE_TARGET else 'missed'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="seed a new demo store first")
    parser.add_argument("--customers", type=int, default=2000, help="seeded customer count")
    parser.add_argument("--strong", type=float, default=0.5, help="top category affinity")
    parser.add_argument("--substitute-days", type=int, default=14, help="substitute window")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    started = datetime.now()
    with tempfile.TemporaryDirectory(prefix="relevance-bench-") as scratch:
        report = measure(args, Path(scratch))
    report["seconds"] = round((datetime.now() - started).total_seconds(), 1)
    if args.json:
        print(json.dumps({"config": vars(args), **report}))
    else:
        print_report(args, report)


if __name__ == "__main__":
    main()
