"""The ``personalize`` app: every command group registered, listed in the order of the work.

Commands import what they need when they run, so ``personalize --help`` and
``personalize --version`` answer without numpy, SQLAlchemy or scikit-learn.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final

import typer
from typer.core import TyperGroup

from rasa_personalize.cli import (
    db,
    demo,
    domain,
    events,
    imports,
    privacy,
    profiles,
    rules,
    segments,
    serve,
    train,
)

# `personalize --help` lists commands as the work goes: the store and its data, models
# and segments, decisions, serving, then the demo.
WORKFLOW: Final = (
    "db",
    "seed-demo",
    "import",
    "train",
    "evaluate",
    "segment",
    "tag",
    "rules",
    "profile",
    "stats",
    "domain",
    "serve",
    "worker",
    "apikey",
    "privacy",
    "audit",
    "keys",
    "demo",
    "chat",
)


class WorkflowGroup(TyperGroup):
    """Lists commands in :data:`WORKFLOW` order (typer puts groups after plain commands)."""

    # ``ctx`` is typer's click context (typer vendors click, so its type is private there).
    def list_commands(self, ctx: Any) -> list[str]:
        """Known commands in workflow order, then any others as registered."""
        names = super().list_commands(ctx)
        rank = {name: position for position, name in enumerate(WORKFLOW)}
        return sorted(names, key=lambda name: rank.get(name, len(WORKFLOW)))


app = typer.Typer(
    cls=WorkflowGroup,
    help="rasa-personalize: personalize a Rasa e-commerce assistant from customer data.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold customer data
    rich_markup_mode="markdown",  # docstring line breaks are wrapping, not breaks
)
for module in (db, demo, imports, train, segments, rules, profiles, domain, serve, events, privacy):
    module.register_commands(app)


def package_version() -> str:
    """The installed distribution's version (the package's own when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rasa-personalize")
    except PackageNotFoundError:
        from rasa_personalize import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rasa-personalize {package_version()}")
        raise typer.Exit


@app.callback()
def configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Set up logging for every subcommand."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    """Console-script entry point."""
    app()
