"""``personalize domain show|add``: the plugin's part of a Rasa domain, from the slot contract.

The merging lives in :mod:`rasa_personalize.domain_merge`: ``add`` keeps the user's
comments, order and quoting, only appends what is missing and never changes a slot or
response they already declare.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    PANEL_SERVING,
    SUMMARY_STYLE,
    console,
    fail,
)
from rasa_personalize.cli.domain_merge import (
    DIRECTORY_FILE_NAME,
    RASA_DOMAIN_VERSION,
    DomainFileError,
    added_responses,
    added_slots,
    contract_slots,
    fragment_yaml,
    plan_directory,
    plan_file,
    plugin_actions,
    plugin_responses,
)

domain_app = typer.Typer(
    help="The plugin's slots and actions in your Rasa domain.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def register_commands(app: typer.Typer) -> None:
    """Add the ``domain`` group to ``app``."""
    app.add_typer(domain_app, name="domain", rich_help_panel=PANEL_SERVING)


class OutputFormat(str, Enum):
    """How ``domain show`` prints the fragment."""

    yaml = "yaml"
    json = "json"


@domain_app.command("show")
def domain_show(
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="yaml (a domain file) or json.")
    ] = OutputFormat.yaml,
) -> None:
    """Print the plugin's slots, actions and responses as a Rasa 3.x domain fragment."""
    slots, actions, responses = contract_slots(), plugin_actions(), plugin_responses()
    if output_format is OutputFormat.json:
        document = {
            "version": RASA_DOMAIN_VERSION,
            "slots": slots,
            "actions": actions,
            "responses": responses,
        }
        print(json.dumps(document, indent=2))
        return
    print(fragment_yaml(slots, actions, responses), end="")


@domain_app.command("add")
def domain_add(
    path: Annotated[
        Path,
        typer.Argument(help=f"Your domain file, or domain directory (gets {DIRECTORY_FILE_NAME})."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be added; write nothing.")
    ] = False,
) -> None:
    """Add the missing contract slots, plugin actions and their responses to your domain;
    change nothing else (a response you declare keeps your wording).

    Exits 2, writing nothing, if your domain declares one of our slots with another type
    or other values.
    """
    try:
        if path.is_dir():
            plan, target, text = plan_directory(path)
        elif path.is_file():
            plan, text = plan_file(path)
            target = path
        else:
            raise DomainFileError(f"{path}: no such file or directory")
    except DomainFileError as error:
        fail(str(error), EXIT_USAGE)
    verb = "would add" if dry_run else "added"
    if dry_run and not plan.empty:
        console.print(f"{target}: {verb}:", **SUMMARY_STYLE)
        console.print(
            fragment_yaml(added_slots(plan), plan.actions, added_responses(plan)),
            markup=False,
            end="",
        )
    elif not plan.empty:
        target.write_text(text, encoding="utf-8")
    # One line each however long, so scripts can grep them.
    for label, names in (
        (f"slots {verb}", plan.slots),
        (f"actions {verb}", plan.actions),
        (f"responses {verb}", plan.responses),
    ):
        console.print(f"{target}: {label}: {', '.join(names) or 'none'}", **SUMMARY_STYLE)
    console.print(f"already there: {', '.join(plan.present) or 'none'}", **SUMMARY_STYLE)
