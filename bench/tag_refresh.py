"""Re-tagging the customers of new events: the scoped run against the run over everyone.

Seeds a shop (customers, products in five categories, interactions over 30 days), then
times, in alternating rounds inside one transaction each (rolled back, so every round
starts from the same tags):

* ``scoped``: ``apply_tag_rules`` for ``--dirty`` customers, as the event worker and
  ingestion call it (count rules in one aggregate pass, one write for all tags);
* ``everyone``: ``apply_tag_rules`` over every customer, as ``personalize tag`` runs it
  (set-based statements per count rule): the baseline;
* ``metrics``: ``refresh_profile_metrics`` for the same customers, the other half of a refresh.

Rules are the demo's ``tags.yml`` unless ``--tags`` names another file. Prints the median
and p99 in milliseconds and the ratio scoped / everyone; asserts nothing.

    python bench/tag_refresh.py [--customers 5000] [--events 60000] [--dirty 5000]
        [--rounds 5] [--database-url postgresql://...] [--tags tags.yml]

PostgreSQL: ``--database-url`` names a server; the bench creates a scratch database on
it and drops it at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from harness import add_database_url_option, run_on_scratch, summary, tag_rules_or_exit
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.segments.tags import apply_tag_rules
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.profiles import refresh_profile_metrics
from rasa_personalize.store.sql_store import SqlStore

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
CATEGORIES = ("running", "outdoor", "electronics", "kitchen", "fashion")
KINDS = ("view", "view", "view", "cart", "purchase", "chat_click")


async def seed(store: SqlStore, customers: int, events: int, seed_value: int) -> list[int]:
    """A shop with ``events`` interactions spread over ``customers``; returns their ids."""
    rng = random.Random(seed_value)
    async with store.sessions.begin() as session:
        await session.execute(
            insert(Product),
            [{"sku": f"SKU-{n:04d}", "title": f"P{n}", "description": "",
              "category": CATEGORIES[n % len(CATEGORIES)], "brand": None,
              "price": 20.0 + n % 80, "in_stock": True, "attributes": {}}
             for n in range(500)],
        )  # fmt: skip
        await session.execute(
            insert(Customer),
            [{"customer_key": f"bench-{n}", "created_at": NOW - timedelta(days=400),
              "loyalty_tier": "none"} for n in range(customers)],
        )  # fmt: skip
        customer_ids = list((await session.execute(select(Customer.id))).scalars())
        products = (await session.execute(select(Product.id, Product.price))).all()
        rows = []
        for n in range(events):
            product_id, price = rng.choice(products)
            kind = rng.choice(KINDS)
            rows.append({
                "event_id": f"bench-{n}", "customer_id": rng.choice(customer_ids),
                "product_id": product_id, "kind": kind, "value": None, "quantity": 1,
                "price": price * rng.choice((0.7, 1.0)) if kind == "purchase" else None,
                "channel": "web", "device": "mobile",
                "occurred_at": NOW - timedelta(seconds=rng.randint(0, 30 * 86_400)),
            })  # fmt: skip
        for start in range(0, len(rows), 10_000):
            await session.execute(insert(Interaction), rows[start : start + 10_000])
    return customer_ids


async def timed(store: SqlStore, work: Callable[[AsyncSession], Awaitable[Any]]) -> float:
    """Milliseconds of ``work`` in a transaction that is rolled back afterwards."""
    async with store.sessions() as session:
        started = time.perf_counter()
        await work(session)
        elapsed = (time.perf_counter() - started) * 1000
        await session.rollback()
    return elapsed


async def measure(args: argparse.Namespace, database_url: str, rules: TagRules) -> dict[str, Any]:
    store = SqlStore(database_url, StoreTimeouts(connect_s=10.0, statement_s=None))
    try:
        async with store.engine.begin() as connection:
            await upgrade_connection(connection)
        customer_ids = await seed(store, args.customers, args.events, seed_value=11)
        dirty = random.Random(12).sample(customer_ids, min(args.dirty, len(customer_ids)))
        variants: dict[str, Callable[[AsyncSession], Awaitable[Any]]] = {
            "scoped": lambda s: apply_tag_rules(
                s, rules, dirty, now=NOW, check_catalogue=False, count_qualifying=False
            ),
            "everyone": lambda s: apply_tag_rules(
                s, rules, now=NOW, check_catalogue=False, count_qualifying=False
            ),
            "metrics": lambda s: refresh_profile_metrics(s, dirty, now=NOW),
        }
        await timed(store, variants["scoped"])  # warm caches and prepared statements
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, work in variants.items():
                samples[name].append(await timed(store, work))
    finally:
        await store.dispose()
    figures: dict[str, Any] = {name: summary(values) for name, values in samples.items()}
    figures["ratio_scoped_to_everyone"] = (
        figures["scoped"]["p50_ms"] / figures["everyone"]["p50_ms"]
    )
    figures["backend"] = database_url.split(":", 1)[0]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--dirty", type=int, default=5_000, help="customers re-tagged")
    parser.add_argument("--rounds", type=int, default=5)
    add_database_url_option(parser)
    parser.add_argument("--tags", default=str(Path(__file__).resolve().parents[1] / "tags.yml"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rules = tag_rules_or_exit(args.tags)
    figures = run_on_scratch(
        args.database_url, lambda database_url: measure(args, database_url, rules)
    )
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"tag refresh ({figures['backend']}): {args.dirty:,} of {args.customers:,} customers, "
        f"{args.events:,} interactions, {args.rounds} rounds"
    )
    print(f"{'variant':<52}{'p50 ms':>10}{'p99 ms':>10}")
    for name, label in (
        ("scoped", "apply_tag_rules for the dirty customers"),
        ("everyone", "baseline: apply_tag_rules over everyone"),
        ("metrics", "refresh_profile_metrics for the dirty customers"),
    ):
        print(f"{label:<52}{figures[name]['p50_ms']:>10.1f}{figures[name]['p99_ms']:>10.1f}")
    print(f"ratio p50 scoped / everyone: {figures['ratio_scoped_to_everyone']:.2f}")


if __name__ == "__main__":
    main()
