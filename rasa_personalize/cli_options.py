"""Command-line options shared by every ``personalize`` sub-command module.

Its own module (typer only) so that the sub-command modules, which ``rasa_personalize.cli``
imports to register them, can share options without importing ``rasa_personalize.cli`` back.
"""

from __future__ import annotations

from typing import Annotated

import typer

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="Store URL (default: $PERSONALIZE_DATABASE_URL or sqlite:///personalize.db).",
        show_default=False,
    ),
]
