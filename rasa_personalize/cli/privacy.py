"""``personalize privacy ...``, ``personalize audit ...`` and ``personalize keys ...``.

Each command lives in its own module and registers itself on the group it belongs to.
"""

from __future__ import annotations

import typer

from rasa_personalize.cli import (
    audit,
    keys,
    privacy_consent,
    privacy_erase,
    privacy_export,
    privacy_retention,
)
from rasa_personalize.cli.common import PANEL_PRIVACY

privacy_app = typer.Typer(
    help="A customer's rights: consent, export, erasure, and how long data is kept.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
audit_app = typer.Typer(
    help="The audit log of privacy operations, profile access and API keys.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
keys_app = typer.Typer(
    help="Rotate the keys that protect contacts and customer ids.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def register_commands(app: typer.Typer) -> None:
    """Add the ``privacy``, ``audit`` and ``keys`` groups to ``app``."""
    for module in (privacy_consent, privacy_export, privacy_erase, privacy_retention):
        module.register(privacy_app)
    audit.register(audit_app)
    keys.register(keys_app)
    app.add_typer(privacy_app, name="privacy", rich_help_panel=PANEL_PRIVACY)
    app.add_typer(audit_app, name="audit", rich_help_panel=PANEL_PRIVACY)
    app.add_typer(keys_app, name="keys", rich_help_panel=PANEL_PRIVACY)
