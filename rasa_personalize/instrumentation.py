"""Server glue for logs and tracing: correlation ids and the action span on each request.

:func:`instrument_app` (called by :func:`rasa_personalize.plugin.install`) makes

- every webhook call run in its conversation's correlation scope (the keyed hash of the
  sender id, :mod:`rasa_personalize.logs`) and, with tracing on, in a
  ``personalize.action`` span that continues the caller's W3C trace;
- every request to the plugin's ``/personalize/*`` API run under a random request id,
  logged as its correlation id and answered in ``X-Request-ID``;
- tracing start with the server and stop with it (:mod:`rasa_personalize.tracing`).

The executor is observed by class, not by a function put on the instance: rasa-sdk's
server pickles the executor to start its worker processes, and a class defined here
pickles by name.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from rasa_sdk.executor import ActionExecutor
from sanic import Request, Sanic
from sanic.exceptions import ServerError

from rasa_personalize.logs import (
    KeySource,
    bind_conversation,
    bind_request_id,
    correlation_id,
    unbind,
)
from rasa_personalize.tracing import (
    ACTION_SPAN,
    AttributeValue,
    span,
    start_tracing,
    stop_tracing,
    tracing_enabled,
)

if TYPE_CHECKING:
    from opentelemetry.context import Context

# Routes of the plugin's HTTP API: each request gets a request id (logs, X-Request-ID).
API_ROUTE_PREFIX: Final = "personalize/"
REQUEST_ID_HEADER: Final = "X-Request-ID"
# The span's action name when the call names no registered action.
UNKNOWN_ACTION: Final = "unknown"


def _incoming_context() -> Context | None:
    """The caller's trace (W3C ``traceparent``) when no span is current yet.

    With rasa-sdk's tracing on, its webhook span is current and already continues Rasa's
    trace; with ours alone, the action span continues it from the request's headers.
    """
    from opentelemetry import trace  # noqa: PLC0415  # loaded with tracing only
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    if trace.get_current_span().get_span_context().is_valid:
        return None
    try:
        request = Request.get_current()
    except ServerError:  # outside a Sanic request (a test calling the executor directly)
        return None
    return TraceContextTextMapPropagator().extract(request.headers)


class ObservedActionExecutor(ActionExecutor):  # type: ignore[misc]  # rasa-sdk is untyped
    """rasa-sdk's executor, running each call in its conversation's correlation scope.

    Not made directly: :func:`observe_actions` turns an existing executor into one.
    """

    _personalize_key_source: KeySource

    async def run(self, action_call: Any, *args: Any, **kwargs: Any) -> Any:
        """rasa-sdk's ``run`` inside the correlation scope and, when on, the action span."""
        tracker = action_call.get("tracker") if isinstance(action_call, dict) else None
        sender_id = tracker.get("sender_id") if isinstance(tracker, dict) else None
        if not isinstance(sender_id, str):
            return await super().run(action_call, *args, **kwargs)
        token = bind_conversation(sender_id, self._personalize_key_source)
        try:
            if not tracing_enabled():
                return await super().run(action_call, *args, **kwargs)
            name = action_call.get("next_action")
            attributes: dict[str, AttributeValue] = {
                # Only a registered name: the field holds whatever the caller sent.
                "personalize.action.name": name
                if isinstance(name, str) and name in self.actions
                else UNKNOWN_ACTION,
                "personalize.correlation_id": correlation_id() or "",
            }
            with span(ACTION_SPAN, attributes, _incoming_context()):
                return await super().run(action_call, *args, **kwargs)
        finally:
            unbind(token)


def observe_actions(executor: ActionExecutor, key_source: KeySource) -> None:
    """Make ``executor`` an :class:`ObservedActionExecutor` (idempotent).

    Args:
        executor: the app's executor, of rasa-sdk's class or a subclass of it.
        key_source: gives the correlation ids' HMAC key (``PERSONALIZE_SECRET_KEY``) when
            first needed; a module-level function, so the executor still pickles.
    """
    executor._personalize_key_source = key_source
    if isinstance(executor, ObservedActionExecutor):
        return
    if type(executor) is ActionExecutor:
        executor.__class__ = ObservedActionExecutor
        return
    # A subclass of the user's: observed the same way (it pickles only if the user's
    # server does not start worker processes, as rasa-sdk's own class does).
    executor.__class__ = type(
        f"Observed{type(executor).__name__}", (ObservedActionExecutor, type(executor)), {}
    )


Handler = Callable[..., Awaitable[Any]]


def _with_request_id(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def handle(request: Request, *args: Any, **kwargs: Any) -> Any:
        request_id, token = bind_request_id()
        try:
            response = await handler(request, *args, **kwargs)
        finally:
            unbind(token)
        if response is not None:  # a streamed answer sent its headers already
            response.headers.setdefault(REQUEST_ID_HEADER, request_id)
        return response

    return handle


def instrument_app(app: Sanic[Any, Any], executor: ActionExecutor, key_source: KeySource) -> None:
    """Correlation ids and spans for a rasa-sdk app's requests, and tracing on its start.

    Args:
        app: the action server's app, with the plugin's API routes already added.
        executor: its action executor.
        key_source: gives ``PERSONALIZE_SECRET_KEY`` (the correlation ids' HMAC key) when
            a correlation id is first needed.
    """
    observe_actions(executor, key_source)
    for route in app.router.routes:
        if route.path.strip("/").startswith(API_ROUTE_PREFIX):
            route.handler = _with_request_id(route.handler)

    async def start(started: Sanic[Any, Any]) -> None:
        # After rasa-sdk's own listener, which reads endpoints.yml into this attribute.
        start_tracing(getattr(started.ctx, "tracer_provider", None))

    async def stop(stopped: Sanic[Any, Any]) -> None:
        stop_tracing(getattr(stopped.ctx, "tracer_provider", None))

    app.register_listener(start, "before_server_start")
    app.register_listener(stop, "after_server_stop")
