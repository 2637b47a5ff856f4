"""``personalize privacy erase CUSTOMER --yes [--json]``: the right to erasure."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rasa_personalize.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    DatabaseOption,
    batch_store,
    console,
    customer_id_or_fail,
    errors,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)

if TYPE_CHECKING:
    from rasa_personalize.privacy.erasure import ErasureReceipt


def register(group: typer.Typer) -> None:
    """Add ``erase`` to ``group``."""
    group.command("erase")(erase)


def erase(
    customer: Annotated[str, typer.Argument(help="The customer's external id.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Erase without asking: there is no undo.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the receipt as JSON.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Erase one customer everywhere: SQL rows (merged customers' too), Redis, queued
    events and trained models; prints the receipt.

    A tombstone keeps their late or replayed events out. Erasing again is a no-op. Each
    erasure is recorded in the audit log (`personalize audit list --action
    privacy.erase`). Exit 1 if Redis or the models could not be reached (erase again).
    """
    if not yes:
        fail("erasure cannot be undone: add --yes to erase this customer", EXIT_USAGE)
    from rasa_personalize.identity import customer_key
    from rasa_personalize.privacy.audit import Actor
    from rasa_personalize.privacy.erasure import erase_with_settings
    from rasa_personalize.privacy.secret_rotation import rekey_on_miss

    settings = load_cli_settings(database_url, real_secret=True)
    external_id = customer_id_or_fail(customer)
    key = customer_key(settings.secret_key, external_id)

    async def job() -> ErasureReceipt:
        store = batch_store(settings)
        try:
            # A customer not seen since the secret changed is still under a former key.
            await guarded(rekey_on_miss(store.sessions, settings, external_id))
            return await guarded(
                erase_with_settings(settings, store.sessions, key, actor=Actor.cli())
            )
        finally:
            await store.dispose()

    receipt = run_job(job)
    if as_json:
        typer.echo(json.dumps(receipt.to_dict(), indent=2))
    else:
        _print_receipt(receipt)
    if not receipt.complete:
        errors.print(
            f"[red]error:[/red] erasure incomplete ({', '.join(receipt.failed)}): the SQL "
            "rows are gone; run the command again once the rest is reachable.",
            highlight=False,
        )
        raise typer.Exit(EXIT_FAILED)


def _print_receipt(receipt: ErasureReceipt) -> None:
    table = Table(title=f"Erasure receipt ({receipt.outcome})", show_header=True)
    table.add_column("store")
    table.add_column("what")
    table.add_column("removed", justify="right")
    for name, count in receipt.tables.items():
        table.add_row("sql", name, str(count))
    table.add_row("sql", "erasure_tombstones (written)", str(receipt.tombstones))
    table.add_row(f"redis ({receipt.redis})", "keys", str(receipt.redis_keys))
    table.add_row(f"redis ({receipt.redis})", "queued events", str(receipt.stream_events))
    table.add_row("models", "versions rewritten", str(receipt.artifacts))
    console.print(table)
    if receipt.found:
        console.print(
            f"Customer erased ({receipt.keys} key(s)); their session counters expire within a day."
        )
    else:
        console.print("Nothing was held about this customer; a tombstone keeps their events out.")
