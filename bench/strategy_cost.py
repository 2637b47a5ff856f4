"""What each recommendation strategy costs in precision@k, offline, on the store's data.

The protocol of ``personalize evaluate --dataset demo`` (random 80/20 split per
interaction, seeds 42 to 46 pooled, to tell a strategy's cost from the noise of one
split; positives are purchases, carts and liked feedback; items a
customer has in training are never recommended): the recommender ``personalize
evaluate`` and ``personalize train`` choose on validation ranks a pool of
``reranking.pool_depth(k)`` candidates per customer, and ``reranking.arrange`` picks the
``k`` shown from it, as the server does. Variants:

- ``default``: no strategy and no category cap: the recommender's own top k;
- one row per strategy (``cheapest_first``, ``premium``, ``new_arrivals``), no cap;
- ``cheapest_first, max_price P``: with the price cap the demo rules give price-sensitive
  customers, as served (products above it wait behind the relevant ones within it);
- ``..., as a filter``: the same cap applied to the catalogue before ranking (how caps
  worked before), for comparison;
- ``default, at most C per category``: the diversity rule's own cost.

Per variant: precision@k and its change against ``default``, NDCG, intra-list diversity
(share of pairs of a list in different categories) and catalogue coverage. Prints
figures, asserts nothing.

    python bench/strategy_cost.py [--database-url sqlite:///personalize.db] [--k 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from rasa_personalize.recommend.demo_data import load_store_events, tune_for_store
from rasa_personalize.recommend.evaluation import (
    DEFAULT_SEED,
    EvaluationData,
    EvaluationTask,
    Ranker,
    build_ranker,
    popularity_ranker,
    random_split,
    score_rankings,
)
from rasa_personalize.recommend.reranking import ArrangeRequest, arrange, pool_depth
from rasa_personalize.store.catalogue import read_first_seen
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.records import ProductRecord
from rasa_personalize.store.segments import read_synthetic_groups
from rasa_personalize.store.sql_store import SqlStore

PRICE_CAP = 60.0  # what personalization.yml gives price-sensitive customers
STRATEGIES = ("cheapest_first", "premium", "new_arrivals")


async def read_store(
    url: str,
) -> tuple[EvaluationData, dict[str, ProductRecord], dict[str, float], dict[str, str]]:
    """Evaluation data, the catalogue, first-seen times and the demo's true groups."""
    store = SqlStore(url, StoreTimeouts(connect_s=10.0, statement_s=None))
    try:
        async with store.sessions() as session:
            data = await load_store_events(session)
            first_seen = await read_first_seen(session)
            known = await read_synthetic_groups(session)
        products, _ = await store.read_recommendation_inputs()
    finally:
        await store.dispose()
    return (
        data,
        {p.sku: p for p in products},
        {sku: when.timestamp() for sku, when in first_seen.items()},
        dict(zip(map(str, known.customer_ids.tolist()), known.groups, strict=True)),
    )


def intra_list_diversity(
    lists: Sequence[Sequence[str]], products: Mapping[str, ProductRecord]
) -> float:
    """Mean share of pairs within a list whose products are of different categories."""
    shares = []
    for items in lists:
        pairs = list(combinations([products[sku].category for sku in items if sku in products], 2))
        if pairs:
            shares.append(sum(a != b for a, b in pairs) / len(pairs))
    return float(np.mean(shares)) if shares else 0.0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant's lists over ``--seeds`` random splits, scored together."""
    started = time.perf_counter()
    data, products, first_seen, groups = asyncio.run(read_store(args.database_url))
    depth = pool_depth(args.k)
    cheap = {sku for sku, product in products.items() if product.price <= PRICE_CAP}
    variants: defaultdict[str, dict[str, list[str]]] = defaultdict(dict)
    capped_variants: defaultdict[str, dict[str, list[str]]] = defaultdict(dict)
    relevant: dict[str, frozenset[str]] = {}
    bargain: set[str] = set()
    recommenders = []
    for seed in range(DEFAULT_SEED, DEFAULT_SEED + args.seeds):
        # Chosen on validation carved from this split's training rows, as train does.
        tuning = tune_for_store(data, k=args.k, seed=seed)
        recommenders.append(type(tuning.recommender).__name__)
        task = EvaluationTask.from_split(data, random_split(len(data), seed=seed))
        popularity = popularity_ranker(task.train)
        ranker = build_ranker(task.train, tuning.recommender, fallback=popularity)

        def pool(
            user: str, cap: bool, task: EvaluationTask = task, ranker: Ranker = ranker
        ) -> list[str]:
            seen = task.seen.get(user, frozenset())
            if cap:
                # The cap as a filter before ranking: everything above it counts as seen.
                seen = seen | (products.keys() - cheap)
            return ranker(user, depth, frozenset(seen))

        def arranged(
            candidates: list[str], strategy: str, cap: int | None, max_price: float | None = None
        ) -> list[str]:
            request = ArrangeRequest(strategy, max_per_category=cap, max_price=max_price)
            return arrange(candidates, args.k, products, request, depth=depth, arrivals=first_seen)

        for user in task.users:
            key = f"{seed}:{user}"
            relevant[key] = task.relevant[user]
            free = pool(user, cap=False)
            variants["default"][key] = arranged(free, "default", None)
            for strategy in STRATEGIES:
                variants[strategy][key] = arranged(free, strategy, None)
            variants[f"default, at most {args.per_category} per category"][key] = arranged(
                free, "default", args.per_category
            )
            # The price cap, where the demo rules use it: the price-sensitive group.
            if groups.get(user) == "price_sensitive":
                bargain.add(key)
                capped_variants["default"][key] = variants["default"][key]
                capped_variants[f"cheapest_first, max_price {PRICE_CAP:g}"][key] = arranged(
                    free, "cheapest_first", None, PRICE_CAP
                )
                capped_variants[f"cheapest_first, max_price {PRICE_CAP:g} as a filter"][key] = (
                    arranged(pool(user, cap=True), "cheapest_first", None)
                )
    scopes = {"all customers": score(variants, relevant, args.k, data.catalogue_size, products)}
    if bargain:
        scopes["price-sensitive customers"] = score(
            capped_variants,
            {key: relevant[key] for key in bargain},
            args.k,
            data.catalogue_size,
            products,
        )
    return {
        "k": args.k,
        "seeds": args.seeds,
        "pool_depth": depth,
        "recommenders": recommenders,
        "scopes": scopes,
        "seconds": round(time.perf_counter() - started, 1),
    }


def score(
    variants: Mapping[str, Mapping[str, list[str]]],
    relevant: Mapping[str, frozenset[str]],
    k: int,
    catalogue_size: int,
    products: Mapping[str, ProductRecord],
) -> dict[str, Any]:
    """Metrics per variant over the customers of ``relevant`` (one per split and
    customer), with the change of precision against default."""
    figures: dict[str, dict[str, float]] = {}
    for name, lists in variants.items():
        metrics = score_rankings(lists, relevant, k=k, catalogue_size=catalogue_size)
        figures[name] = {
            "precision": metrics.precision,
            "ndcg": metrics.ndcg,
            "coverage": metrics.coverage,
            "diversity": intra_list_diversity(list(lists.values()), products),
        }
    base = figures["default"]["precision"]
    for values in figures.values():
        values["change_vs_default"] = values["precision"] / base - 1 if base else 0.0
    return {"users": len(relevant), "variants": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("PERSONALIZE_DATABASE_URL", "sqlite:///personalize.db"),
        help="the store to read (default: the seeded demo store)",
    )
    parser.add_argument("--k", type=int, default=10, help="list length")
    parser.add_argument("--per-category", type=int, default=2, help="the diversity cap to price")
    parser.add_argument("--seeds", type=int, default=5, help="random splits (seeds 42, 43, ...)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    report = measure(args)
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"strategy cost: precision@{report['k']} over {report['seeds']} random splits, pool of "
        f"{report['pool_depth']}, recommender chosen on each split's validation "
        f"({', '.join(sorted(set(report['recommenders'])))}), {report['seconds']} s"
    )
    header = (
        "variant",
        f"P@{args.k}",
        "vs default",
        "NDCG",
        "diversity",
        "coverage",
    )
    for scope, figures in report["scopes"].items():
        print(f"{scope} ({figures['users']} customer-splits with a test positive):")
        print(f"  {header[0]:<44}" + "".join(f"{h:>13}" for h in header[1:]))
        for name, f in figures["variants"].items():
            print(
                f"  {name:<44}{f['precision']:>13.4f}{f['change_vs_default']:>+13.1%}"
                f"{f['ndcg']:>13.4f}{f['diversity']:>13.3f}{f['coverage']:>13.3f}"
            )


if __name__ == "__main__":
    main()
