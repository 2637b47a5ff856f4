"""Segmenting 100k customers: seconds per stage, against a plain K-Means baseline.

Two parts, each timed on its own:

1. **Clustering** on synthetic feature rows (numpy, six behaviour groups like the demo
   shop's, generated in well under a second). Variants, in alternating rounds:

   - ``baseline``: scale, then one plain K-Means with a fixed k=6 (``n_init=1``) and
     nearest-centre assignment: the least any K-Means segmentation costs;
   - ``kmeans``: the full default pipeline (k by silhouette over 4..10 on a 5k sample,
     final fit on everyone, naming, stable ids, scores);
   - ``gmm`` and ``dbscan``: the other methods' full pipelines.

2. **SQL**: a temporary SQLite file is filled with bulk inserts (customers, products,
   ``--interactions`` per customer on average), then :func:`compute_features` (the two
   grouped aggregate queries, streamed) and :func:`store_assignments` (batched upserts)
   are timed on it.

Target: the whole job, SQL features + clustering + storing, <= 60 s for 100k
customers on 2 cores.

    python bench/segment_throughput.py [--customers 100000] [--rounds 3]
        [--interactions 8] [--threads 1] [--skip-sql]

Prints figures; never asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sqlalchemy import create_engine
from threadpoolctl import threadpool_limits

from rasa_personalize.segments.assign import store_assignments
from rasa_personalize.segments.clustering import (
    CLUSTER_FEATURES,
    LOG_FEATURES,
    CustomerSegmenter,
    Segmentation,
)
from rasa_personalize.segments.features import BASE_FEATURES, CustomerFeatures, compute_features
from rasa_personalize.segments.model import FeatureScaler
from rasa_personalize.store.models import Base
from rasa_personalize.store.sql_store import SqlStore

T = TypeVar("T")
NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
GROUPS = ("new_visitor", "browser", "at_risk", "price_sensitive", "loyal", "frequent_buyer")
SHARES = (0.15, 0.20, 0.15, 0.20, 0.12, 0.18)
CATEGORIES = ("electronics", "running", "outdoor", "home", "kitchen", "books", "fashion")
KINDS = ("view", "search", "cart", "purchase", "chat_click", "feedback")
KIND_SHARES = (0.62, 0.16, 0.06, 0.08, 0.06, 0.02)


def synthetic_features(n: int, seed: int) -> tuple[CustomerFeatures, np.ndarray]:
    """Feature rows of ``n`` customers drawn from six groups, and their true group."""
    rng = np.random.default_rng(seed)
    group = rng.choice(len(GROUPS), size=n, p=SHARES)
    columns = {name: np.zeros(n) for name in BASE_FEATURES}
    columns["recency_days"][:] = 365.0
    columns["relative_price"][:] = 1.0
    columns["age"][:] = np.clip(rng.normal(40, 14, n), 18, 80).round()

    def fill(
        g: int, purchases: tuple[int, int], recency: tuple[float, float], **extra: object
    ) -> None:
        rows = np.flatnonzero(group == g)
        m = len(rows)
        frequency = rng.integers(purchases[0], purchases[1] + 1, m).astype(float)
        bought = frequency > 0
        columns["frequency"][rows] = frequency
        columns["monetary"][rows] = frequency * rng.lognormal(np.log(60), 0.5, m)
        columns["recency_days"][rows] = np.where(bought, rng.uniform(*recency, m), 365.0)
        columns["sessions"][rows] = frequency * 2 + rng.poisson(12, m)
        columns["views_per_session"][rows] = rng.uniform(0.5, 1.0, m)
        columns["click_through"][rows] = rng.uniform(0, 0.15, m)
        columns["relative_price"][rows] = np.where(bought, rng.lognormal(0, 0.3, m), 1.0)
        for name, value in extra.items():
            draw = value(m) if callable(value) else value
            columns[name][rows] = draw

    fill(1, (0, 1), (0, 45))  # browser
    fill(2, (1, 4), (100, 180), sessions=lambda m: rng.poisson(10, m))  # at_risk
    fill(
        3, (3, 9), (0, 45),
        discount_share=lambda m: rng.uniform(0.6, 1.0, m),
        relative_price=lambda m: rng.lognormal(np.log(0.6), 0.3, m),
    )  # fmt: skip
    fill(
        4, (8, 14), (0, 45),
        loyalty_tier=lambda m: rng.choice([2.0, 3.0], m, p=[0.7, 0.3]),
        relative_price=lambda m: rng.lognormal(np.log(1.9), 0.3, m),
    )  # fmt: skip
    fill(
        5, (5, 9), (0, 45),
        discount_share=lambda m: rng.uniform(0, 0.3, m),
        loyalty_tier=lambda m: rng.choice([0.0, 1.0], m),
    )  # fmt: skip
    matrix = np.column_stack([columns[name] for name in BASE_FEATURES])
    features = CustomerFeatures(np.arange(1, n + 1, dtype=np.int64), matrix, BASE_FEATURES, NOW)
    return features, np.array(GROUPS)[group]


def baseline(features: CustomerFeatures) -> np.ndarray:
    """Scale, one K-Means with k=6, assign: the floor of any K-Means segmentation."""
    scaler = FeatureScaler.fit(features, CLUSTER_FEATURES, tuple(sorted(LOG_FEATURES)))
    scaled = scaler.transform(features)
    model = KMeans(6, n_init=1, random_state=0).fit(scaled)
    return np.asarray(model.predict(scaled))


def timed(job: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = job()
    return time.perf_counter() - start, result


def clustering_part(n: int, rounds: int, threads: int) -> float:
    """Time the variants on synthetic rows; return the full K-Means pipeline's median."""
    features, truth = synthetic_features(n, seed=1)
    print(f"clustering {n:,} synthetic customers, {rounds} rounds, {threads} thread(s)")
    variants: dict[str, Callable[[], object]] = {
        "baseline (k=6)": lambda: baseline(features),
        "kmeans pipeline": lambda: CustomerSegmenter("kmeans", n_threads=threads).fit(features),
        "gmm pipeline": lambda: CustomerSegmenter("gmm", n_threads=threads).fit(features),
        "dbscan pipeline": lambda: CustomerSegmenter("dbscan", n_threads=threads).fit(features),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    agreement: dict[str, float] = {}
    with threadpool_limits(limits=threads):
        for _ in range(rounds):
            for name, job in variants.items():
                elapsed, result = timed(job)
                seconds[name].append(elapsed)
                labels = (
                    result.segmentation_.segment_codes
                    if isinstance(result, CustomerSegmenter)
                    else result
                )
                agreement[name] = float(adjusted_rand_score(truth, labels))
    floor = statistics.median(seconds["baseline (k=6)"])
    print(f"  {'variant':<18}{'median s':>10}{'max s':>9}{'x baseline':>12}{'ARI':>7}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(
            f"  {name:<18}{median:>10.2f}{max(values):>9.2f}{median / floor:>12.1f}"
            f"{agreement[name]:>7.3f}"
        )
    return statistics.median(seconds["kmeans pipeline"])


def fill_store(path: Path, n: int, per_customer: int, seed: int) -> int:
    """Bulk-insert a shop into a new SQLite file; return the number of interactions."""
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    rng = np.random.default_rng(seed)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    n_products = 300
    product_category = rng.integers(0, len(CATEGORIES), n_products)
    product_price = np.round(rng.lognormal(np.log(50), 0.6, n_products), 2)
    connection.executemany(
        "INSERT INTO products (id, sku, title, description, category, price, in_stock, attributes)"
        " VALUES (?, ?, ?, '', ?, ?, 1, '{}')",
        [
            (i + 1, f"SKU-{i:05d}", f"Product {i}", CATEGORIES[c], float(p))
            for i, (c, p) in enumerate(zip(product_category, product_price, strict=True))
        ],
    )
    tiers = np.array(["none", "silver", "gold", "platinum"])[
        rng.choice(4, n, p=[0.55, 0.3, 0.1, 0.05])
    ]
    created = (NOW - timedelta(days=400)).strftime("%Y-%m-%d %H:%M:%S.000000")
    connection.executemany(
        "INSERT INTO customers (id, customer_key, created_at, age, gender, loyalty_tier)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (i + 1, f"key-{i:08d}", created, int(a), g, str(t))
            for i, (a, g, t) in enumerate(
                zip(
                    rng.integers(18, 80, n),
                    rng.choice(["female", "male"], n),
                    tiers,
                    strict=True,
                )
            )
        ],
    )
    # Interactions per customer: geometric around the mean, some customers with none.
    counts = rng.poisson(per_customer, n)
    total = int(counts.sum())
    customer = np.repeat(np.arange(1, n + 1), counts)
    kind = rng.choice(len(KINDS), total, p=KIND_SHARES)
    product = rng.integers(1, n_products + 1, total)
    seconds_ago = rng.integers(60, 180 * 86_400, total)
    when = np.datetime64(NOW.replace(tzinfo=None), "us") - seconds_ago.astype("timedelta64[s]")
    when_text = np.char.replace(np.datetime_as_string(when, unit="us"), "T", " ")
    list_price = product_price[product - 1]
    discounted = rng.random(total) < 0.3
    paid = np.round(np.where(discounted, list_price * 0.8, list_price), 2)
    is_purchase = kind == KINDS.index("purchase")
    chunk = 200_000
    for start in range(0, total, chunk):
        end = min(total, start + chunk)
        connection.executemany(
            "INSERT INTO interactions (event_id, customer_id, product_id, kind, quantity, price,"
            " occurred_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
            [
                (
                    f"e{i}",
                    int(customer[i]),
                    int(product[i]),
                    KINDS[kind[i]],
                    float(paid[i]) if is_purchase[i] else None,
                    str(when_text[i]),
                )
                for i in range(start, end)
            ],
        )
    connection.execute(
        "CREATE INDEX IF NOT EXISTS ix_interactions_customer_time"
        " ON interactions (customer_id, occurred_at)"
    )
    connection.commit()
    connection.close()
    return total


async def sql_part(path: Path, threads: int) -> dict[str, float]:
    """Time the SQL feature step and storing the assignments on the filled file."""
    store = SqlStore(f"sqlite:///{path}")
    try:
        async with store.sessions() as session:
            features_s, features = await _timed_async(compute_features(session, now=NOW))
        segmenter = CustomerSegmenter(n_threads=threads)
        cluster_s, _ = timed(lambda: segmenter.fit(features))
        segmentation: Segmentation = segmenter.segmentation_
        async with store.sessions.begin() as session:
            store_s, _ = await _timed_async(store_assignments(session, segmentation, now=NOW))
    finally:
        await store.dispose()
    return {"features": features_s, "clustering": cluster_s, "store": store_s}


async def _timed_async(awaitable: Awaitable[T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = await awaitable
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interactions", type=int, default=8, help="mean per customer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-sql", action="store_true")
    args = parser.parse_args()

    kmeans_s = clustering_part(args.customers, args.rounds, args.threads)
    if args.skip_sql:
        return
    with tempfile.TemporaryDirectory(prefix="segment-bench-") as directory:
        path = Path(directory) / "shop.db"
        fill_s, total = timed(lambda: fill_store(path, args.customers, args.interactions, seed=2))
        print(
            f"\nSQL on SQLite: {args.customers:,} customers, {total:,} interactions "
            f"(bulk insert {fill_s:.1f} s, not part of the job)"
        )
        stages = asyncio.run(sql_part(path, args.threads))
    total_s = sum(stages.values())
    for name, value in stages.items():
        print(f"  {name:<12}{value:>8.2f} s")
    print(f"  {'whole job':<12}{total_s:>8.2f} s  (target <= 60 s; clustering alone, synthetic:"
          f" {kmeans_s:.2f} s)")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
