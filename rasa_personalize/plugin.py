"""Plugging into any rasa-sdk action server: our actions beside the user's, one behaviour.

Two ways start an action server, and both end here:

- ``python -m rasa_sdk --actions actions`` (what ``rasa run actions`` runs) registers the
  user's package, then calls the ``attach_sanic_app_extensions`` hook of the
  ``rasa_sdk_plugins`` module this distribution installs; the hook calls :func:`install`.
- ``personalize serve`` builds the same app and goes through the same hook.

:func:`install` registers the plugin's actions, hardens the webhook (with the
``PERSONALIZE_WEBHOOK_TOKEN`` check when that is set), mounts the
``/personalize/*`` API, ``GET /ready`` (:mod:`rasa_personalize.readiness`) and
``GET /metrics`` (:mod:`rasa_personalize.metrics`), warms the
service up and closes the store on shutdown.

A user action with the same name as one of ours wins: the name is in the user's domain,
so the user's code decides. To keep personalization in such an action, subclass ours
(for example :class:`~rasa_personalize.handlers.ActionSessionStart`, whose
``extra_session_events`` hook adds the user's events to the session start).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from rasa_sdk import Action, utils
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic

from rasa_personalize.errors import PluginError
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.instrumentation import instrument_app
from rasa_personalize.logs import configure_logging
from rasa_personalize.metrics import attach_metrics_route, time_actions
from rasa_personalize.readiness import attach_readiness_route
from rasa_personalize.runtime import current_service
from rasa_personalize.settings import load_settings, load_webhook_token
from rasa_personalize.webhook import DEFAULT_MAX_BODY_BYTES, attach_extensions

logger = logging.getLogger(__name__)

PLUGIN_ACTIONS_PACKAGE = "rasa_personalize.handlers"
_PLUGIN_PREFIX = "rasa_personalize."
_INSTALLED = "rasa_personalize_installed"


# rasa-sdk's own scan skips the base classes of these frameworks (forms, for example).
_FRAMEWORK_PREFIXES = ("rasa_sdk.", "rasa.", "rasa_core.", "rasa_core_sdk.")


def _concrete_actions() -> list[type[Action]]:
    return [
        cls
        for cls in utils.all_subclasses(Action)
        if not inspect.isabstract(cls) and not cls.__module__.startswith(_FRAMEWORK_PREFIXES)
    ]


def _is_plugin_class(cls: type[Any]) -> bool:
    return cls.__module__.startswith(_PLUGIN_PREFIX)


def plugin_action_names() -> list[str]:
    """The names of the actions this plugin serves, in registration order."""
    importlib.import_module(PLUGIN_ACTIONS_PACKAGE)
    return [cls().name() for cls in _concrete_actions() if _is_plugin_class(cls)]


def register_plugin_actions(executor: ActionExecutor) -> dict[str, str]:
    """Register our actions on ``executor``; a user action of the same name wins.

    A user's action is any concrete Action subclass defined outside this package, whether
    the executor registered it already or it was only imported. When several share a
    name, the most derived one (rasa-sdk's own scan order, last wins) is kept.

    Returns:
        action name -> ``module.Class`` of every plugin action that a user action replaced.
    """
    importlib.import_module(PLUGIN_ACTIONS_PACKAGE)
    user_by_name: dict[str, type[Action]] = {}
    for cls in _concrete_actions():
        if not _is_plugin_class(cls):
            user_by_name[cls().name()] = cls
    replaced: dict[str, str] = {}
    for cls in _concrete_actions():
        if not _is_plugin_class(cls):
            continue
        name = cls().name()
        user_class = user_by_name.get(name)
        if user_class is None:
            executor.register_action(cls)
            continue
        executor.register_action(user_class)
        replaced[name] = f"{user_class.__module__}.{user_class.__qualname__}"
        if not issubclass(user_class, cls):
            logger.warning(
                "Action %s of %s replaces the plugin's: it does not personalize unless it "
                "subclasses %s.%s",
                name,
                replaced[name],
                cls.__module__,
                cls.__qualname__,
            )
    return replaced


def _secret_key() -> str:
    """The HMAC key of correlation ids: the running service's secret.

    Before the service exists, the settings' (without building the service: building it
    logs, and a log line inside a conversation asks for this key again).
    """
    service = current_service()
    if service is not None:
        return service.settings.secret_key
    return load_settings().secret_key


def _executor_of(app: Sanic[Any, Any]) -> ActionExecutor | None:
    # rasa-sdk's create_app keeps its executor only in the closures of its route handlers;
    # a test guards this against rasa-sdk changing that.
    for route in app.router.routes:
        # Through the guards the webhook module puts in front (functools.wraps).
        handler = inspect.unwrap(route.handler)
        for cell in getattr(handler, "__closure__", None) or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(contents, ActionExecutor):
                return contents
    return None


def install(
    app: Sanic[Any, Any],
    executor: ActionExecutor | None = None,
    *,
    max_body_bytes: int | None = None,
) -> Sanic[Any, Any]:
    """Register our actions and attach our extensions to a rasa-sdk app (idempotent).

    Args:
        app: an app built by rasa-sdk's ``create_app`` (or ``create_app_for_serve``).
        executor: its executor; found in the app's routes when not given.
        max_body_bytes: webhook and API body limit (default: the server's).

    The webhook token is read from ``PERSONALIZE_WEBHOOK_TOKEN`` here, when the server
    starts; an invalid one stops the start rather than leave the webhook open.

    Logs are formatted as ``PERSONALIZE_LOG_FORMAT`` asks when it is set (otherwise the
    host program's logging is left alone), action calls and API requests get correlation
    ids, and tracing starts with the server (:mod:`rasa_personalize.instrumentation`).

    Raises:
        PluginError: no executor was given and the app has none of rasa-sdk's routes.
        ConfigurationError: ``PERSONALIZE_WEBHOOK_TOKEN`` is set but too short, or
            ``PERSONALIZE_LOG_FORMAT`` or ``PERSONALIZE_OTLP_ENDPOINT`` is invalid.
    """
    if getattr(app.ctx, _INSTALLED, False):
        return app
    configure_logging(only_if_set=True)
    executor = executor or _executor_of(app)
    if executor is None:
        raise PluginError("the app has no rasa-sdk action executor: build it with create_app")
    token = load_webhook_token()
    if token is None:
        logger.warning(
            "PERSONALIZE_WEBHOOK_TOKEN is not set: whoever reaches /webhook can act as any "
            "customer. Set it, and the same token in Rasa's endpoints.yml."
        )
    register_plugin_actions(executor)
    attach_extensions(
        app,
        max_body_bytes or DEFAULT_MAX_BODY_BYTES,
        webhook_token=token.get_secret_value() if token is not None else None,
    )
    attach_event_routes(app)
    attach_readiness_route(app)
    instrument_app(app, executor, _secret_key)
    # After instrument_app, which replaces executor.run: the timing wraps the whole call.
    time_actions(executor)
    attach_metrics_route(app)
    setattr(app.ctx, _INSTALLED, True)
    return app
