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
    broker,
    db,
    demo,
    domain,
    events,
    experiments,
    imports,
    init,
    models,
    offers,
    pipeline,
    privacy,
    profiles,
    propensity,
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
    "propensity",
    "pipeline",
    "models",
    "offers",
    "rules",
    "experiments",
    "profile",
    "stats",
    "init",
    "domain",
    "serve",
    "worker",
    "broker",
    "apikey",
    "privacy",
    "audit",
    "keys",
    "demo",
    "chat",
    "demo-web",
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
for module in (
    db,
    demo,
    imports,
    train,
    segments,
    propensity,
    pipeline,
    models,
    offers,
    rules,
    experiments,
    profiles,
    init,
    domain,
    serve,
    events,
    broker,
    privacy,
):
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
    """Set up logging for every subcommand (``PERSONALIZE_LOG_FORMAT``: console or json)."""
    from rasa_personalize.cli.common import EXIT_USAGE, fail
    from rasa_personalize.errors import ConfigurationError
    from rasa_personalize.logs import configure_logging

    try:
        configure_logging(level=logging.INFO if verbose else logging.WARNING)
    except ConfigurationError as error:
        fail(error, EXIT_USAGE)


def main() -> None:
    """Console-script entry point."""
    app()
