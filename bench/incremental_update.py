"""Incremental updates: what a recalculated customer vector costs, and how fast news shows.

Part 1, in process (no store): 10,000 products, 64 factors, BM25 weighting, business
filters on every request (in stock, price cap, 20 purchased SKUs excluded), top 10. The
baseline is ``AlsRecommender.recommend`` with the customer's stored vector; the variant
first recalculates the vector from a history of N products (``fresh_vector``: confidence
weights, BM25, one 64x64 solve), then scores with it. Rounds alternate the variants so
that noise hits all alike. Also prints the solve alone and an ``asyncio.to_thread`` round
trip, which is what ``INLINE_HISTORY_ROWS`` weighs against each other.

Part 2, end to end on a real store (the demo shop, trained with precomputed lists, a
``PersonalizationService`` as the action server runs it): the latency of
``PersonalizationService.recommend`` for customers with nothing new (precomputed list)
and, in the same run, for customers with interactions after the training cutoff (history
read in the same hop, vector recalculated); and the time from storing a new event
(``ingest_events`` committed, profile metrics refreshed) to the first recommendation that
reflects it, with how often that recommendation differs from the one before.

BLAS is limited to one thread, as in an action server running one worker per core.
Prints figures; asserts nothing. PostgreSQL: ``--database-url`` names a server; the bench
creates a scratch database on it and drops it at the end.

    python bench/incremental_update.py [--items 10000] [--requests 2000] [--trials 50]
                                       [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

# Imported before the BLAS limit is set: implicit loads its BLAS on import, and a
# library loaded inside threadpool_limits would escape the limit.
from implicit.cpu.als import AlternatingLeastSquares  # noqa: F401
from sqlalchemy import select
from threadpoolctl import threadpool_limits

from harness import add_database_url_option, run_on_scratch, summary
from rasa_personalize.demo.generator import DemoShopConfig, seed_demo_shop
from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.events.ingest import ingest_events
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import AlsArtifact, ArtifactMetadata
from rasa_personalize.recommend.filters import ItemCatalogue, RecommendationFilters
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.incremental import counted_kinds, fresh_vector
from rasa_personalize.recommend.training import store_confidence, train_from_store
from rasa_personalize.rules import RuleBook
from rasa_personalize.settings import Settings
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.history import CustomerHistory, HistoryEntry, HistoryQuery
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.models import Customer, Interaction, Product
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore

SECRET = "bench-secret-key-0123456789abcdef"
CUSTOMER = "customer-00042"
HISTORY_SIZES = (10, 100, 500)


# -- part 1: in process ----------------------------------------------------------------------


def build(items: int, factors: int, users: int) -> tuple[AlsArtifact, ItemCatalogue]:
    """A BM25 model with random factors (speed does not depend on their values)."""
    rng = np.random.default_rng(0)
    item_ids = [f"sku-{i:06d}" for i in range(items)]
    model = AlsRecommender.from_factors(
        AlsParams(factors=factors, regularization=1.0, alpha=2.0, weighting="bm25"),
        user_ids=IdMap.from_ids([f"customer-{i:05d}" for i in range(users)]),
        item_ids=IdMap.from_ids(item_ids),
        user_factors=rng.normal(0, 0.1, (users, factors)),
        item_factors=rng.normal(0, 0.1, (items, factors)),
        item_idf=rng.uniform(0.5, 5.0, items),
        mean_user_weight=30.0,
    )
    now = datetime.now(timezone.utc).isoformat()
    metadata = ArtifactMetadata(version="bench", trained_at=now, params={}, counts={})
    catalogue = ItemCatalogue.build(
        item_ids,
        [f"category-{i % 20:02d}" for i in range(items)],
        rng.uniform(5, 200, items).round(2),
        rng.random(items) < 0.9,
    )
    return AlsArtifact(model, metadata, Path(".")), catalogue


def history_of(size: int, items: int, kinds: frozenset[str]) -> CustomerHistory:
    """``size`` products, each viewed; every fourth also carted, every tenth bought."""
    rng = np.random.default_rng(size)
    when = datetime.now(timezone.utc)
    entries = []
    for n, row in enumerate(rng.choice(items, size, replace=False).tolist()):
        sku = f"sku-{row:06d}"
        entries.append(HistoryEntry(sku, "view", None, 1 + n % 3, when - timedelta(minutes=n)))
        if n % 4 == 0:
            entries.append(HistoryEntry(sku, "cart", None, 1, when - timedelta(minutes=n)))
        if n % 10 == 0:
            entries.append(HistoryEntry(sku, "purchase", None, 1, when - timedelta(minutes=n)))
    return CustomerHistory(HistoryQuery(after=None, kinds=kinds), tuple(entries))


def measure_in_process(args: argparse.Namespace) -> dict[str, Any]:
    artifact, catalogue = build(args.items, args.factors, args.users)
    model = artifact.model
    confidence = store_confidence()
    kinds = counted_kinds(confidence)
    rng = np.random.default_rng(1)
    purchased = frozenset(
        model.item_ids_.id_at(int(row)) for row in rng.choice(args.items, 20, replace=False)
    )
    filters = RecommendationFilters(n=10, exclude=purchased, in_stock_only=True, max_price=120.0)
    histories = {size: history_of(size, args.items, kinds) for size in HISTORY_SIZES}

    def stored() -> object:
        candidates = filters.candidates(catalogue)
        return model.recommend(CUSTOMER, 10, exclude=purchased, candidates=candidates)

    def recalculated(history: CustomerHistory) -> Callable[[], object]:
        def call() -> object:
            fresh = fresh_vector(artifact, history, confidence)
            assert fresh is not None
            candidates = filters.candidates(catalogue)
            return model.recommend_for_vector(
                fresh.vector, 10, exclude=purchased, candidates=candidates
            )

        return call

    def solve_only(history: CustomerHistory) -> Callable[[], object]:
        return lambda: fresh_vector(artifact, history, confidence)

    variants: dict[str, Callable[[], object]] = {"stored vector": stored}
    for size, history in histories.items():
        variants[f"recalculated, {size} products"] = recalculated(history)
    for size, history in histories.items():
        variants[f"  of which the vector alone, {size}"] = solve_only(history)

    latencies: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():  # warm-up: caches, lazy alignments, the item Gram matrix
        for _ in range(100):
            call()
    for _ in range(args.rounds):
        for name, call in variants.items():
            for _ in range(args.requests):
                started = time.perf_counter()
                call()
                latencies[name].append((time.perf_counter() - started) * 1000)

    async def hops() -> list[float]:
        times = []
        for _ in range(args.requests):
            started = time.perf_counter()
            await asyncio.to_thread(int)
            times.append((time.perf_counter() - started) * 1000)
        return times

    figures: dict[str, Any] = {name: summary(values) for name, values in latencies.items()}
    figures["asyncio.to_thread round trip"] = summary(asyncio.run(hops()))
    return figures


# -- part 2: end to end on a store -----------------------------------------------------------


def ask(external_id: str) -> PersonalizationRequest:
    return PersonalizationRequest(CustomerIdentity(external_id, "message_metadata"))


async def prepare(database_url: str, model_dir: Path, config: DemoShopConfig) -> SqlStore:
    """Migrate, seed the demo shop (history ending a minute ago), train with precompute."""
    store = SqlStore(database_url, StoreTimeouts(connect_s=5.0, statement_s=None))
    async with store.engine.begin() as connection:
        await upgrade_connection(connection)
    seeded_at = datetime.now(timezone.utc) - timedelta(minutes=1)
    async with store.sessions.begin() as session:
        await seed_demo_shop(session, config, secret_key=SECRET, now=seeded_at)
        await rebuild_profile_metrics(session, now=seeded_at)
    await train_from_store(store, model_dir, precompute=True)
    return store


async def untouched_products(store: SqlStore, external_id: str) -> list[str]:
    """In-stock products of categories the customer never touched."""
    key = customer_key(SECRET, external_id)
    async with store.sessions() as session:
        touched = set(
            (
                await session.scalars(
                    select(Product.category)
                    .join(Interaction, Interaction.product_id == Product.id)
                    .join(Customer, Customer.id == Interaction.customer_id)
                    .where(Customer.customer_key == key)
                )
            ).all()
        )
        rows = (
            await session.execute(
                select(Product.sku, Product.category)
                .where(Product.in_stock.is_(True))
                .order_by(Product.sku)
            )
        ).all()
    return [sku for sku, category in rows if category not in touched]


async def store_news(store: SqlStore, external_id: str, skus: list[str], tag: str) -> None:
    """A view and a purchase of each sku, stamped now, as the events API stores them."""
    now = datetime.now(timezone.utc)
    raw = [
        {
            "event_id": f"bench-incremental-{tag}-{external_id}-{n}-{kind}",
            "customer": external_id,
            "kind": kind,
            "product": sku,
            "timestamp": now.isoformat(),
        }
        for n, sku in enumerate(skus)
        for kind in ("view", "purchase")
    ]
    async with store.sessions.begin() as session:
        await ingest_events(session, raw, secret_key=SECRET, now=now)


def skus_of(plan: Any) -> list[str]:
    return [product["sku"] for product in plan["recommended_products"]]


async def timed(work: Awaitable[Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await work
    return (time.perf_counter() - started) * 1000, result


async def measure_end_to_end(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = Path(scratch) / "models"
        store = await prepare(database_url, model_dir, DemoShopConfig())
        settings = Settings(
            database_url=database_url,
            secret_key=SECRET,
            model_dir=model_dir,
            redis_url=None,
            action_budget_s=5.0,
            rules_path=Path(scratch) / "no-rules.yml",
        )
        service = PersonalizationService(
            settings, store, rules=RuleBook(settings.rules_path, strict=False)
        )
        await service.warm_up()
        try:
            return await _end_to_end(args, store, service)
        finally:
            await service.close()


async def _end_to_end(
    args: argparse.Namespace, store: SqlStore, service: PersonalizationService
) -> dict[str, Any]:
    customers = [f"customer-{n:05d}" for n in range(1, 3 * args.trials + 1)]
    quiet, news, trials = (
        customers[: args.trials],
        customers[args.trials : 2 * args.trials],
        customers[2 * args.trials :],
    )
    for external_id in news:  # one new purchase each: every request for them recalculates
        await store_news(
            store, external_id, (await untouched_products(store, external_id))[:1], "a"
        )

    latencies: dict[str, list[float]] = {"nothing new": [], "new interactions": []}
    for _ in range(3):  # warm-up
        await service.recommend(ask(quiet[0]))
        await service.recommend(ask(news[0]))
    for _ in range(args.rounds):
        for label, group in (("nothing new", quiet), ("new interactions", news)):
            for external_id in group:
                elapsed, _ = await timed(service.recommend(ask(external_id)))
                latencies[label].append(elapsed)

    store_ms, recommend_ms, total_ms, changed = [], [], [], 0
    for external_id in trials:
        skus = (await untouched_products(store, external_id))[:2]
        before = skus_of(await service.recommend(ask(external_id)))
        started = time.perf_counter()
        await store_news(store, external_id, skus, "b")
        stored_at = time.perf_counter()
        after = skus_of(await service.recommend(ask(external_id)))
        finished = time.perf_counter()
        store_ms.append((stored_at - started) * 1000)
        recommend_ms.append((finished - stored_at) * 1000)
        total_ms.append((finished - started) * 1000)
        changed += after != before
    return {
        "recommend": {label: summary(values) for label, values in latencies.items()},
        "event_to_recommendation": {
            "store_event": summary(store_ms),
            "next_recommend": summary(recommend_ms),
            "total": summary(total_ms),
            "changed": changed,
            "trials": len(trials),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=2_000, help="per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=50, help="customers per store group")
    add_database_url_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with threadpool_limits(limits=1, user_api="blas"):
        in_process = measure_in_process(args)
        end_to_end = run_on_scratch(
            args.database_url, lambda database_url: measure_end_to_end(args, database_url)
        )
    backend = (args.database_url or "sqlite").split(":", 1)[0]
    baseline = in_process["stored vector"]
    ratios = {
        name: figures["p50_ms"] / baseline["p50_ms"]
        for name, figures in in_process.items()
        if name.startswith("recalculated")
    }
    recommend = end_to_end["recommend"]
    store_ratio = recommend["new interactions"]["p50_ms"] / recommend["nothing new"]["p50_ms"]
    if args.json:
        print(
            json.dumps(
                {
                    "in_process": in_process,
                    "ratios_p50_to_stored": ratios,
                    "end_to_end": end_to_end,
                    "backend": backend,
                    "ratio_p50_new_to_nothing_new": store_ratio,
                }
            )
        )
        return
    print(
        f"in process: {args.items} items, {args.factors} factors, BM25, top 10, filters: in "
        f"stock + price cap + 20 purchased excluded, BLAS 1 thread, "
        f"{args.rounds} rounds x {args.requests} requests"
    )
    print(f"{'variant':<44}{'p50 ms':>10}{'p99 ms':>10}{'p50 ratio':>11}")
    for name, figures in in_process.items():
        ratio = f"{ratios[name]:>11.2f}" if name in ratios else ""
        print(f"{name:<44}{figures['p50_ms']:>10.3f}{figures['p99_ms']:>10.3f}{ratio}")
    print()
    print(
        f"end to end on {backend} (demo shop: 2,000 customers, 300 products, 50k "
        f"interactions; PersonalizationService.recommend, n=3)"
    )
    print(f"{'request':<44}{'p50 ms':>10}{'p99 ms':>10}")
    for label, figures in recommend.items():
        print(f"{'customer with ' + label:<44}{figures['p50_ms']:>10.3f}{figures['p99_ms']:>10.3f}")
    print(f"ratio p50 new interactions / nothing new: {store_ratio:.2f}")
    flow = end_to_end["event_to_recommendation"]
    for label, key in (
        ("store 4 events (ingest_events, committed)", "store_event"),
        ("next recommendation", "next_recommend"),
        ("event stored -> changed recommendation", "total"),
    ):
        print(f"{label:<44}{flow[key]['p50_ms']:>10.3f}{flow[key]['p99_ms']:>10.3f}")
    print(f"recommendation changed after the event: {flow['changed']} of {flow['trials']}")


if __name__ == "__main__":
    main()
