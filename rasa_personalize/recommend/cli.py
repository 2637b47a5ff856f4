"""``personalize evaluate`` and ``personalize import movielens`` (see ``register_commands``).

The commands reuse the main CLI's helpers (settings, batch store, progress bars, error
handling). ``rasa_personalize.cli`` imports this module to register the commands, so
``rasa_personalize.cli`` is imported inside the commands, not at the top (that would be
circular). Everything else is imported at the top: ``rasa_personalize.cli`` already loads
numpy, scipy and SQLAlchemy, and implicit itself loads only when a model is fitted.

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
from typing import Annotated, Any, Final, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from rasa_personalize.cli_options import DatabaseOption
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.imports.cli import import_group
from rasa_personalize.recommend.datasets import MovieLens100k, load_movielens_100k
from rasa_personalize.recommend.demo_data import load_store_events, tune_for_store
from rasa_personalize.recommend.errors import DatasetUnavailableError
from rasa_personalize.recommend.evaluation import (
    EvaluationData,
    EvaluationProgress,
    HybridConfig,
    ModelConfig,
    evaluate_models,
    tuned_model,
    tuned_params,
)
from rasa_personalize.recommend.movielens_import import MovieLensImportReport
from rasa_personalize.recommend.movielens_import import import_movielens as run_import
from rasa_personalize.store.database import describe_database

console = Console()
errors = Console(stderr=True)

# The targets for MovieLens-100k (precision@k ratios, same split, same run).
TARGET_VS_POPULARITY: Final = 2.0
TARGET_VS_ALS_UNTUNED: Final = 1.3
# Progress stages of evaluate; every model fit reports under "evaluating".
_STAGES: Final = frozenset({"tuning", "blending"})


class DatasetName(str, Enum):
    """The datasets ``evaluate`` knows."""

    demo = "demo"
    movielens_100k = "movielens-100k"


def register_commands(app: typer.Typer) -> None:
    """Add ``evaluate``, and ``movielens`` to the ``import`` group, to ``app``."""
    app.command("evaluate")(evaluate)
    import_group(app).command("movielens")(import_movielens)


def _fail(message: PersonalizeError | str) -> NoReturn:
    """One line on stderr (never wrapped, so it stays greppable) and exit code 1."""
    errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


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
    database_url: DatabaseOption = None,
) -> None:
    """Precision, MAP, NDCG@k and coverage of popularity, untuned ALS and our recommender.

    Protocol: random 80/20 split per interaction (seed 42); each model is fitted on the
    training rows and never recommends an item the customer has there; positives are
    ratings >= 4 (MovieLens) or purchases, carts and positive feedback (shop events).
    Our recommender is tuned on validation carved from the training rows only.
    """
    started = time.perf_counter()
    if dataset is DatasetName.movielens_100k:
        data, recommender, extra = _movielens_setup()
    else:
        data, recommender, extra = _store_setup(database_url, k)
    try:
        with _stages() as advance:
            report = evaluate_models(
                data,
                dataset=dataset.value,
                k=k,
                recommender=recommender,
                extra=extra,
                progress=advance,
            )
    except PersonalizeError as error:
        _fail(error)
    report["recommender_config"] = _describe(recommender)
    report["seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        typer.echo(json.dumps(report))
        return
    _print_report(report, targets=dataset is DatasetName.movielens_100k)


def _movielens_setup() -> tuple[EvaluationData, ModelConfig, dict[str, ModelConfig]]:
    movielens = _load_movielens()
    data = EvaluationData.from_ratings(
        movielens.ratings, catalogue_size=len(movielens.items.item_ids)
    )
    return data, tuned_model(), {"als_tuned": tuned_params()}


def _store_setup(
    database_url: str | None, k: int
) -> tuple[EvaluationData, ModelConfig, dict[str, ModelConfig]]:
    from rasa_personalize import cli  # noqa: PLC0415  # circular at import time, see the module doc

    settings = cli._settings(database_url)

    async def read() -> EvaluationData:
        store = cli._batch_store(settings)
        try:
            async with store.sessions() as session:
                return await cli._guarded(load_store_events(session))
        finally:
            await store.dispose()

    try:
        with errors.status("Reading interactions from the store"):
            data = asyncio.run(read())
    except PersonalizeError as error:
        _fail(error)
    try:
        with _stages() as advance:
            tuning = tune_for_store(data, k=k, progress=advance)
    except PersonalizeError as error:
        _fail(f"{error} (while tuning on validation: the store may hold too little history)")
    extra: dict[str, ModelConfig] = {}
    if isinstance(tuning.recommender, HybridConfig):
        extra["als_tuned"] = tuning.als
    return data, tuning.recommender, extra


def _load_movielens() -> MovieLens100k:
    try:
        with errors.status("Loading MovieLens-100k (the recbole wheel is downloaded once)"):
            return load_movielens_100k()
    except DatasetUnavailableError as error:
        _fail(f"MovieLens-100k is unavailable: {error}")


@contextmanager
def _stages() -> Iterator[EvaluationProgress]:
    """The main CLI's progress bars: one for tuning, one for blending, one for fitting."""
    from rasa_personalize import cli  # noqa: PLC0415  # circular at import time, see the module doc

    with cli._stage_progress() as advance:

        def report(name: str, done: int, total: int) -> None:
            advance(name if name in _STAGES else "evaluating", done, total)

        yield report


def _describe(config: ModelConfig) -> dict[str, Any]:
    """A model configuration as JSON: the ALS parameters and the blend, if any."""
    als = config.als if isinstance(config, HybridConfig) else config
    params = asdict(als.params)
    params.pop("num_threads", None)  # how fast, not what: not part of the model
    described: dict[str, Any] = {"model": "als", "als": params}
    if isinstance(config, HybridConfig):
        described.update(model="als+ease", ease_l2=config.ease_l2, ease_weight=config.ease_weight)
    return described


def _print_report(report: dict[str, Any], *, targets: bool) -> None:
    k = report["k"]
    results = report["results"]
    table = Table(
        title=f"{report['dataset']}: top-{k} lists for {report['users']:,} customers "
        f"(80/20 split, seed {report['seed']})"
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
    blend = (
        f" blended with EASE (l2 {config['ease_l2']:g}, weight {config['ease_weight']:g})"
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
    console.print(
        f"P = precision@{k}; coverage = distinct recommended items / catalogue. "
        f"Took {report['seconds']:.1f} s.",
        style="dim",
        highlight=False,
    )


def _times(value: float, baseline: float) -> str:
    ratio = value / baseline if baseline > 0 else math.inf
    return f"{ratio:.2f}x" if math.isfinite(ratio) else "-"


# -- import movielens ---------------------------------------------------------------------------


def import_movielens(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Load MovieLens-100k into the store: users, movies as products, ratings.

    Customers get the external ids ml-user-<id> (stored hashed, as always), movies the
    skus ML-<id>, ratings the event ids ml-<user>-<movie>. Rows already stored are
    skipped, so a rerun changes nothing. The data are fetched at run time, never copied.
    """
    from rasa_personalize import cli  # noqa: PLC0415  # circular at import time, see the module doc

    settings = cli._settings(database_url)
    movielens = _load_movielens()

    async def job() -> MovieLensImportReport:
        store = cli._batch_store(settings)
        try:
            with cli._stage_progress() as advance:
                async with store.sessions.begin() as session:
                    return await cli._guarded(
                        run_import(
                            session, movielens, secret_key=settings.secret_key, progress=advance
                        )
                    )
        finally:
            await store.dispose()

    report = cli._run(job)
    counts = {
        "customers": report.customers,
        "products": report.products,
        "ratings": report.interactions,
    }
    if as_json:
        document: dict[str, Any] = {
            name: {"read": c.read, "inserted": c.inserted, "skipped": c.skipped}
            for name, c in counts.items()
        }
        document["profiles"] = report.profiles
        typer.echo(json.dumps(document))
        return
    table = Table(title=f"MovieLens-100k into {describe_database(settings.database_url)}")
    table.add_column("rows")
    for column in ("read", "inserted", "skipped (already stored)"):
        table.add_column(column, justify="right")
    for name, c in counts.items():
        table.add_row(name, f"{c.read:,}", f"{c.inserted:,}", f"{c.skipped:,}")
    console.print(table)
    console.print(f"Rebuilt the metrics of {report.profiles:,} profiles.")
