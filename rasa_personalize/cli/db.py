"""``personalize db upgrade``: create or migrate the store's schema."""

from __future__ import annotations

from typing import Annotated

import typer

from rasa_personalize.cli.common import (
    PANEL_DATA,
    DatabaseOption,
    console,
    describe_store,
    errors,
    fail,
    load_cli_settings,
)
from rasa_personalize.errors import PersonalizeError

db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode="markdown")


def register_commands(app: typer.Typer) -> None:
    """Add the ``db`` group to ``app``."""
    app.add_typer(db_app, name="db", rich_help_panel=PANEL_DATA)


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseOption = None,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the store's schema to the latest revision."""
    from rasa_personalize.store.migrate import upgrade

    settings = load_cli_settings(database_url)
    try:
        upgrade(settings.database_url, revision)
    except PersonalizeError as error:
        fail(error)
    except OSError as error:
        errors.print(f"[red]error:[/red] cannot reach the store: {type(error).__name__}")
        raise typer.Exit(1) from None
    console.print(f"Schema of {describe_store(settings)} is at {revision}.")
