"""The ``personalize import`` group: ``customers``, ``interactions`` and ``movielens``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    PANEL_DATA,
    DatabaseOption,
    batch_store,
    console,
    describe_store,
    errors,
    guarded,
    invalidate_profile_cache,
    load_cli_settings,
    load_movielens,
    missing_extra,
    run_job,
    stage_progress,
)
from rasa_personalize.errors import MissingExtraError, PersonalizeError

if TYPE_CHECKING:
    from rasa_personalize.imports.report import ImportReport
    from rasa_personalize.recommend.movielens_import import MovieLensImportReport
    from rasa_personalize.segments.tag_rules import TagRules

JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Do everything, report, then roll back: store nothing.")
]
DayFirstOption = Annotated[
    bool,
    typer.Option(
        "--dayfirst/--monthfirst",
        help="Read slashed dates such as 03/04/2026 day first (3 April) or month first.",
    ),
]
# Rejections and merges listed in the table; --json lists them all.
SHOWN_LINES: Final = 20

import_app = typer.Typer(
    help="Load data into the store: customers and interactions files, public datasets.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class FileFormatChoice(str, Enum):
    """Formats of an interactions file."""

    csv = "csv"
    jsonl = "jsonl"


def register_commands(app: typer.Typer) -> None:
    """Add the ``import`` group (customers, interactions, movielens) to ``app``."""
    app.add_typer(import_app, name="import", rich_help_panel=PANEL_DATA)


@import_app.command("customers")
def import_customers_command(
    file: Annotated[Path, typer.Argument(help="CSV with a header; 'customer' is required.")],
    default_region: Annotated[
        str | None,
        typer.Option(
            "--default-region",
            help="Region of phone numbers without +country code "
            "(default: $PERSONALIZE_IMPORT_DEFAULT_REGION or US).",
            show_default=False,
        ),
    ] = None,
    dayfirst: DayFirstOption = False,
    fuzzy_threshold: Annotated[
        float,
        typer.Option(
            "--fuzzy-threshold",
            min=0,
            max=100,
            help="Similarity (0-100) of name and contacts that makes two customers one; "
            "0 turns fuzzy matching off (equal e-mail or phone still merge).",
        ),
    ] = 90.0,
    no_fuzzy: Annotated[
        bool, typer.Option("--no-fuzzy", help="Same as --fuzzy-threshold 0.")
    ] = False,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Import customers: normalise, deduplicate (exact and fuzzy), merge, report.

    Columns (any case, spaces or hyphens): customer, name, email, phone, age, gender,
    country, city, loyalty_tier, created_at. Names, e-mails and phones are stored
    encrypted. The rule tags ($PERSONALIZE_TAGS_PATH) of the customers inserted, changed
    or merged into are re-applied. Rerunning the same file changes nothing.
    """
    from rasa_personalize.imports.contacts import contact_cipher
    from rasa_personalize.imports.customers import CustomerImportOptions, import_customers
    from rasa_personalize.imports.normalise import FieldError

    settings = load_cli_settings(database_url, real_secret=True)
    try:
        options = CustomerImportOptions(
            default_region=default_region or settings.import_default_region,
            dayfirst=dayfirst,
            fuzzy_threshold=0.0 if no_fuzzy else fuzzy_threshold,
        )
    except FieldError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(2) from None
    # Feature rules may test what the import changes (age, loyalty tier).
    rules = _tag_rules(settings.tags_path)

    async def job() -> ImportReport:
        store = batch_store(settings)
        cipher = contact_cipher(settings)
        try:
            with stage_progress() as advance:
                async with store.sessions() as session:
                    try:
                        report = await guarded(
                            import_customers(
                                session,
                                file,
                                secret_key=settings.secret_key,
                                cipher=cipher,
                                options=options,
                                progress=advance,
                                tag_rules=rules,
                                previous_secret_keys=settings.previous_secrets,
                            )
                        )
                    except BaseException:
                        await session.rollback()
                        raise
                    if dry_run:
                        await session.rollback()
                    else:
                        await guarded(session.commit())
            if not dry_run:
                await invalidate_profile_cache(settings)
            return replace(report, dry_run=dry_run)
        finally:
            await store.dispose()

    _print(_run(job), as_json=as_json)


@import_app.command("interactions")
def import_interactions_command(
    file: Annotated[Path, typer.Argument(help="CSV with a header, or JSON Lines.")],
    file_format: Annotated[
        FileFormatChoice | None,
        typer.Option(
            "--format",
            help="csv or jsonl (default: from the extension).",
            case_sensitive=False,
            show_default=False,
        ),
    ] = None,
    dayfirst: DayFirstOption = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, max=10_000, help="Events per transaction.")
    ] = 1_000,
    dry_run: DryRunOption = False,
    as_json: JsonOption = False,
    database_url: DatabaseOption = None,
) -> None:
    """Import interaction events: normalise, validate, store once each (by event id).

    Fields: event_id, customer, product (sku), kind, timestamp, channel, device,
    location, category, value, quantity, price. A row without event_id gets one from a
    hash of its content, so rerunning the same file stores nothing twice.
    """
    from rasa_personalize.imports.interactions import (
        InteractionImportOptions,
        import_interactions,
    )

    settings = load_cli_settings(database_url, real_secret=True)
    # Rule tags follow new interactions here as they do for ingested events.
    rules = _tag_rules(settings.tags_path)
    options = InteractionImportOptions(
        dayfirst=dayfirst,
        chunk_size=chunk_size,
        file_format=file_format.value if file_format is not None else None,
    )

    async def job() -> ImportReport:
        store = batch_store(settings)
        try:
            with stage_progress() as advance:
                report = await guarded(
                    import_interactions(
                        store.sessions,
                        file,
                        secret_key=settings.secret_key,
                        options=options,
                        dry_run=dry_run,
                        progress=advance,
                        tag_rules=rules,
                        consent_default=settings.consent_default,
                        previous_secret_keys=settings.previous_secrets,
                    )
                )
            if not dry_run:
                await invalidate_profile_cache(settings)
            return report
        finally:
            await store.dispose()

    _print(_run(job), as_json=as_json)


@import_app.command("movielens")
def import_movielens(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Load MovieLens-100k into the store: users, movies as products, ratings.

    Customers get the external ids ml-user-<id> (stored hashed, as always), movies the
    skus ML-<id>, ratings the event ids ml-<user>-<movie>. Rows already stored are
    skipped, so a rerun changes nothing. The data are fetched at run time, never copied.
    """
    from rasa_personalize.recommend.movielens_import import import_movielens as run_import

    settings = load_cli_settings(database_url, real_secret=True)
    movielens = load_movielens()

    async def job() -> MovieLensImportReport:
        store = batch_store(settings)
        try:
            with stage_progress() as advance:
                async with store.sessions.begin() as session:
                    return await guarded(
                        run_import(
                            session, movielens, secret_key=settings.secret_key, progress=advance
                        )
                    )
        finally:
            await store.dispose()

    report = run_job(job)
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
    table = Table(title=f"MovieLens-100k into {describe_store(settings)}")
    table.add_column("rows")
    for column in ("read", "inserted", "skipped (already stored)"):
        table.add_column(column, justify="right")
    for name, c in counts.items():
        table.add_row(name, f"{c.read:,}", f"{c.inserted:,}", f"{c.skipped:,}")
    console.print(table)
    console.print(f"Rebuilt the metrics of {report.profiles:,} profiles.")


def _tag_rules(path: Path | None) -> TagRules | None:
    """The rules both file imports re-apply (None without a file); a broken file exits 1."""
    from rasa_personalize.segments.tag_rules import load_ingest_tag_rules

    try:
        return load_ingest_tag_rules(path)
    except PersonalizeError as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from None


def _run(job: Callable[[], Coroutine[Any, Any, ImportReport]]) -> ImportReport:
    """Run the import; our errors become one unwrapped line on stderr and exit code 1."""
    try:
        return asyncio.run(job())
    except MissingExtraError as error:
        missing_extra(error)
    except PersonalizeError as error:
        # Never wrapped, so "file: line N: ..." stays on one greppable line.
        errors.print(f"[red]error:[/red] {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(1) from None


def _print(report: ImportReport, *, as_json: bool) -> None:
    from rasa_personalize.imports.report import counts_of, describe_merge

    if as_json:
        typer.echo(json.dumps(report.to_document()))
        return
    title = f"Import of {report.kind} from {report.file}"
    if report.dry_run:
        title += " (dry run: nothing stored)"
    table = Table(title=title)
    table.add_column(report.kind)
    table.add_column("count", justify="right")
    for name, count in counts_of(report):
        table.add_row(name, f"{count:,}")
    console.print(table)
    if report.merges:
        merges = Table(title="Merged duplicates")
        merges.add_column("merge")
        for merge in report.merges[:SHOWN_LINES]:
            merges.add_row(describe_merge(merge))
        console.print(merges)
        _more(len(report.merges), "merges")
    if report.rejections:
        rejected = Table(title="Rejected rows")
        for header in ("line", "field", "reason"):
            rejected.add_column(header, justify="right" if header == "line" else "left")
        for rejection in report.rejections[:SHOWN_LINES]:
            rejected.add_row(str(rejection.line), rejection.field, rejection.reason)
        console.print(rejected)
        _more(len(report.rejections), "rejections")
    console.print(f"Took {report.seconds:.1f} s.", style="dim", highlight=False)


def _more(count: int, what: str) -> None:
    if count > SHOWN_LINES:
        console.print(
            f"... and {count - SHOWN_LINES:,} more {what} (--json lists them all).",
            highlight=False,
        )
