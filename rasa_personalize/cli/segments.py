"""``personalize segment`` and ``personalize tag``: customers clustered and tagged.

scikit-learn and matplotlib are imported inside the commands that use them.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
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
    from rasa_personalize.segments.assign import SegmentationRun
    from rasa_personalize.segments.tags import TagRun

DEFAULT_TAG_RULES = Path("tags.yml")

AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Measure recency and rule windows from this ISO time (default: now; UTC if "
        "no zone), e.g. to replay a past day.",
        show_default=False,
    ),
]


class Method(str, Enum):
    """Clustering methods offered on the command line."""

    KMEANS = "kmeans"
    GMM = "gmm"
    DBSCAN = "dbscan"


def register_commands(app: typer.Typer) -> None:
    """Add ``segment`` and ``tag`` to ``app``."""
    app.command("segment", rich_help_panel=PANEL_MODELS)(segment)
    app.command("tag", rich_help_panel=PANEL_MODELS)(tag)


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


def segment(
    method: Annotated[Method, typer.Option(help="Clustering method.")] = Method.KMEANS,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write segments.csv, segments.md and segments.png into this directory.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same data and seed, same result.")] = 0,
    threads: Annotated[int, typer.Option(min=1, help="Threads for the numeric libraries.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    as_of: AsOfOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Cluster customers into the contract segments and store the assignments."""
    from rasa_personalize.extras import REPORTS, require_extra
    from rasa_personalize.segments.assign import segment_customers
    from rasa_personalize.segments.clustering import CustomerSegmenter

    if report is not None:
        # Before the clustering, which takes a while: the pictures need matplotlib.
        try:
            require_extra("matplotlib", feature="personalize segment --report", extra=REPORTS)
        except MissingExtraError as error:
            missing_extra(error)
    settings = load_cli_settings(database_url)
    now = _as_of(as_of)

    async def job() -> SegmentationRun:
        store = batch_store(settings)
        segmenter = CustomerSegmenter(method.value, random_state=seed, n_threads=threads)
        try:
            with stage_progress() as advance:
                async with store.sessions.begin() as session:
                    run = await guarded(
                        segment_customers(
                            session,
                            segmenter=segmenter,
                            model_dir=settings.model_dir,
                            now=now,
                            progress=advance,
                        )
                    )
            # After the commit: cached snapshots hold the old segments.
            await invalidate_profile_cache(settings)
            return run
        finally:
            await store.dispose()

    run = run_job(job)
    files = None
    if report is not None:
        from rasa_personalize.segments.report import write_report

        try:
            files = write_report(run, report, seed=seed)
        except PersonalizeError as error:
            fail(error)
    if as_json:
        typer.echo(json.dumps(_run_summary(run, files)))
        return
    _print_run(console, run)
    if files is not None:
        console.print(
            f"Report: {files.table_csv}, {files.table_markdown}, {files.picture}",
            highlight=False,
        )


def _run_summary(run: SegmentationRun, files: Any) -> dict[str, Any]:
    agreement = run.agreement
    return {
        "method": run.model.method,
        "model_version": run.model.version,
        "model_path": str(run.model_path) if run.model_path else None,
        "customers": len(run.segmentation),
        "stored": run.stored,
        "k": run.model.metrics.get("k"),
        "sizes": run.segmentation.sizes(),
        "adjusted_rand": agreement.adjusted_rand if agreement else None,
        "report": (
            {"csv": str(files.table_csv), "markdown": str(files.table_markdown),
             "picture": str(files.picture)}
            if files is not None
            else None
        ),
    }  # fmt: skip


def _print_run(console: Any, run: SegmentationRun) -> None:
    from rasa_personalize.segments.report import summarize

    table = Table(title=f"Segments ({run.model.method}, model {run.model.version})")
    for header in ("segment", "customers", "share", "recency (d, buyers)", "frequency", "monetary"):
        table.add_column(header, justify="left" if header == "segment" else "right")
    for row in summarize(run):
        recency = "-" if row.mean_recency_days is None else f"{row.mean_recency_days:.1f}"
        table.add_row(
            row.segment,
            f"{row.customers:,}",
            f"{row.share:.1%}",
            recency,
            f"{row.mean_frequency:.2f}",
            f"{row.mean_monetary:,.2f}",
        )
    console.print(table)
    metrics = run.model.metrics
    figure = (
        f"silhouette {metrics['silhouette']:.3f}"
        if metrics.get("silhouette") is not None
        else f"BIC {metrics['bic']:,.0f}"
        if metrics.get("bic") is not None
        else ""
    )
    matched = metrics.get("matched_previous") or 0
    stability = f"; {matched} clusters matched to the previous model" if matched else ""
    console.print(
        f"k={metrics.get('k')} {figure}{stability}; {run.stored:,} assignments stored; "
        f"model {run.model_path or '(not saved)'}",
        highlight=False,
    )
    if run.agreement is not None:
        console.print(
            f"Adjusted Rand index vs true groups: {run.agreement.adjusted_rand:.3f} "
            f"(raw clusters {run.agreement.cluster_adjusted_rand:.3f}, "
            f"{run.agreement.customers:,} customers)",
            highlight=False,
        )


def tag(
    rules_path: Annotated[
        Path,
        typer.Option(
            "--rules",
            envvar="PERSONALIZE_TAGS_PATH",
            help="Tag rule file (env: PERSONALIZE_TAGS_PATH).",
        ),
    ] = DEFAULT_TAG_RULES,
    check: Annotated[
        bool, typer.Option("--check", help="Only validate the rule file: exit 0 or 1.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    as_of: AsOfOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Tag customers by the YAML tag rules; remove rule tags that no longer hold."""
    from rasa_personalize.segments.tag_rules import check_tag_file, load_tag_rules
    from rasa_personalize.segments.tags import apply_tag_rules

    problems = check_tag_file(rules_path)
    for problem in problems:
        # One line per problem, never wrapped: editors jump to "file:line:" locations.
        errors.print(str(problem), markup=False, highlight=False, soft_wrap=True)
    if problems:
        errors.print(f"{len(problems)} problem(s) in {rules_path}", markup=False)
        raise typer.Exit(1)
    if check:
        console.print(f"{rules_path}: OK", markup=False)
        return
    rules = load_tag_rules(rules_path)
    settings = load_cli_settings(database_url)
    now = _as_of(as_of)

    async def job() -> TagRun:
        store = batch_store(settings)
        try:
            async with store.sessions.begin() as session:
                run = await guarded(apply_tag_rules(session, rules, now=now))
            # After the commit: cached snapshots hold the old tags.
            await invalidate_profile_cache(settings)
            return run
        finally:
            await store.dispose()

    run = run_job(job)
    for warning in run.warnings:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        outcomes = [
            {"tag": o.tag, "qualifying": o.qualifying, "tagged": o.tagged, "removed": o.removed}
            for o in run.outcomes
        ]
        typer.echo(
            json.dumps(
                {"rules": str(rules_path), "tags": outcomes, "removed_orphans": run.removed_orphans}
            )
        )
        return
    table = Table(title=f"Tags from {rules_path}")
    table.add_column("tag")
    table.add_column("qualify", justify="right")
    table.add_column("rule tags", justify="right")
    table.add_column("removed", justify="right")
    for outcome in run.outcomes:
        table.add_row(
            outcome.tag, f"{outcome.qualifying:,}", f"{outcome.tagged:,}", f"{outcome.removed:,}"
        )
    console.print(table)
    console.print(
        "qualify: customers meeting the rule; rule tags: of those, holding the tag from the "
        "rule (the others have it from another source, which is left alone)."
    )
    if run.removed_orphans:
        console.print(f"Removed {run.removed_orphans:,} tags of rules that are gone.")
