"""``personalize propensity train``: each customer's chance to buy in the next 7 days.

scikit-learn and matplotlib are imported inside the command. Machine-readable output
(``--json``) goes to stdout as exactly one JSON object; progress bars and errors go to
stderr.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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
    invalidate_profile_cache,
    load_cli_settings,
    missing_extra,
    run_job,
    stage_progress,
)
from rasa_personalize.errors import MissingExtraError, PersonalizeError

if TYPE_CHECKING:
    from rasa_personalize.propensity.bands import BandCutoffs
    from rasa_personalize.propensity.training import PropensityReport, PropensityRun

propensity_app = typer.Typer(
    help="Purchase propensity: a calibrated chance to buy, per customer, for rules and slots.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class Target(str, Enum):
    """What a propensity model predicts."""

    purchase_7d = "purchase_7d"


def register_commands(app: typer.Typer) -> None:
    """Add the ``propensity`` group to ``app``."""
    app.add_typer(propensity_app, name="propensity", rich_help_panel=PANEL_MODELS)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO time such as 2026-06-01T12:00:00+00:00",
            param_hint="--as-of",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _cutoffs(value: str | None) -> BandCutoffs | None:
    if value is None:
        return None
    from rasa_personalize.propensity.bands import BandCutoffs
    from rasa_personalize.propensity.errors import PropensityInputError

    try:
        return BandCutoffs.parse(value)
    except PropensityInputError as error:
        raise typer.BadParameter(str(error), param_hint="--cutoffs") from None


@propensity_app.command("train")
def train(
    target: Annotated[
        Target, typer.Option(help="What to predict: a purchase in the next 7 days.")
    ] = Target.purchase_7d,
    cutoffs: Annotated[
        str | None,
        typer.Option(
            "--cutoffs",
            metavar="LOW,HIGH",
            help="Fixed band cut-offs as probabilities, e.g. 0.1,0.4: low up to LOW, high "
            "above HIGH (default: the terciles of the training scores).",
            show_default=False,
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Write the calibration picture (PNG) here; needs the 'reports' extra.",
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(min=0, help="Random seed: same data and seed, same model.")
    ] = 0,
    threads: Annotated[int, typer.Option(min=1, help="Threads for the numeric libraries.")] = 1,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Treat this ISO time as now (UTC if no zone): the label week ends here.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Store the new scores even if the guardrail would keep the model as a "
            "candidate (ROC AUC below 95% of the serving model's on the same customers).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Train a purchase-propensity model on a time split, measure it, and score everyone.

    Features come from each customer's history up to 7 days ago (recency, frequency,
    spend, sessions, category affinities, discounts, tier, channels, devices, hours); the
    label is a purchase in the last 7 days. A calibrated gradient-boosted classifier is
    measured on held-out customers (ROC AUC, PR AUC, Brier score) against a recency-only
    logistic regression and the segment rule. Then every customer is scored on their
    full history, and the score, its band (low, medium, high) and the model version are
    stored: decision rules read `propensity_purchase_7d`, the domain the
    `purchase_propensity` slot. The scores are stored only if the new model's ROC AUC is
    at least 95% of the serving model's on the same held-out customers; otherwise it is
    kept as a candidate and the old scores stay. See docs/propensity.md.
    """
    from rasa_personalize.propensity.model import PropensityParams
    from rasa_personalize.propensity.training import train_propensity

    if plot is not None:
        from rasa_personalize.extras import REPORTS, require_extra

        # Before the training, which takes a while: the picture needs matplotlib.
        try:
            require_extra(
                "matplotlib", feature="personalize propensity train --plot", extra=REPORTS
            )
        except MissingExtraError as error:
            missing_extra(error)
    fixed = _cutoffs(cutoffs)
    now = _as_of(as_of)
    settings = load_cli_settings(database_url)
    params = PropensityParams(seed=seed, n_threads=threads)

    async def job() -> PropensityRun:
        store = batch_store(settings)
        try:
            with stage_progress() as advance:
                async with store.sessions.begin() as session:
                    run = await guarded(
                        train_propensity(
                            session,
                            target=target.value,
                            now=now,
                            model_dir=settings.model_dir,
                            params=params,
                            cutoffs=fixed,
                            progress=advance,
                            force=force,
                        )
                    )
            # After the commit: cached snapshots hold the old scores.
            await invalidate_profile_cache(settings)
            return run
        finally:
            await store.dispose()

    run = run_job(job)
    picture = None
    if plot is not None:
        from rasa_personalize.propensity.report import write_calibration_picture

        try:
            picture = write_calibration_picture(run, plot)
        except PersonalizeError as error:
            fail(error)
    if as_json:
        typer.echo(json.dumps(summary(run.report, picture)))
        return
    _print_report(run.report, picture)


def summary(report: PropensityReport, picture: Path | None = None) -> dict[str, Any]:
    """The ``--json`` object."""
    truth = report.truth
    return {
        "target": report.target,
        "model_version": report.model_version,
        "auc": report.model.auc,
        "pr_auc": report.model.pr_auc,
        "brier": report.model.brier,
        "baselines": {
            name: {"auc": figures.auc, "pr_auc": figures.pr_auc, "brier": figures.brier}
            for name, figures in report.baselines.items()
        },
        "customers": report.customers,
        "seconds": report.seconds,
        "training_customers": report.training_customers,
        "test_customers": report.test_customers,
        "positives": report.positives,
        "calibration": report.calibration_method,
        "cutoffs": {
            "low": report.cutoffs.low,
            "high": report.cutoffs.high,
            "source": report.cutoffs.source,
        },
        "bands": dict(report.band_counts),
        "truth": (
            {"auc": truth.auc, "brier": truth.brier, "mean_abs_error": truth.mean_abs_error}
            if truth is not None
            else None
        ),
        "model_path": str(report.model_path) if report.model_path else None,
        "plot": str(picture) if picture is not None else None,
        "promoted": report.promoted,
        "guardrail": report.guardrail.to_json_dict() if report.guardrail is not None else None,
    }


def _print_report(report: PropensityReport, picture: Path | None) -> None:
    table = Table(
        title=f"Purchase propensity ({report.target}), model {report.model_version}",
        caption=(
            f"{report.test_customers:,} held-out customers of {report.training_customers:,}; "
            f"{report.positives:,} bought between {report.cutoff:%Y-%m-%d} and "
            f"{report.as_of:%Y-%m-%d}"
        ),
    )
    for header in ("model", "ROC AUC", "PR AUC", "Brier"):
        table.add_column(header, justify="left" if header == "model" else "right")
    rows = [
        (f"gradient boosting ({report.calibration_method})", report.model),
        ("recency-only logistic regression", report.baselines["recency"]),
        ("segment rule", report.baselines["segment_rule"]),
    ]
    if report.truth is not None:
        truth = report.truth
        from rasa_personalize.propensity.evaluation import Scores

        rows.append(
            ("true probabilities (demo data)", Scores(truth.auc, float("nan"), truth.brier))
        )
    for name, figures in rows:
        pr_auc = "-" if figures.pr_auc != figures.pr_auc else f"{figures.pr_auc:.3f}"
        table.add_row(name, f"{figures.auc:.3f}", pr_auc, f"{figures.brier:.4f}")
    console.print(table)
    bands = ", ".join(f"{band} {count:,}" for band, count in report.band_counts.items())
    console.print(
        f"Scored {report.customers:,} customers in {report.seconds:.1f} s ({bands}; cut-offs "
        f"{report.cutoffs.low:.3f} / {report.cutoffs.high:.3f} from {report.cutoffs.source}). "
        f"Model card: {report.model_path or '(not saved)'}",
        highlight=False,
    )
    if picture is not None:
        console.print(f"Calibration picture: {picture}", highlight=False)
    verdict = report.guardrail
    if verdict is not None and not verdict.promoted:
        errors.print(
            f"[yellow]warning:[/yellow] model {report.model_version} {escape(verdict.reason)}. "
            "Its scores were not stored: the serving model's stay (`personalize models "
            f"promote {report.model_version}` serves it, or train again with --force).",
            highlight=False,
        )
    elif verdict is not None:
        line = f"Model {report.model_version} serves: {escape(verdict.reason)}."
        if verdict.forced:
            errors.print(f"[yellow]warning:[/yellow] {line}", highlight=False)
        else:
            console.print(line, highlight=False)
