"""Offline evaluation on MovieLens-100k: three protocols, eight models, every metric, a picture.

Protocols (``rasa_personalize.recommend.protocols``): the random 80/20 split of
``personalize evaluate`` (seed 42), a time-based split (per customer, the newest 20% of
their ratings held out) and leave-last-one-out (per customer, the newest rating; hit
rate@k is the headline there). Positives are ratings >= 4; products a customer rated in
training are never recommended.

Models: popularity, untuned ALS, EASE, item-kNN (cosine, BM25), BPR
(``rasa_personalize.recommend.baselines``), the tuned ALS and the recommender as
``personalize evaluate --dataset movielens-100k`` reports it (the tuned ALS blended
with EASE). On the time split the recommender (the ALS parameters, then EASE's penalty
and weight and how fast a customer's older products fade in its input) is chosen in
the run on that protocol's own validation (``protocols.tune_for_time_split``: each
customer's newest 20% of their training rows), never on the test rows; leave-last-one-out
uses the same choice (its held-out rating is among those newest 20%, so validation never
saw it). Metrics: precision, recall, MAP, NDCG, MRR, hit rate @k, catalogue coverage and
novelty. Targets: recommender precision@10 >= 2.3x popularity on the random split,
>= 2.0x on the time split, and at or above the best baseline on both.

    python bench/evaluation_report.py [--k 10] [--picture reports/evaluation.png] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rasa_personalize.recommend.baselines import bpr_ranker, ease_ranker, item_knn_ranker
from rasa_personalize.recommend.datasets import load_movielens_100k
from rasa_personalize.recommend.evaluation import (
    UNTUNED_ALS_PARAMS,
    EvaluationData,
    EvaluationTask,
    HybridConfig,
    ModelConfig,
    Ranker,
    RecommenderConfig,
    Split,
    build_ranker,
    popularity_ranker,
    random_split,
    tuned_model,
    tuned_params,
    uniform_confidence,
)
from rasa_personalize.recommend.protocols import (
    evaluate_all,
    leave_last_out,
    time_split,
    tune_for_time_split,
)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"random": 2.3, "time": 2.0}
BASELINES = ("popularity", "als_untuned", "ease", "item_knn_cosine", "item_knn_bm25", "bpr")
METRICS = ("precision", "recall", "map", "ndcg", "mrr", "hit_rate", "coverage", "novelty")


def models(
    train: EvaluationData, recommender: ModelConfig
) -> dict[str, Callable[[Ranker], Ranker]]:
    """Model name -> fit on ``train`` (given the popularity fallback)."""
    return {
        "als_untuned": lambda pop: build_ranker(
            train, RecommenderConfig(UNTUNED_ALS_PARAMS, uniform_confidence(train)), fallback=pop
        ),
        "ease": lambda pop: ease_ranker(train, fallback=pop),
        "item_knn_cosine": lambda pop: item_knn_ranker(train, kind="cosine", fallback=pop),
        "item_knn_bm25": lambda pop: item_knn_ranker(train, kind="bm25", fallback=pop),
        "bpr": lambda pop: bpr_ranker(train, fallback=pop),
        "als_tuned": lambda pop: build_ranker(train, tuned_params(), fallback=pop),
        "recommender": lambda pop: build_ranker(train, recommender, fallback=pop),
    }


def run_protocol(
    data: EvaluationData, split: Split, k: int, recommender: ModelConfig
) -> dict[str, dict[str, float]]:
    task = EvaluationTask.from_split(data, split)
    popularity = popularity_ranker(task.train)
    results = {"popularity": evaluate_all(popularity, task, k).as_dict()}
    for name, fit in models(task.train, recommender).items():
        started = time.perf_counter()
        results[name] = evaluate_all(fit(popularity), task, k).as_dict()
        print(f"  {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return results


def picture(report: dict[str, Any], path: Path) -> None:
    """Precision, NDCG and recall per model (hit rate, MRR, NDCG for leave-last-one-out),
    one panel per protocol."""
    protocols = list(report["protocols"])
    names = list(report["protocols"][protocols[0]])
    figure = Figure(figsize=(5.2 * len(protocols), 4.4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(protocols))
    for axis, protocol in zip(axes, protocols, strict=True):
        results = report["protocols"][protocol]
        metrics = (
            ("hit_rate", "mrr", "ndcg")
            if protocol == "leave_last_out"
            else ("precision", "ndcg", "recall")
        )
        width = 0.8 / len(metrics)
        for offset, metric in enumerate(metrics):
            axis.bar(
                [i + offset * width for i in range(len(names))],
                [results[name][metric] for name in names],
                width,
                label=f"{metric}@{report['k']}",
            )
        axis.set_xticks([i + width for i in range(len(names))])
        axis.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        axis.set_title(f"{protocol} split")
        axis.legend(fontsize=8)
    figure.suptitle(f"MovieLens-100k, k={report['k']}: each model on each protocol")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def _described(config: ModelConfig) -> dict[str, Any]:
    """The ALS parameters and, for a blend, EASE's (for the JSON report)."""
    if isinstance(config, HybridConfig):
        return {
            "als": asdict(config.als.params),
            "ease_l2": config.ease_l2,
            "ease_weight": config.ease_weight,
            "ease_recency": config.ease_recency,
        }
    return {"als": asdict(config.params)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--picture", type=Path, default=ROOT / "reports" / "evaluation.png")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    started = time.perf_counter()
    movielens = load_movielens_100k()
    data = EvaluationData.from_ratings(
        movielens.ratings, catalogue_size=len(movielens.items.item_ids)
    )
    splits = {
        "random": random_split(len(data)),
        "time": time_split(data),
        "leave_last_out": leave_last_out(data),
    }
    # The time-based protocols get the blend their own validation picks (train rows only).
    time_choice = tune_for_time_split(data, confidence=tuned_params().confidence, k=args.k)[0]
    print(f"time split validation chose {_described(time_choice.config)}", file=sys.stderr)
    recommenders: dict[str, ModelConfig] = {
        "random": tuned_model(),
        "time": time_choice.config,
        "leave_last_out": time_choice.config,
    }
    protocols = {}
    for name, split in splits.items():
        print(f"{name} split:", file=sys.stderr)
        protocols[name] = run_protocol(data, split, args.k, recommenders[name])
    report: dict[str, Any] = {
        "k": args.k,
        "protocols": protocols,
        "recommenders": {name: _described(config) for name, config in recommenders.items()},
    }
    targets = {}
    for protocol, ratio in TARGETS.items():
        results = protocols[protocol]
        ours = results["recommender"]["precision"]
        best = max(BASELINES, key=lambda name: results[name]["precision"])
        targets[protocol] = {
            "vs_popularity": ours / results["popularity"]["precision"],
            "target_vs_popularity": ratio,
            "best_baseline": best,
            "vs_best_baseline": ours / results[best]["precision"],
        }
    report["targets"] = targets
    report["seconds"] = round(time.perf_counter() - started, 1)
    picture(report, args.picture)
    if args.json:
        print(json.dumps(report))
        return
    for protocol, results in protocols.items():
        users = results["popularity"]["users"]
        print(f"{protocol} split ({users} customers with a held-out positive):")
        print(f"  {'model':<18}" + "".join(f"{m + '@' + str(args.k):>13}" for m in METRICS))
        for name, figures in results.items():
            print(f"  {name:<18}" + "".join(f"{figures[m]:>13.4f}" for m in METRICS))
    for protocol, figures in targets.items():
        met = figures["vs_popularity"] >= figures["target_vs_popularity"]
        print(
            f"target {protocol}: precision@{args.k} {figures['vs_popularity']:.2f}x popularity "
            f"(target {figures['target_vs_popularity']}x: {'met' if met else 'missed'}); "
            f"{figures['vs_best_baseline']:.3f}x the best baseline ({figures['best_baseline']}: "
            f"{'at or above' if figures['vs_best_baseline'] >= 1 else 'below'})"
        )
    print(f"picture: {args.picture}; took {report['seconds']} s")


if __name__ == "__main__":
    main()
