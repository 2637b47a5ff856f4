"""The action server process: ``personalize serve`` builds rasa-sdk's app and serves it.

The app is the one ``python -m rasa_sdk`` builds (tracing, plugin hooks), with the user's
action packages registered first and the plugin installed on top
(:func:`rasa_personalize.plugin.install`), so both ways of serving behave alike.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from functools import partial
from typing import Any

from rasa_sdk.endpoint import DEFAULT_ENDPOINTS_PATH, create_app_for_serve
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic
from sanic.worker.loader import AppLoader

from rasa_personalize.errors import PluginError
from rasa_personalize.plugin import install
from rasa_personalize.webhook import DEFAULT_MAX_BODY_BYTES


def user_action_packages(requested: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The user's action packages to serve, importable from the working directory.

    With none requested, the project's own ``actions`` package when there is one (as
    ``rasa run actions`` does); the plugin's actions are served either way.

    Raises:
        PluginError: a requested package cannot be found.
    """
    # A console script does not put the working directory on the import path; rasa-sdk
    # (run with ``python -m``) does, and the user's package lives there.
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    if not requested:
        return ("actions",) if importlib.util.find_spec("actions") is not None else ()
    for package in requested:
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None:
            raise PluginError(f"action package '{package}' not found (looked in {here})")
    return requested


def create_personalize_app(
    action_packages: tuple[str, ...] = (),
    cors_origins: str | list[str] | None = "*",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    endpoints: str = DEFAULT_ENDPOINTS_PATH,
) -> Sanic[Any, Any]:
    """rasa-sdk's app for serving, with the user's actions, ours and our extensions.

    The same app as ``python -m rasa_sdk`` builds (tracing, plugin hooks), so both ways
    of serving behave alike.
    """
    # Rasa 3.6 calling rasa-sdk 3.x is the supported pairing; the SDK's per-request version
    # warning would only fill the log.
    warnings.filterwarnings("ignore", message="Your versions of rasa and rasa_sdk")
    executor = ActionExecutor()
    for package in action_packages:
        executor.register_package(package)
    app = create_app_for_serve(executor, cors_origins=cors_origins, endpoints=endpoints)
    # The rasa_sdk_plugins hook has installed the plugin already when this distribution is
    # installed; install() is idempotent and makes the app whole without it.
    return install(app, executor, max_body_bytes=max_body_bytes)


def serve(
    port: int = 5055,
    host: str = "0.0.0.0",  # noqa: S104  # an action server is reached by Rasa from other hosts
    action_packages: tuple[str, ...] = (),
    workers: int = 1,
) -> None:
    """Run the action server until interrupted (what ``rasa run actions`` does, hardened)."""
    loader = AppLoader(factory=partial(create_personalize_app, action_packages))
    app = loader.load()
    app.prepare(host=host, port=port, workers=workers, access_log=False)
    Sanic.serve(primary=app, app_loader=loader)
