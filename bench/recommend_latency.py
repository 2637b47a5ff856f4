"""Recommendation latency: one known customer, 10,000 products, 64 factors, in process.

Measures ``AlsRecommender.recommend`` with business filters applied on every request
(build the candidate mask from ``RecommendationFilters`` -- in stock, price cap, 20
purchased SKUs excluded -- then score, mask and select the top 10), and in the same run
two baselines on the same factors and the same filters: implicit's own
``AlternatingLeastSquares.recommend`` (purchases as ``user_items``, filtered items as
``filter_items``) and a plain full sort of all scores. Rounds alternate so that noise
hits all three alike. Prints p50 and p99 in milliseconds and the ratios; asserts nothing.

BLAS is limited to one thread, as in an action server running one worker per core.

    python bench/recommend_latency.py [--items 10000] [--factors 64] [--requests 2000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse

# Imported before the BLAS limit is set: implicit loads its BLAS on import, and a
# library loaded inside threadpool_limits would escape the limit.
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from harness import summary
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.filters import ItemCatalogue, RecommendationFilters
from rasa_personalize.recommend.ids import IdMap

CUSTOMER = "customer-00042"


def build(items: int, factors: int, users: int, seed: int) -> tuple[AlsRecommender, ItemCatalogue]:
    """A model with random factors and a catalogue of the same items."""
    rng = np.random.default_rng(seed)
    item_ids = [f"sku-{i:06d}" for i in range(items)]
    model = AlsRecommender.from_factors(
        AlsParams(factors=factors),
        user_ids=IdMap.from_ids([f"customer-{i:05d}" for i in range(users)]),
        item_ids=IdMap.from_ids(item_ids),
        user_factors=rng.normal(0, 0.1, (users, factors)),
        item_factors=rng.normal(0, 0.1, (items, factors)),
    )
    catalogue = ItemCatalogue.build(
        item_ids,
        [f"category-{i % 20:02d}" for i in range(items)],
        rng.uniform(5, 200, items).round(2),
        rng.random(items) < 0.9,
    )
    return model, catalogue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--requests", type=int, default=2_000, help="per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    with threadpool_limits(limits=1, user_api="blas"):
        figures = measure(args)

    ours, implicit_figures, full_sort = (
        figures["als_recommend"],
        figures["implicit_recommend"],
        figures["full_sort"],
    )
    ratios = {
        "p50_ours_to_implicit": ours["p50_ms"] / implicit_figures["p50_ms"],
        "p50_ours_to_full_sort": ours["p50_ms"] / full_sort["p50_ms"],
    }
    if args.json:
        print(json.dumps({**figures, **ratios}))
        return
    print(
        f"recommend latency: {args.items} items, {args.factors} factors, 1 known customer, "
        f"top 10, filters: in stock + price cap + 20 purchased excluded, BLAS 1 thread, "
        f"{args.rounds} rounds x {args.requests} requests"
    )
    print(f"{'variant':<44}{'p50 ms':>10}{'p99 ms':>10}")
    labels = {
        "als_recommend": "AlsRecommender.recommend (mask + top 10)",
        "implicit_recommend": "baseline: implicit model.recommend",
        "full_sort": "baseline: scores + full argsort",
    }
    for name, label in labels.items():
        print(f"{label:<44}{figures[name]['p50_ms']:>10.3f}{figures[name]['p99_ms']:>10.3f}")
    print(f"ratio p50 ours / implicit:  {ratios['p50_ours_to_implicit']:.2f}")
    print(f"ratio p50 ours / full sort: {ratios['p50_ours_to_full_sort']:.2f}")


def measure(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    model, catalogue = build(args.items, args.factors, args.users, seed=0)
    rng = np.random.default_rng(1)
    purchased = frozenset(
        model.item_ids_.id_at(int(row)) for row in rng.choice(args.items, 20, replace=False)
    )
    filters = RecommendationFilters(n=10, exclude=purchased, in_stock_only=True, max_price=120.0)

    # implicit on the very same factors and filters.
    baseline = AlternatingLeastSquares(factors=args.factors, num_threads=1)
    baseline.user_factors = np.asarray(model.user_factors_)
    baseline.item_factors = np.asarray(model.item_factors_)
    user_row = model.user_ids_.row(CUSTOMER)
    purchased_rows = np.sort(model.item_ids_.rows(purchased))
    user_items = scipy.sparse.csr_matrix(
        (np.ones(len(purchased_rows), np.float32), purchased_rows, [0, len(purchased_rows)]),
        shape=(1, args.items),
    )
    filtered_rows = np.flatnonzero(
        ~catalogue.in_stock[model.item_ids_.rows_in(catalogue.index)]
        | (catalogue.prices[model.item_ids_.rows_in(catalogue.index)] > 120.0)
    ).astype(np.int32)

    def ours() -> object:
        return model.recommend(CUSTOMER, filters.n, candidates=filters.candidates(catalogue))

    def implicit_recommend() -> object:
        return baseline.recommend(user_row, user_items, N=10, filter_items=filtered_rows)

    def full_sort() -> object:
        scores = model.item_factors_ @ model.user_factors_[user_row]
        mask = filters.candidates(catalogue).mask_for(model.item_ids_)
        order = np.argsort(-np.where(mask, scores, -np.inf), kind="stable")[:10]
        return [model.item_ids_.id_at(int(row)) for row in order]

    # The three must agree on the items before their speed means anything.
    ours_items = [s.item_id for s in ours()]  # type: ignore[attr-defined]
    implicit_ids, _ = implicit_recommend()  # type: ignore[misc]
    if ours_items != full_sort() or ours_items != [
        model.item_ids_.id_at(int(i)) for i in implicit_ids
    ]:
        raise SystemExit("the variants disagree on the top 10: the comparison would be unfair")

    variants: dict[str, Callable[[], object]] = {
        "als_recommend": ours,
        "implicit_recommend": implicit_recommend,
        "full_sort": full_sort,
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


if __name__ == "__main__":
    main()
