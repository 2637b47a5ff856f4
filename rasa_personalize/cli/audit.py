"""``personalize audit list``: who read, wrote, exported or erased whose data, and when."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    DatabaseOption,
    batch_store,
    console,
    customer_id_or_fail,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)
from rasa_personalize.errors import InvalidInputError

if TYPE_CHECKING:
    from rasa_personalize.store.audit import AuditRecord

MAX_LIMIT = 100_000


def register(group: typer.Typer) -> None:
    """Add ``list`` to ``group``."""
    group.command("list")(list_entries)


def list_entries(
    since: Annotated[
        str | None,
        typer.Option(
            help="Only entries from then on: a date (2026-01-31, UTC), a date-time "
            "(2026-01-31T08:00:00Z) or a duration back from now (7d, 12h, 30m, 2w).",
            show_default=False,
        ),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            help="Only this action, e.g. profile.read, profile.write, privacy.export, "
            "apikey.create, apikey.revoke.",
            show_default=False,
        ),
    ] = None,
    customer: Annotated[
        str | None,
        typer.Option(
            help="Only entries about this customer (their external id; matched by key).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_LIMIT, help="Show the newest this many matches.")
    ] = 100,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON Lines: one JSON object per entry."),
    ] = False,
    database_url: DatabaseOption = None,
) -> None:
    """List audit entries, oldest first: the newest --limit of those that match.

    Customers appear by key (the keyed hash of their id), API callers by key id and
    label.
    """
    from rasa_personalize.identity import customer_key
    from rasa_personalize.privacy.audit import audit_entry_document, parse_since
    from rasa_personalize.store.audit import list_audit_entries

    settings = load_cli_settings(database_url)
    try:
        start = parse_since(since) if since is not None else None
    except InvalidInputError as error:
        fail(error, 2)
    key = (
        customer_key(settings.secret_key, customer_id_or_fail(customer))
        if customer is not None
        else None
    )

    async def job() -> list[AuditRecord]:
        store = batch_store(settings)
        try:
            async with store.sessions() as session:
                return await guarded(
                    list_audit_entries(
                        session,
                        since=start,
                        limit=limit,
                        action=action,
                        customer_key=key,
                        latest=True,
                    )
                )
        finally:
            await store.dispose()

    records = run_job(job)
    if as_json:
        for record in records:
            typer.echo(json.dumps(audit_entry_document(record)))
        return
    table = Table(title=f"Audit log: {len(records)} entries")
    for header in ("id", "when (UTC)", "actor", "action", "customer key", "outcome", "detail"):
        table.add_column(header)
    for record in records:
        actor = record.actor
        if record.api_key_id is not None:
            actor = f"{actor} key {record.api_key_id}"
            if record.api_key_label:
                actor = f"{actor} ({record.api_key_label})"
        table.add_row(
            str(record.id),
            record.occurred_at.isoformat(timespec="seconds"),
            escape(actor),
            escape(record.action),
            # A prefix identifies a customer among the rows; --json prints the whole key.
            f"{record.customer_key[:12]}…" if record.customer_key else "-",
            escape(record.outcome),
            escape(json.dumps(dict(record.detail), sort_keys=True)) if record.detail else "-",
        )
    console.print(table)
