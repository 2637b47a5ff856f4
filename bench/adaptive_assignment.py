"""What adaptive allocation costs an answer: ``allocation: thompson`` against ``fixed``.

In one process, on one store (a temporary SQLite file in WAL mode, or a scratch
PostgreSQL database next to ``--database-url``), with customers of whom half are already
exposed to the experiment and the other half not, and weights that have moved well away
from the configured 50/50 (so most exposed control customers' hash points at the other
arm and their stored arm must win):

* ``personalize``: ``PersonalizationService.personalize`` for every customer, twice per
  fresh service: the **first turn** of a customer in a process (a thompson experiment
  reads the customer's stored arm: one primary-key read) and a **later turn** (the arm is
  remembered: a dictionary read). Services are rebuilt for each round, the two variants
  answer each customer in turn (alternating which goes first), and requests carry no
  conversation (no chat-side writes), so the difference is the assignment alone;
* the pieces: ``decide()`` with and without weights (the hash cut by the weights in
  force), and ``SqlStore.exposed_arm`` (the read of a first turn).

Prints median and p99 in microseconds and the ratio to the fixed experiment; never asserts.

    python bench/adaptive_assignment.py [--customers 2000] [--rounds 3]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from harness import percentile, scratch_database
from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import PersonalizationRequest, PersonalizationService, decide
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.rules import RuleBook
from rasa_personalize.rules.experiments import ExperimentUnit, experiment_secret
from rasa_personalize.settings import Settings
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer, ExperimentExposure, Interaction, Product
from rasa_personalize.store.sql_store import SqlStore

SECRET = "bench-secret-key-0123456789abcdef"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
RULES = """\
rules:
  - name: everyone
    when: {segment: [new_visitor, frequent_buyer, price_sensitive, loyal, at_risk, browser]}
    then: {offer_type: discount, discount_pct: 10}
experiments:
  - name: bigger_discount
    status: running
    arms:
      - {name: control, weight: 50}
      - {name: twenty, weight: 50, then: {discount_pct: 20}}
    goal: purchase
    window_days: 7
"""
THOMPSON = RULES + "    allocation: thompson\n"


def external_id(n: int) -> str:
    return f"customer-{n:05d}"


async def seed(store: SqlStore, customers: int) -> None:
    """Customers; the even half exposed (control or twenty by turns), a third of twenty's
    and a twentieth of control's exposed customers bought in the window."""
    exposed_at = NOW - timedelta(days=3)
    async with store.sessions.begin() as session:
        await session.execute(
            insert(Product),
            [{"sku": "SKU-1", "title": "Shoe", "description": "", "category": "shoes",
              "brand": "Acme", "price": 50.0, "in_stock": True, "attributes": {}}],
        )  # fmt: skip
        await session.execute(
            insert(Customer),
            [
                {"customer_key": customer_key(SECRET, external_id(n)), "created_at": NOW,
                 "loyalty_tier": "none"}
                for n in range(customers)
            ],
        )  # fmt: skip
        exposed = [n for n in range(customers) if n % 2 == 0]
        arms = {n: "twenty" if n % 4 == 0 else "control" for n in exposed}
        await session.execute(
            insert(ExperimentExposure),
            [
                {"experiment": "bigger_discount", "arm": arms[n], "exposed_at": exposed_at,
                 "customer_key": customer_key(SECRET, external_id(n))}
                for n in exposed
            ],
        )  # fmt: skip
        buyers = [n for n in exposed if n % (12 if arms[n] == "twenty" else 80) == 0]
        await session.execute(
            insert(Interaction),
            [
                {"event_id": f"bench-{n}", "customer_id": n + 1, "product_id": 1,
                 "kind": "purchase", "quantity": 1, "price": 50.0,
                 "occurred_at": exposed_at + timedelta(days=1)}
                for n in buyers
            ],
        )  # fmt: skip


def service_for(database_url: str, store: SqlStore, rules: Path) -> PersonalizationService:
    settings = Settings(database_url=database_url, secret_key=SECRET, rules_path=rules)
    return PersonalizationService(settings, store, clock=lambda: NOW, rules=RuleBook(rules))


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1e6


async def measure(args: argparse.Namespace, database_url: str, folder: Path) -> None:
    store = SqlStore(database_url, StoreTimeouts(connect_s=10.0, statement_s=None))
    async with store.engine.begin() as connection:
        await upgrade_connection(connection)
    await seed(store, args.customers)
    paths = {"fixed": folder / "fixed.yml", "thompson": folder / "thompson.yml"}
    paths["fixed"].write_text(RULES, encoding="utf-8")
    paths["thompson"].write_text(THOMPSON, encoding="utf-8")
    requests = [
        PersonalizationRequest(CustomerIdentity(external_id(n), "message_metadata"))
        for n in range(args.customers)
    ]
    timings: dict[str, list[float]] = {
        f"{name}, {turn}": [] for name in paths for turn in ("first turn", "later turn")
    }
    weights = None
    for _ in range(args.rounds):
        services = {name: service_for(database_url, store, path) for name, path in paths.items()}
        await services["thompson"].allocation.refresh()
        weights = services["thompson"].allocation.in_force["bigger_discount"]
        for turn in ("first turn", "later turn"):
            for n, request in enumerate(requests):
                # Customer by customer, in alternating order: load that drifts over the
                # run weighs on both variants alike.
                order = list(paths) if n % 2 == 0 else list(reversed(paths))
                for name in order:
                    timings[f"{name}, {turn}"].append(
                        await timed(lambda s=services[name], r=request: s.personalize(r))
                    )
        for service in services.values():
            await service.allocation.close()
    assert weights is not None
    shares = ", ".join(f"{a} {s:.1%}" for a, s in zip(weights.arms, weights.shares, strict=True))
    print(f"weights in force: {shares} (adapted: {weights.adapted})")

    # The pieces, without the service around them.
    rules = RuleBook(paths["thompson"]).current()
    fixed_rules = RuleBook(paths["fixed"]).current()
    secret = experiment_secret(SECRET)
    context = ConversationContext()
    allocations = {"bigger_discount": weights}
    keys = [customer_key(SECRET, external_id(n)) for n in range(args.customers)]
    pieces: dict[str, list[float]] = {
        "decide(), fixed": [],
        "decide(), thompson weights": [],
        "SqlStore.exposed_arm": [],
    }
    calls = {
        "decide(), fixed": lambda key: decide(
            None, NOW, context, fixed_rules, experiment_unit=ExperimentUnit(key, secret)
        ),
        "decide(), thompson weights": lambda key: decide(
            None, NOW, context, rules, experiment_unit=ExperimentUnit(key, secret, allocations)
        ),
    }
    for _ in range(args.rounds):
        for n, key in enumerate(keys):
            for label in list(calls) if n % 2 == 0 else list(reversed(calls)):
                started = time.perf_counter()
                calls[label](key)
                pieces[label].append((time.perf_counter() - started) * 1e6)
            pieces["SqlStore.exposed_arm"].append(
                await timed(lambda key=key: store.exposed_arm("bigger_discount", key))
            )
    await store.dispose()

    print(f"{args.customers:,} customers x {args.rounds} rounds on {store.engine.dialect.name}")
    print("| variant | p50 us | p99 us | p50 vs fixed, same turn |")
    print("|---|---|---|---|")
    for label, values in timings.items():
        turn = label.split(", ")[1]
        base = statistics.median(timings[f"fixed, {turn}"])
        median = statistics.median(values)
        print(
            f"| personalize, {label} | {median:.0f} | {percentile(values, 99):.0f} "
            f"| {median / base:.2f} |"
        )
    base = statistics.median(pieces["decide(), fixed"])
    for label, values in pieces.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}" if label.startswith("decide") else "-"
        print(f"| {label} | {median:.1f} | {percentile(values, 99):.1f} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="a PostgreSQL server (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)

        async def run() -> None:
            url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
            async with scratch_database(url) as database_url:
                await measure(args, database_url, folder)

        asyncio.run(run())


if __name__ == "__main__":
    main()
