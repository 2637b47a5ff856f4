"""``personalize models list|promote|rollback``: which model versions serve, and changing that.

Promoting and rolling back rewrite a ``CURRENT`` pointer: running servers switch at
their next model check (``PERSONALIZE_MODEL_CHECK_EVERY_S``), as after ``train``. A
propensity version first rescores every customer into the store (a progress bar on
stderr), then the profile cache is outdated, as after ``propensity train``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    PANEL_MODELS,
    SUMMARY_STYLE,
    DatabaseOption,
    batch_store,
    console,
    errors,
    fail,
    guarded,
    invalidate_profile_cache,
    load_cli_settings,
    run_job,
    stage_progress,
)
from rasa_personalize.errors import PersonalizeError

if TYPE_CHECKING:
    from rasa_personalize.recommend.training import PrecomputeReport
    from rasa_personalize.registry import ServingChange
    from rasa_personalize.settings import Settings
    from rasa_personalize.store.sql_store import SqlStore

# Runs a change of serving version that rescores customers: (store, progress) -> change.
Rescoring = Callable[["SqlStore", Callable[[str, int, int], None]], Awaitable["ServingChange"]]

models_app = typer.Typer(
    help="Model versions: which serves, the candidates the guardrail kept out, the way back.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

# The kinds, as `rasa_personalize.registry.KIND_NAMES` has them (a test keeps them equal;
# spelled out here so that `--help` needs no model code).
KINDS_HELP = "recommender, content, associations, offers or propensity_purchase_7d"

KindOption = Annotated[
    str,
    typer.Option("--kind", help=f"Which model: {KINDS_HELP}.", show_default=True),
]
PrecomputeOption = Annotated[
    bool,
    typer.Option(
        "--precompute",
        help="Recommender only: also store each customer's top items from the version "
        "that serves now (else servers compute them from the model until the next "
        "precompute).",
    ),
]
_STATUS_STYLE = {"serving": "green", "previous": "", "candidate": "yellow"}
# How each kind's figure is shown: its short name and decimals.
_FIGURES = {"precision@10": ("p@10", 4), "auc": ("AUC", 3)}


def register_commands(app: typer.Typer) -> None:
    """Add the ``models`` group to ``app``."""
    app.add_typer(models_app, name="models", rich_help_panel=PANEL_MODELS)


@models_app.command("list")
def list_models(
    kind: Annotated[
        str | None,
        typer.Option("--kind", help=f"Only this model: {KINDS_HELP}.", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Every model version on disk: kind, version, created, figure, status.

    Status: `serving` (servers load it), `previous` (served before the serving one;
    `rollback` returns to the newest), `candidate` (never served: the guardrail kept it
    out, or it was rolled back from; `promote` serves it). The figure is the one the
    guardrail compared when the version was trained: precision@10 on that day's recent
    hold-out for the recommender, ROC AUC on held-out customers for propensity.
    """
    from rasa_personalize.registry import list_models as listed

    settings = load_cli_settings(None)
    try:
        versions = listed(settings.model_dir, kind)
    except PersonalizeError as error:
        fail(error, EXIT_USAGE)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model_dir": str(settings.model_dir),
                    "versions": [version.to_json_dict() for version in versions],
                }
            )
        )
        return
    if not versions:
        console.print(
            f"No trained model in {settings.model_dir}: run `personalize train` or "
            "`personalize pipeline run`.",
            highlight=False,
            markup=False,
        )
        return
    table = Table(title=f"Models in {escape(str(settings.model_dir))}")
    for header in ("kind", "version", "created", "figure", "status"):
        table.add_column(header, no_wrap=header != "created", justify="left")
    for version in versions:
        label, digits = _FIGURES.get(version.metric or "", (version.metric, 4))
        figure = f"{label} {version.value:.{digits}f}" if version.value is not None else "-"
        style = _STATUS_STYLE.get(version.status, "")
        table.add_row(
            version.kind,
            version.version,
            version.created[:19].replace("T", " "),
            figure,
            f"[{style}]{version.status}[/{style}]" if style else version.status,
        )
    console.print(table)


@models_app.command("promote")
def promote(
    version: Annotated[
        str,
        typer.Argument(
            help="The version to serve, as `personalize models list` shows it (or a "
            "unique prefix of at least 8 characters).",
            show_default=False,
        ),
    ],
    precompute: PrecomputeOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Serve a version (a candidate the guardrail kept out, or an older one).

    The guardrail does not apply: this is the human decision. Servers switch at their
    next model check, as after `personalize train`. A propensity version first scores
    every customer on their history up to now and stores the scores under its id (the
    store must be reachable; a version trained by an older release, or saved by another
    scikit-learn release, is refused: train again).
    """
    from rasa_personalize.registry import find_version, promote_rescoring
    from rasa_personalize.registry import promote as promoted

    settings = load_cli_settings(database_url)
    try:
        kind, _ = find_version(settings.model_dir, version)
        change = None if kind.rescored else promoted(settings.model_dir, version)
    except PersonalizeError as error:
        fail(error)
    if change is None:
        change = _rescoring(
            settings,
            lambda store, advance: promote_rescoring(
                store, settings.model_dir, version, progress=advance
            ),
        )
    _report(change, settings, verb="serves")
    _precompute_if_asked(change, settings, precompute)


@models_app.command("rollback")
def rollback(
    kind: KindOption = "recommender",
    precompute: PrecomputeOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Serve again the version that served before the current one.

    The version rolled back from becomes a candidate; a second rollback goes one version
    further back. Servers switch at their next model check. For propensity
    (`--kind propensity_purchase_7d`) every customer is first rescored by the version
    rolled back to, as `promote` does.
    """
    from rasa_personalize.registry import model_kind, rollback_rescoring
    from rasa_personalize.registry import rollback as rolled_back

    settings = load_cli_settings(database_url)
    try:
        rescored = model_kind(kind).rescored
        change = None if rescored else rolled_back(settings.model_dir, kind)
    except PersonalizeError as error:
        fail(error)
    if change is None:
        change = _rescoring(
            settings,
            lambda store, advance: rollback_rescoring(
                store, settings.model_dir, kind, progress=advance
            ),
        )
    _report(change, settings, verb="serves again")
    _precompute_if_asked(change, settings, precompute)


def _rescoring(settings: Settings, switch: Rescoring) -> ServingChange:
    """Run a change that rescores customers, then outdate the cached profiles."""

    async def job() -> ServingChange:
        store = batch_store(settings)
        try:
            with stage_progress() as advance:
                change = await guarded(switch(store, advance))
            if change.changed:
                # After the commit: cached snapshots hold the old scores and bands.
                await invalidate_profile_cache(settings)
            return change
        finally:
            await store.dispose()

    return run_job(job)


def _report(change: ServingChange, settings: Settings, *, verb: str) -> None:
    if not change.changed:
        console.print(f"{change.kind} {change.after} already serves.", **SUMMARY_STYLE)
        return
    if change.rescored is not None:
        console.print(
            f"{change.kind} {change.after} {verb} (was {change.before or 'none'}): "
            f"{change.rescored:,} customers rescored, and their cached profiles outdated.",
            **SUMMARY_STYLE,
        )
        return
    console.print(
        f"{change.kind} {change.after} {verb} (was {change.before or 'none'}); servers switch "
        f"within {settings.model_check_every_s:g} s (PERSONALIZE_MODEL_CHECK_EVERY_S).",
        **SUMMARY_STYLE,
    )


def _precompute_if_asked(change: ServingChange, settings: Settings, precompute: bool) -> None:
    if not change.changed:
        return
    if change.kind != "recommender":
        if precompute:
            errors.print(
                f"--precompute: nothing to precompute for {change.kind}.",
                markup=False,
                highlight=False,
            )
        return
    if not precompute:
        console.print(
            "Precomputed lists still belong to the version before: until they are "
            "recomputed (`--precompute`, or the pipeline's precompute stage) servers rank "
            "from the model itself.",
            markup=False,
            highlight=False,
        )
        return

    async def job() -> PrecomputeReport:
        from rasa_personalize.cache.precomputed import PrecomputedCache
        from rasa_personalize.recommend.training import precompute_serving

        store = batch_store(settings)
        cache = PrecomputedCache(settings.redis_url, timeout_s=5.0) if settings.redis_url else None
        try:
            return await guarded(precompute_serving(store, settings.model_dir, cache=cache))
        finally:
            await store.dispose()
            if cache is not None:
                await cache.close()

    with errors.status("Precomputing each customer's top items"):
        report = run_job(job)
    console.print(
        f"Precomputed {report.lists:,} lists from recommender {report.version}.", **SUMMARY_STYLE
    )
