"""Placeholder: filled in by the command's own work (registers nothing yet)."""

from __future__ import annotations

import typer


def register(group: typer.Typer) -> None:
    """Add this module's commands to ``group``."""
    del group
