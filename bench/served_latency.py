"""Latency of one served recommendation, 10,000 products, in process: model to shown list.

What the service does per request once the customer's rows are read, for a known
customer with 30 products in their history:

- build the candidate mask (in stock, 20 purchased excluded);
- ``ServedModel.recommend`` for the relevance pool (``reranking.pool_depth(3)``, 30):
  ALS alone, and the ALS + EASE blend (EASE pruned to ``PRUNED_PARTNERS`` weights per
  product, as a 10,000-product artifact stores it), without and with recency (each
  product's row weighted by its place in the customer's history);
- ``reranking.arrange`` with ``cheapest_first``, the category cap and the rules' price
  cap, substitutes of five recent purchases demoted;
- the reason: the ALS cosine of the lead product with 30 past products.

"Something like X" is measured through ``RecommendationService.similar`` itself, with
the catalogue, the content model and the bought-together artifact in memory (the store
is not asked): product named by its title, as a card's "More like this" button sends it.

Factors and weights are random (latency does not depend on their values). Rounds
alternate the variants; prints p50 and p99 in milliseconds; asserts nothing. BLAS is
limited to one thread, as in an action server running one worker per core.

    python bench/served_latency.py [--items 10000] [--factors 64] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import scipy.sparse
from threadpoolctl import threadpool_limits

from harness import summary
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.association_artifacts import (
    associations_dir,
    save_association_artifact,
)
from rasa_personalize.recommend.associations import ItemAssociations
from rasa_personalize.recommend.content import ContentRecommender, ProductText
from rasa_personalize.recommend.content_artifacts import save_content_artifact
from rasa_personalize.recommend.ease import PRUNED_PARTNERS, EaseBlend, recency_weights
from rasa_personalize.recommend.filters import ItemCatalogue, RecommendationFilters
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.reasons import RELATED_COSINE, most_related, past_products
from rasa_personalize.recommend.reranking import (
    ArrangeRequest,
    ListPolicy,
    arrange,
    pool_depth,
    substitute_key,
    substitute_keys,
)
from rasa_personalize.recommend.resources import build_resources
from rasa_personalize.recommend.served import ServedModel
from rasa_personalize.recommend.service import RecommendationRequest, RecommendationService
from rasa_personalize.recommend.versions import content_dir
from rasa_personalize.store.catalogue import CustomerItems
from rasa_personalize.store.records import ProductRecord

CUSTOMER = "customer-00042"
NOUNS = ("Shoes", "Socks", "Jacket", "Tights", "Cap", "Watch", "Vest", "Tent", "Lamp", "Mug")


def build(
    args: argparse.Namespace,
) -> tuple[ServedModel, ServedModel, ServedModel, dict[str, ProductRecord]]:
    rng = np.random.default_rng(0)
    items, users = args.items, args.users
    item_ids = [f"sku-{i:06d}" for i in range(items)]
    als = AlsRecommender.from_factors(
        AlsParams(factors=args.factors),
        user_ids=IdMap.from_ids([f"customer-{i:05d}" for i in range(users)]),
        item_ids=IdMap.from_ids(item_ids),
        user_factors=rng.normal(0, 0.1, (users, args.factors)),
        item_factors=rng.normal(0, 0.1, (items, args.factors)),
    )
    rows = np.repeat(np.arange(items), PRUNED_PARTNERS)
    columns = rng.integers(0, items, size=items * PRUNED_PARTNERS)
    weights = scipy.sparse.csr_matrix(
        (rng.normal(0, 0.01, len(rows)).astype(np.float32), (rows, columns)), shape=(items, items)
    )
    history = rng.integers(0, items, size=(users, args.history))
    user_items = scipy.sparse.csr_matrix(
        (
            np.ones(history.size, dtype=np.float32),
            (np.repeat(np.arange(users), args.history), history.ravel()),
        ),
        shape=(users, items),
    )
    blend = EaseBlend(weights, user_items, weight=0.3, l2=500.0)
    # The same histories, newest first, each product weighted by its place.
    recent_items = scipy.sparse.csr_matrix(
        (
            np.tile(recency_weights(np.arange(args.history), 10.0), users),
            (np.repeat(np.arange(users), args.history), history.ravel()),
        ),
        shape=(users, items),
    )
    recent = EaseBlend(weights, recent_items, weight=5.0, l2=300.0, recency=10.0)
    products = {
        sku: ProductRecord(
            sku,
            f"Brand Model {NOUNS[i % len(NOUNS)]}",
            f"category-{i % 20:02d}",
            "Brand",
            float(rng.uniform(5, 200)),
            bool(rng.random() < 0.9),
        )
        for i, sku in enumerate(item_ids)
    }
    return ServedModel(als), ServedModel(als, blend), ServedModel(als, recent), products


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--history", type=int, default=30, help="products per customer")
    parser.add_argument("--requests", type=int, default=2_000, help="per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with threadpool_limits(limits=1, user_api="blas"):
        figures = measure(args) | measure_similar(args)
    if args.json:
        print(json.dumps(figures))
        return
    print(
        f"served recommendation latency: {args.items} products, {args.factors} factors, a known "
        f"customer with {args.history} products, pool {pool_depth(3)}, 3 shown, BLAS 1 thread, "
        f"{args.rounds} rounds x {args.requests} requests"
    )
    print(f"{'variant':<52}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in figures.items():
        print(f"{name:<52}{values['p50_ms']:>10.3f}{values['p99_ms']:>10.3f}")


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    alone, blended, recency, products = build(args)
    catalogue = ItemCatalogue.build(
        list(products),
        [p.category for p in products.values()],
        [p.price for p in products.values()],
        np.array([p.in_stock for p in products.values()]),
    )
    types = {sku: substitute_key(p) for sku, p in products.items()}
    rng = np.random.default_rng(1)
    skus = list(products)
    bought = [skus[int(i)] for i in rng.choice(len(skus), 20, replace=False)]
    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    purchases = [(sku, now - timedelta(days=3 * n)) for n, sku in enumerate(bought)]
    recent = [(skus[int(i)], "view", None) for i in rng.choice(len(skus), 10, replace=False)]
    depth = pool_depth(3)

    def serve(model: ServedModel) -> Callable[[], object]:
        def request() -> object:
            filters = RecommendationFilters(n=3, exclude=frozenset(bought))
            pool = model.recommend(
                CUSTOMER, depth, exclude=filters.exclude, candidates=filters.candidates(catalogue)
            )
            shown = arrange(
                [s.item_id for s in pool],
                3,
                products,
                ArrangeRequest(
                    "cheapest_first",
                    avoid=substitute_keys(purchases[:5], now, products, ListPolicy(), types),
                    max_price=120.0,
                ),
                depth=depth,
                types=types,
            )
            past = past_products([sku for sku, _ in purchases], recent)
            return most_related(shown[0], past, model.als.item_cosines, RELATED_COSINE)

        return request

    variants = {
        "ALS: mask + pool of 30 + arrange + reason": serve(alone),
        "ALS + EASE blend: mask + pool + arrange + reason": serve(blended),
        "ALS + EASE blend with recency: same": serve(recency),
    }
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    for call in variants.values():  # warm-up: caches, lazy alignments
        for _ in range(200):
            call()
    for _ in range(args.rounds):
        for name, call in variants.items():
            for _ in range(args.requests):
                started = time.perf_counter()
                call()
                latencies[name].append((time.perf_counter() - started) * 1000)
    return {name: summary(values) for name, values in latencies.items()}


# Words for product texts varied enough that "similar" is a ranking, not a tie.
ADJECTIVES = ("Light", "Trail", "Road", "Warm", "Compact", "Classic", "Pro", "Eco", "Rapid")


def measure_similar(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """p50/p99 of ``RecommendationService.similar`` for a product named by its title."""
    _, _, _, products = build(args)
    rng = np.random.default_rng(2)
    skus = list(products)
    texts = {
        sku: ProductText(
            sku,
            # A model name makes each title unique, as a card's button sends one product.
            f"{ADJECTIVES[i % len(ADJECTIVES)]} {p.title.replace('Model', f'M{i}')}",
            f"{ADJECTIVES[(i // 7) % len(ADJECTIVES)]} gear number {i % 97}",
            p.category,
            p.brand or "",
        )
        for i, (sku, p) in enumerate(products.items())
    }
    records = [
        ProductRecord(
            sku, texts[sku].title, p.category, p.brand, p.price, p.in_stock, texts[sku].description
        )
        for sku, p in products.items()
    ]
    # Baskets: a product and three of its eight neighbours, so each product has partners.
    baskets, bought = [], []
    for basket in range(60_000):
        anchor = int(rng.integers(len(skus)))
        for item in [anchor, *((anchor + rng.choice(8, 3, replace=False) + 1) % len(skus))]:
            baskets.append(f"basket-{basket}")
            bought.append(skus[int(item)])
    counts = rng.poisson(3, len(skus)).tolist()
    popularity_rows = [(sku, None, "purchase", c) for sku, c in zip(skus, counts, strict=True)]
    model_dir = Path(tempfile.mkdtemp(prefix="similar-latency-"))
    content = save_content_artifact(
        ContentRecommender().fit(list(texts.values())), content_dir(model_dir)
    )
    save_association_artifact(ItemAssociations().fit(baskets, bought), associations_dir(model_dir))
    service = RecommendationService(
        None,  # type: ignore[arg-type]  # the store is never asked: resources are set below
        model_dir,
        refresh_every_s=1e9,
        model_check_every_s=1e9,
    )
    service._resources = build_resources(records, popularity_rows, content)
    titles = [records[int(i)].title for i in rng.choice(len(records), 500, replace=False)]

    now = datetime(2026, 6, 1, tzinfo=timezone.utc)
    bought = [skus[int(i)] for i in rng.choice(len(skus), 20, replace=False)]
    items = CustomerItems(
        purchased=frozenset(bought),
        recent=(),
        purchases=tuple((sku, now - timedelta(days=3 * n)) for n, sku in enumerate(bought)),
    )
    # A known customer: a dislike, the rules' price cap; the strategy varies.
    customer = RecommendationRequest(
        CUSTOMER, tags=("not_interested_in_category-07",), max_price=120.0, now=now
    )
    visitor = RecommendationRequest("anonymous")
    bundles = replace(customer, strategy="bought_together")

    async def run() -> dict[str, list[float]]:
        variants = {
            "like X, no customer: content similarity": lambda title: service.similar(
                title, visitor
            ),
            "like X, default strategy: content + filters": lambda title: service.similar(
                title, customer, items
            ),
            "like X, bought_together: pairs + filters": lambda title: service.similar(
                title, bundles, items
            ),
        }
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():
            for title in titles[:100]:
                await call(title)
        for _ in range(args.rounds):
            for name, call in variants.items():
                for i in range(args.requests):
                    title = titles[i % len(titles)]
                    started = time.perf_counter()
                    await call(title)
                    latencies[name].append((time.perf_counter() - started) * 1000)
        return latencies

    return {name: summary(values) for name, values in asyncio.run(run()).items()}


if __name__ == "__main__":
    main()
