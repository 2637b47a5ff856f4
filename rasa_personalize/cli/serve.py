"""``personalize serve``: the action server with the plugin's actions, the user's and the API."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    PANEL_SERVING,
    console,
    describe_store,
    fail,
    load_cli_settings,
)
from rasa_personalize.errors import PersonalizeError


def register_commands(app: typer.Typer) -> None:
    """Add ``serve`` to ``app``."""
    app.command("serve", rich_help_panel=PANEL_SERVING)(serve)


def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 5055,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to bind (this machine only by default; another interface needs "
            "PERSONALIZE_WEBHOOK_TOKEN or --insecure-no-token)."
        ),
    ] = "127.0.0.1",
    insecure_no_token: Annotated[
        bool,
        typer.Option(
            "--insecure-no-token",
            help="Serve a non-loopback --host without PERSONALIZE_WEBHOOK_TOKEN: whoever "
            "reaches the webhook can act as any customer.",
        ),
    ] = False,
    cors: Annotated[
        list[str] | None,
        typer.Option(
            "--cors",
            metavar="ORIGIN",
            help="Allow browser calls from this origin (repeatable; `*` for any). "
            "Default: none, Rasa calls the action server from a server.",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (one per core).")] = 1,
    extra_actions: Annotated[
        list[str] | None,
        typer.Option(
            "--actions",
            help="Your action packages to serve beside ours (repeatable; default: the "
            "project's own `actions` package, when there is one).",
        ),
    ] = None,
) -> None:
    """Run the action server: the plugin's actions, your own, and the /personalize API."""
    from rasa_personalize.server import is_loopback, user_action_packages
    from rasa_personalize.server import serve as run_server

    # Fail now, clearly, rather than on the first request.
    settings = load_cli_settings(None, real_secret=True)
    if settings.webhook_token is None and not is_loopback(host) and not insecure_no_token:
        fail(
            f"--host {host} is reachable from other machines: set PERSONALIZE_WEBHOOK_TOKEN "
            "(and the same token in Rasa's endpoints.yml), or pass --insecure-no-token",
            EXIT_USAGE,
        )
    try:
        packages = user_action_packages(tuple(extra_actions or ()))
    except PersonalizeError as error:
        fail(error, EXIT_USAGE)
    logging.getLogger("rasa_personalize").setLevel(logging.INFO)
    console.print(
        f"Action server on http://{host}:{port}/webhook, store {describe_store(settings)}; "
        f"metrics on /metrics, readiness on /ready"
    )
    run_server(port=port, host=host, action_packages=packages, workers=workers, cors_origins=cors)
