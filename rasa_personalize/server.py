"""The action server process: ``personalize serve`` builds rasa-sdk's app and serves it.

The app is the one ``python -m rasa_sdk`` builds (tracing, plugin hooks), with the user's
action packages registered first and the plugin installed on top
(:func:`rasa_personalize.plugin.install`), so both ways of serving behave alike.

A serving process imports only what it serves: no scikit-learn (the content model is
precomputed by ``personalize train``), no matplotlib, no demo generator, no import
libraries and, in Sanic's worker processes, not the command line either (see
:func:`serve`). A test starts the app as served and checks the modules it loaded.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import sys
import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from rasa_sdk.endpoint import DEFAULT_ENDPOINTS_PATH, create_app_for_serve
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic
from sanic.worker.loader import AppLoader

from rasa_personalize.errors import PluginError
from rasa_personalize.logs import configure_logging
from rasa_personalize.metrics import multiprocess_directory
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
    cors_origins: str | list[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    endpoints: str = DEFAULT_ENDPOINTS_PATH,
) -> Sanic[Any, Any]:
    """rasa-sdk's app for serving, with the user's actions, ours and our extensions.

    The same app as ``python -m rasa_sdk`` builds (tracing, plugin hooks), so both ways
    of serving behave alike. CORS is off unless ``cors_origins`` names origins: Rasa
    calls the action server from a server, never from a browser.
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


def served_app(
    action_packages: tuple[str, ...],
    cors_origins: list[str] | None,
    log_levels: tuple[int, int],
) -> Sanic[Any, Any]:
    """:func:`create_personalize_app` in a process of ``personalize serve``.

    Sanic's workers start from this factory alone, so each formats its logs here
    (``PERSONALIZE_LOG_FORMAT``) at the levels of the command that started it:
    ``log_levels`` is (root, ``rasa_personalize``).
    """
    root_level, package_level = log_levels
    configure_logging(level=root_level)
    logging.getLogger("rasa_personalize").setLevel(package_level)
    return create_personalize_app(action_packages, cors_origins)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the server reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name: it may resolve to any interface
        return False


def serve(
    port: int = 5055,
    host: str = "127.0.0.1",
    action_packages: tuple[str, ...] = (),
    workers: int = 1,
    cors_origins: list[str] | None = None,
) -> None:
    """Run the action server until interrupted (what ``rasa run actions`` does, hardened).

    Sanic serves from worker processes it starts with multiprocessing's "spawn"; each
    worker builds the app from the loader's factory alone, never from this process's
    main module (:func:`_main_module_hidden_from_workers`).
    """
    levels = (logging.getLogger().level, logging.getLogger("rasa_personalize").getEffectiveLevel())
    loader = AppLoader(factory=partial(served_app, action_packages, cors_origins or None, levels))
    # Metrics in multi-process mode: set up before the app and its workers exist (they
    # inherit the environment), so /metrics on any worker sums them all.
    with multiprocess_directory():
        app = loader.load()
        app.prepare(host=host, port=port, workers=workers, access_log=False)
        with _main_module_hidden_from_workers():
            Sanic.serve(primary=app, app_loader=loader)


@contextmanager
def _main_module_hidden_from_workers() -> Iterator[None]:
    """While the server runs, show multiprocessing a main module with nothing to re-run.

    "spawn" re-runs the parent's ``__main__`` in every child before anything else. Run
    from the ``personalize`` console script, that is the whole command line (typer,
    rich, every command module), which a worker has no use for: it needs only the app
    factory, which the loader names by module. A main module without a file or a
    module name is what an interactive interpreter has, and for it spawn imports
    nothing; the real one is put back when the server stops.
    """
    real = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = real
