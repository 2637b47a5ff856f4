"""``personalize apikey create|list|revoke``, registered by :func:`register_commands`.

``actions.cli`` imports this module to register the commands, so its helpers (settings,
batch store, error handling) are imported inside the commands to avoid a circular import.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from actions.events.apikeys import ApiKeyRecord

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Store URL (default: $PERSONALIZE_DATABASE_URL or sqlite:///personalize.db).",
        show_default=False,
    ),
]

apikey_app = typer.Typer(help="API keys of the events and profiles HTTP API.", no_args_is_help=True)


class ScopeChoice(str, Enum):
    """Scopes offered on the command line."""

    INGEST = "ingest"
    READ = "read"
    ADMIN = "admin"


def register_commands(app: typer.Typer) -> None:
    """Add ``apikey`` to the ``personalize`` app."""
    app.add_typer(apikey_app, name="apikey")


def _describe(record: ApiKeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "scope": record.scope,
        "label": record.label,
        "created_at": record.created_at.isoformat(),
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@apikey_app.command("create")
def create(
    scope: Annotated[ScopeChoice, typer.Option(help="What the key may do.")],
    label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
    database_url: DatabaseOption = None,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from actions import cli  # noqa: PLC0415  # actions.cli imports this module
    from actions.events.apikeys import create_api_key  # noqa: PLC0415  # SQLAlchemy at use

    settings = cli._settings(database_url)

    async def job() -> tuple[ApiKeyRecord, str]:
        store = cli._batch_store(settings)
        try:
            async with store.sessions.begin() as session:
                return await cli._guarded(create_api_key(session, scope.value, label))
        finally:
            await store.dispose()

    record, key = cli._run(job)
    cli.errors.print(
        f"API key {record.id} (scope {record.scope}) created. It is shown only now; "
        "send it as 'Authorization: Bearer <key>'."
    )
    typer.echo(key)


@apikey_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """List keys by id, scope, label and dates (never the keys themselves)."""
    from actions import cli  # noqa: PLC0415  # actions.cli imports this module
    from actions.events.apikeys import list_api_keys  # noqa: PLC0415  # SQLAlchemy at use

    settings = cli._settings(database_url)

    async def job() -> list[ApiKeyRecord]:
        store = cli._batch_store(settings)
        try:
            async with store.sessions() as session:
                return await cli._guarded(list_api_keys(session))
        finally:
            await store.dispose()

    records = [_describe(record) for record in cli._run(job)]
    if as_json:
        typer.echo(json.dumps(records))
        return
    table = Table(title="API keys")
    for header in ("id", "scope", "label", "created", "revoked"):
        table.add_column(header)
    for record in records:
        table.add_row(*(str(record[name] or "-") for name in
                        ("id", "scope", "label", "created_at", "revoked_at")))  # fmt: skip
    cli.console.print(table)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id (see `personalize apikey list`).")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from actions import cli  # noqa: PLC0415  # actions.cli imports this module
    from actions.events.apikeys import revoke_api_key  # noqa: PLC0415  # SQLAlchemy at use

    settings = cli._settings(database_url)

    async def job() -> bool:
        store = cli._batch_store(settings)
        try:
            async with store.sessions.begin() as session:
                return await cli._guarded(revoke_api_key(session, key_id))
        finally:
            await store.dispose()

    if not cli._run(job):
        cli.errors.print(f"[red]error:[/red] no active API key with id {key_id}")
        raise typer.Exit(1)
    cli.console.print(f"API key {key_id} revoked.")
