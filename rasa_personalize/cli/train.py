"""``personalize train`` and ``personalize evaluate``: the recommender, fitted and measured.

Machine-readable output (``--json``) goes to stdout as exactly one JSON object; progress
bars and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    PANEL_MODELS,
    DatabaseOption,
    batch_store,
    console,
    errors,
    fail,
    guarded,
    load_cli_settings,
    load_movielens,
    run_job,
    stage_progress,
)
from rasa_personalize.errors import PersonalizeError

if TYPE_CHECKING:
    from rasa_personalize.recommend.evaluation import (
        EvaluationData,
        EvaluationProgress,
        ModelConfig,
    )
    from rasa_personalize.recommend.protocols import Validation
    from rasa_personalize.recommend.training import TrainingReport

# The targets for MovieLens-100k (precision@k ratios, same split, same run).
TARGET_VS_POPULARITY: Final = 2.0
TARGET_VS_ALS_UNTUNED: Final = 1.3
# Progress stages of evaluate; every model fit reports under "evaluating".
_STAGES: Final = frozenset({"tuning", "blending"})


class DatasetName(str, Enum):
    """The datasets ``evaluate`` knows."""

    demo = "demo"
    movielens_100k = "movielens-100k"


class ValidationName(str, Enum):
    """How ``train`` chooses its model and ``evaluate`` splits (``protocols.Validation``)."""

    random = "random"
    time = "time"


def _protocol(name: ValidationName) -> Validation:
    """The option as the protocol name the recommend package takes."""
    return "time" if name is ValidationName.time else "random"


ValidationOption = Annotated[
    ValidationName,
    typer.Option(
        "--validation",
        help="random: seeded 80/20 splits of the interactions; time: each customer's newest "
        "20% of interactions, in the order they were stored (EASE's recency is then tried "
        "too). The default, random, assumes nothing about that order (bulk imports may "
        "load history out of time order); take time when the store receives its events "
        "as they happen and what customers do next matters most.",
        case_sensitive=False,
    ),
]


def register_commands(app: typer.Typer) -> None:
    """Add ``train`` and ``evaluate`` to ``app``."""
    app.command("train", rich_help_panel=PANEL_MODELS)(train)
    app.command("evaluate", rich_help_panel=PANEL_MODELS)(evaluate)


# -- train --------------------------------------------------------------------------------


def train(
    precompute: Annotated[
        bool,
        typer.Option(
            "--precompute", help="Also store each customer's top items (hot path: one read)."
        ),
    ] = False,
    precompute_active_days: Annotated[
        int | None,
        typer.Option(
            "--precompute-active-days",
            min=1,
            metavar="DAYS",
            help="With --precompute: only for customers with an interaction in the last "
            "DAYS days (large stores: the others are scored when they come back).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Serve the new recommender even if the guardrail would keep it as a "
            "candidate (precision@10 on recent interactions below 95% of the serving "
            "model's).",
        ),
    ] = False,
    validation: ValidationOption = ValidationName.random,
    database_url: DatabaseOption = None,
) -> None:
    """Train the recommenders on the store's data; servers pick them up live.

    The collaborative model is the one that wins on a validation split carved from the
    store's interactions (ALS, or ALS blended with EASE: what `personalize evaluate
    --dataset demo` with the same --validation reports as "recommender"); also the
    content model and the products bought together. The new recommender serves only
    if its precision@10 on each customer's most recent interactions is at least 95% of
    the serving model's on the same hold-out; otherwise it is kept as a candidate
    (`personalize models`).
    """
    from rasa_personalize.cache.precomputed import PrecomputedCache
    from rasa_personalize.recommend.artifacts import als_dir, content_dir
    from rasa_personalize.recommend.association_artifacts import associations_dir
    from rasa_personalize.recommend.training import train_from_store

    settings = load_cli_settings(database_url)

    async def job() -> TrainingReport:
        store = batch_store(settings)
        cache = PrecomputedCache(settings.redis_url, timeout_s=5.0) if settings.redis_url else None
        try:
            with stage_progress() as advance:
                return await guarded(
                    train_from_store(
                        store,
                        settings.model_dir,
                        precompute=precompute,
                        progress=advance,
                        cache=cache,
                        force=force,
                        precompute_active_days=precompute_active_days,
                        validation=_protocol(validation),
                    )
                )
        finally:
            await store.dispose()
            if cache is not None:
                await cache.close()

    report = run_job(job)
    console.print(
        f"Trained model {report.version} on {report.interactions:,} interactions "
        f"({report.customers:,} customers x {report.products:,} products) in "
        f"{report.seconds:.1f} s; {report.precomputed:,} precomputed lists. "
        f"Artifacts: {als_dir(settings.model_dir)}"
    )
    chosen = {
        "validation": "chosen on validation carved from the store's interactions "
        f"({report.validation.get('validation_protocol', 'random')} split)",
        "fallback": "too little history to validate on: the default parameters",
        "given": "parameters as given",
    }.get(report.choice, report.choice)
    figures = (
        f" (validation precision@{report.validation['validation_k']} "
        f"{report.validation['validation_precision']:.4f}; ALS alone "
        f"{report.validation['validation_precision_als']:.4f})"
        if report.validation
        else ""
    )
    console.print(f"{report.model.upper()}: {chosen}{figures}.", highlight=False)
    _print_verdict(report)
    if report.content_version is not None:
        console.print(
            f"Content model {report.content_version} on {report.content_products:,} "
            f"products. Artifacts: {content_dir(settings.model_dir)}"
        )
    if report.associations_version is not None:
        console.print(
            f"Bought-together model {report.associations_version}: "
            f"{report.association_pairs:,} product pairs. Artifacts: "
            f"{associations_dir(settings.model_dir)}"
        )


def _print_verdict(report: TrainingReport) -> None:
    """The guardrail's decision: a plain line when the model serves, a warning when not."""
    verdict = report.guardrail
    if verdict is None:
        return
    reason = escape(verdict.reason)
    if not verdict.promoted:
        errors.print(
            f"[yellow]warning:[/yellow] recommender {report.version} {reason}. The serving "
            f"model stays; `personalize models promote {report.version}` serves it anyway"
            + (" (nothing was precomputed from it)." if report.precomputed == 0 else "."),
            highlight=False,
        )
    elif verdict.forced:
        errors.print(
            f"[yellow]warning:[/yellow] recommender {report.version} serves: {reason}.",
            highlight=False,
        )
    else:
        console.print(f"Recommender {report.version} serves: {reason}.", highlight=False)


# -- evaluate ------------------------------------------------------------------------------


def evaluate(
    dataset: Annotated[
        DatasetName,
        typer.Option(
            "--dataset",
            help="demo: the store's interactions (the seeded shop, or imported data); "
            "movielens-100k: the public dataset, fetched at run time.",
            case_sensitive=False,
        ),
    ] = DatasetName.demo,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="List length.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    validation: ValidationOption = ValidationName.random,
    database_url: DatabaseOption = None,
) -> None:
    """Precision, MAP, NDCG@k and coverage of popularity, untuned ALS and our recommender.

    Protocol: random 80/20 split per interaction (seed 42), or with --validation time
    each customer's newest 20% of interactions held out; each model is fitted on the
    training rows and never recommends an item the customer has there; positives are
    ratings >= 4 (MovieLens) or purchases, carts and positive feedback (shop events).
    Our recommender is tuned on validation carved from the training rows only, the same
    way (--validation).
    """
    from rasa_personalize.recommend.evaluation import evaluate_models
    from rasa_personalize.recommend.protocols import validation_split

    started = time.perf_counter()
    if dataset is DatasetName.movielens_100k:
        data, recommender, extra = _movielens_setup(_protocol(validation), k)
    else:
        data, recommender, extra = _store_setup(database_url, k, _protocol(validation))
    try:
        with _stages() as advance:
            report = evaluate_models(
                data,
                dataset=dataset.value,
                k=k,
                recommender=recommender,
                extra=extra,
                progress=advance,
                split=validation_split(_protocol(validation)),
            )
    except PersonalizeError as error:
        fail(error)
    report["protocol"] = _protocol(validation)
    report["recommender_config"] = _describe(recommender)
    report["served"] = _served(database_url, report["recommender_config"])
    report["seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        typer.echo(json.dumps(report))
        return
    _print_report(report, targets=dataset is DatasetName.movielens_100k)


def _movielens_setup(
    validation: Validation, k: int
) -> tuple[EvaluationData, ModelConfig, dict[str, ModelConfig]]:
    """MovieLens-100k, the recommender for the protocol and its ALS part: the tuned
    constants on the random split, or, on the time split, the choice of its own
    validation in this run (``protocols.tune_for_time_split``)."""
    from rasa_personalize.recommend.evaluation import EvaluationData, tuned_model, tuned_params
    from rasa_personalize.recommend.protocols import tune_for_time_split

    movielens = load_movielens()
    data = EvaluationData.from_ratings(
        movielens.ratings, catalogue_size=len(movielens.items.item_ids)
    )
    if validation == "random":
        return data, tuned_model(), {"als_tuned": tuned_params()}
    try:
        with _stages() as advance:
            advance("tuning", 0, 1)
            choice = tune_for_time_split(data, confidence=tuned_params().confidence, k=k)[0]
            advance("tuning", 1, 1)
    except PersonalizeError as error:
        fail(error)
    return data, choice.config, {"als_tuned": choice.config.als}


def _store_setup(
    database_url: str | None, k: int, validation: Validation
) -> tuple[EvaluationData, ModelConfig, dict[str, ModelConfig]]:
    from rasa_personalize.recommend.demo_data import load_store_events, tune_for_store
    from rasa_personalize.recommend.evaluation import HybridConfig

    settings = load_cli_settings(database_url)

    async def read() -> EvaluationData:
        store = batch_store(settings)
        try:
            async with store.sessions() as session:
                return await guarded(load_store_events(session))
        finally:
            await store.dispose()

    try:
        with errors.status("Reading interactions from the store"):
            data = asyncio.run(read())
    except PersonalizeError as error:
        fail(error)
    try:
        with _stages() as advance:
            tuning = tune_for_store(data, k=k, progress=advance, validation=validation)
    except PersonalizeError as error:
        fail(f"{error} (while tuning on validation: the store may hold too little history)")
    extra: dict[str, ModelConfig] = {}
    if isinstance(tuning.recommender, HybridConfig):
        extra["als_tuned"] = tuning.als
    return data, tuning.recommender, extra


@contextmanager
def _stages() -> Iterator[EvaluationProgress]:
    """The shared progress bars: one for tuning, one for blending, one for fitting."""
    with stage_progress() as advance:

        def report(name: str, done: int, total: int) -> None:
            advance(name if name in _STAGES else "evaluating", done, total)

        yield report


def _served(database_url: str | None, evaluated: dict[str, Any]) -> dict[str, Any] | None:
    """The model the action server serves (the ``CURRENT`` artifact's metadata), and
    whether it is the configuration evaluated as "recommender"; None before training."""
    from rasa_personalize.recommend.artifacts import (
        METADATA_FILE,
        ArtifactMetadata,
        als_dir,
        current_version,
    )
    from rasa_personalize.recommend.errors import ArtifactError

    directory = als_dir(load_cli_settings(database_url).model_dir)
    try:
        version = current_version(directory)
        if version is None:
            return None
        metadata = ArtifactMetadata.from_json(
            (directory / version / METADATA_FILE).read_text(encoding="utf-8")
        )
    except (OSError, ArtifactError):
        return None
    params = dict(metadata.params)
    params.pop("num_threads", None)
    served: dict[str, Any] = {"model": "als", "als": params}
    if metadata.blend:
        served.update(
            model="als+ease",
            ease_l2=metadata.blend["ease_l2"],
            ease_weight=metadata.blend["ease_weight"],
            # Artifacts written before recency weighting have none.
            ease_recency=metadata.blend.get("ease_recency", 0.0),
        )
    return {
        **served,
        "version": version,
        "trained_at": metadata.trained_at,
        "chosen_by": metadata.metrics.get("chosen_by", ""),
        "same_as_recommender": served == evaluated,
    }


def _describe(config: ModelConfig) -> dict[str, Any]:
    """A model configuration as JSON: the ALS parameters and the blend, if any."""
    from rasa_personalize.recommend.evaluation import HybridConfig

    als = config.als if isinstance(config, HybridConfig) else config
    params = asdict(als.params)
    params.pop("num_threads", None)  # how fast, not what: not part of the model
    described: dict[str, Any] = {"model": "als", "als": params}
    if isinstance(config, HybridConfig):
        described.update(
            model="als+ease",
            ease_l2=config.ease_l2,
            ease_weight=config.ease_weight,
            ease_recency=config.ease_recency,
        )
    return described


def _print_report(report: dict[str, Any], *, targets: bool) -> None:
    k = report["k"]
    results = report["results"]
    split = (
        "each customer's newest 20% held out"
        if report.get("protocol") == "time"
        else f"80/20 split, seed {report['seed']}"
    )
    table = Table(
        title=f"{report['dataset']}: top-{k} lists for {report['users']:,} customers ({split})"
    )
    table.add_column("model", no_wrap=True)
    for header in (f"P@{k}", f"MAP@{k}", f"NDCG@{k}", "coverage", "P / pop.", "P / untuned"):
        table.add_column(header, justify="right", no_wrap=True)
    popularity = results["popularity"]["precision"]
    untuned = results["als_untuned"]["precision"]
    for name, figures in results.items():
        table.add_row(
            name,
            f"{figures['precision']:.4f}",
            f"{figures['map']:.4f}",
            f"{figures['ndcg']:.4f}",
            f"{figures['coverage']:.3f}",
            _times(figures["precision"], popularity),
            _times(figures["precision"], untuned),
            style="bold" if name == "recommender" else None,
        )
    console.print(table)
    config = report["recommender_config"]
    als = config["als"]
    recency = config.get("ease_recency", 0.0)
    blend = (
        f" blended with EASE (l2 {config['ease_l2']:g}, weight {config['ease_weight']:g}"
        + (f", recency {recency:g}" if recency else "")
        + ")"
        if config["model"] == "als+ease"
        else ""
    )
    console.print(
        f"recommender: ALS with {als['factors']} factors, regularization "
        f"{als['regularization']:g}, alpha {als['alpha']:g}, {als['weighting']} weighting"
        f"{blend}",
        highlight=False,
    )
    if targets:
        ratios = report["ratios"]
        for label, value, target in (
            ("popularity", ratios["precision_vs_popularity"], TARGET_VS_POPULARITY),
            ("untuned ALS", ratios["precision_vs_als_untuned"], TARGET_VS_ALS_UNTUNED),
        ):
            verdict = "[green]met[/green]" if value >= target else "[red]missed[/red]"
            console.print(
                f"target: precision@{k} >= {target:g}x {label}: {value:.3f}x, {verdict}",
                highlight=False,
            )
    served = report.get("served")
    if served is None:
        console.print("served: no trained model yet (`personalize train`).", highlight=False)
    else:
        same = (
            "the configuration evaluated above as 'recommender'"
            if served["same_as_recommender"]
            else "not the configuration evaluated above (trained on other data, or before "
            "the store changed: `personalize train` chooses again)"
        )
        console.print(
            f"served: model {served['version']} ({served['model'].upper()}, chosen by "
            f"{served['chosen_by'] or 'an older training'}): {same}.",
            highlight=False,
        )
    console.print(
        f"P = precision@{k}; coverage = distinct recommended items / catalogue. "
        f"Took {report['seconds']:.1f} s.",
        style="dim",
        highlight=False,
    )


def _times(value: float, baseline: float) -> str:
    ratio = value / baseline if baseline > 0 else math.inf
    return f"{ratio:.2f}x" if math.isfinite(ratio) else "-"
