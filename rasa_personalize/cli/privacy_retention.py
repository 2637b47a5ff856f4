"""``personalize privacy retention [--dry-run] [--json]``: delete what is older than the
retention limits."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rasa_personalize.cli.common import (
    DatabaseOption,
    batch_store,
    console,
    fail,
    guarded,
    invalidate_profile_cache,
    load_cli_settings,
    run_job,
    stage_progress,
)
from rasa_personalize.errors import PersonalizeError

if TYPE_CHECKING:
    from rasa_personalize.privacy.retention import RetentionReport


def register(group: typer.Typer) -> None:
    """Add ``retention`` to ``group``."""
    group.command("retention")(retention)


def retention(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Delete interactions older than PERSONALIZE_RETENTION_DAYS (unset: kept forever) and
    audit rows older than PERSONALIZE_AUDIT_RETENTION_DAYS, in batches.

    The metrics and rule tags of the customers who lost interactions are recomputed.
    Erasure tombstones stay. `personalize worker` runs this once a day when a retention
    is set. Each run is recorded in the audit log (`privacy.retention`).
    """
    from rasa_personalize.privacy.retention import apply_retention
    from rasa_personalize.segments.tag_rules import load_ingest_tag_rules

    settings = load_cli_settings(database_url)
    try:
        rules = None if dry_run else load_ingest_tag_rules(settings.tags_path)
    except PersonalizeError as error:
        fail(error)

    async def job() -> RetentionReport:
        store = batch_store(settings)
        try:
            with stage_progress() as advance:
                report = await guarded(
                    apply_retention(
                        store.sessions,
                        retention_days=settings.retention_days,
                        audit_retention_days=settings.audit_retention_days,
                        dry_run=dry_run,
                        tag_rules=rules,
                        progress=None if as_json else advance,
                    )
                )
        finally:
            await store.dispose()
        if report.profiles:
            await invalidate_profile_cache(settings)
        return report

    report = run_job(job)
    if as_json:
        typer.echo(json.dumps(report.counts(), indent=2))
        return
    _print_report(report)


def _print_report(report: RetentionReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    table = Table(title=f"Retention ({'dry run' if report.dry_run else 'done'})")
    table.add_column("what")
    table.add_column("older than")
    table.add_column(verb, justify="right")
    cutoff = (
        report.interactions_cutoff.isoformat(timespec="seconds")
        if report.interactions_cutoff
        else "kept forever (PERSONALIZE_RETENTION_DAYS unset)"
    )
    table.add_row("interactions", cutoff, str(report.interactions))
    table.add_row("experiment and offer exposures", cutoff, str(report.exposures))
    table.add_row(
        "audit rows", report.audit_cutoff.isoformat(timespec="seconds"), str(report.audit_entries)
    )
    console.print(table)
    if not report.dry_run:
        console.print(
            f"{report.customers} customer(s) lost interactions: {report.profiles} profile(s) "
            f"recomputed, {report.tags_removed} rule tag(s) removed."
        )
