"""Webhook hardening for rasa-sdk's Sanic app: a token, input validation, safe errors.

Stock rasa-sdk answers an exception with a 500 whose body echoes the whole request (the
tracker, i.e. the conversation), and runs any action for whoever reaches it.
:func:`attach_extensions` refuses calls without the webhook token when one is configured,
replaces that handler, rejects malformed webhook bodies with a short 4xx before they
reach an action, and closes the store when the server stops.
:func:`rasa_personalize.plugin.install` attaches it, from ``personalize serve`` and
from rasa-sdk's own server (through ``rasa_sdk_plugins``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import gc
import hmac
import logging
import zlib
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.json_input import JsonBodyError, load_json_body
from rasa_personalize.runtime import personalization_service, shutdown_service

if TYPE_CHECKING:
    from rasa_personalize.engine import PersonalizationService

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
# rasa-sdk's routes by their declared path: Sanic matches "/webhook/" (and any other
# spelling it routes there) to the same route object, so checks keyed on the route cannot
# be sidestepped by writing the URL differently.
WEBHOOK_ROUTE = "webhook"
TOKEN_GUARDED_ROUTES = frozenset({WEBHOOK_ROUTE, "actions"})
# The query parameter Rasa's EndpointConfig sends ``token:`` as (its ``token_name``).
TOKEN_QUERY_PARAMETER = "token"  # noqa: S105  # a parameter name, not a secret


class _TrackerEnvelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    sender_id: str = Field(min_length=1, max_length=1024)
    slots: dict[str, Any] | None = None
    latest_message: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None


class _WebhookEnvelope(BaseModel):
    """The parts of a Rasa action call that rasa-sdk would otherwise crash on."""

    model_config = ConfigDict(extra="allow")

    next_action: str = Field(min_length=1, max_length=256)
    tracker: _TrackerEnvelope
    domain: dict[str, Any] | None = None
    version: str | None = None


def _optional(value: Any, kind: type) -> bool:
    return value is None or type(value) is kind


def _text_within(value: Any, longest: int) -> bool:
    return type(value) is str and 0 < len(value) <= longest


def _envelope_is_valid(payload: Any) -> bool:
    """Whether :class:`_WebhookEnvelope` would accept ``payload``, told without building it.

    Every webhook call is checked, and pydantic copying the tracker's events into a model
    cost more than the rest of the checks together. Exact types only (what JSON decodes
    to), so whatever passes here pydantic accepts too; anything else goes through pydantic,
    which refuses it or, for an unusual but valid body, lets it pass.
    """
    if type(payload) is not dict or type(tracker := payload.get("tracker")) is not dict:
        return False
    events = tracker.get("events")
    return (
        _text_within(payload.get("next_action"), 256)
        and _text_within(tracker.get("sender_id"), 1024)
        and _optional(tracker.get("slots"), dict)
        and _optional(tracker.get("latest_message"), dict)
        and (events is None or (type(events) is list and set(map(type, events)) <= {dict}))
        and _optional(payload.get("domain"), dict)
        and _optional(payload.get("version"), str)
    )


def _bad_request(message: str, status: int = 400) -> HTTPResponse:
    return json_response({"error": message}, status=status)


def _status_phrase(status: int) -> str:
    """``404`` -> ``"not found"``: what an error says without quoting the request."""
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "bad request"


def _presented_tokens(request: Request) -> list[bytes]:
    """Every token the request offers, in the forms Rasa's ``action_endpoint`` can send.

    ``token:`` arrives as ``?token=...``; ``headers: {Authorization: "Bearer ..."}`` as a
    bearer token; ``basic_auth:`` as HTTP Basic, whose password is the token (any user).
    """
    offered: list[bytes] = [
        value.encode() for value in request.args.getlist(TOKEN_QUERY_PARAMETER, [])
    ]
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        offered.append(credentials.encode())
    elif scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return offered
        _user, colon, password = decoded.partition(b":")
        if colon:
            offered.append(password)
    return offered


def token_matches(request: Request, expected: bytes) -> bool:
    """Whether any token the request offers is ``expected``, compared in constant time."""
    # Compare every offered token, without stopping at the first match: how long the
    # check takes must not depend on which form, or how much of the token, was right.
    matched = False
    for offered in _presented_tokens(request):
        matched |= hmac.compare_digest(offered, expected)
    return matched


def _decode_body(request: Request, max_bytes: int) -> Any:
    """The webhook body as JSON, inflating ``deflate`` bodies with a size cap.

    Raises:
        OverflowError: larger than ``max_bytes``, before or after inflating.
        zlib.error: not valid deflate data.
        JsonBodyError: not JSON, or nested too deep.
    """
    body = request.body
    if len(body) > max_bytes:
        raise OverflowError
    if request.headers.get("content-encoding", "").lower() == "deflate":
        inflater = zlib.decompressobj()
        body = inflater.decompress(body, max_bytes + 1)
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise OverflowError
    return load_json_body(body)


Refusal = Callable[[Request], HTTPResponse | None]


def _guard_routes(app: Sanic[Any, Any], path: str, *refusals: Refusal) -> None:
    """Put ``refusals`` in front of the handler of rasa-sdk's route at ``path``.

    In the route's own handler rather than request middleware: Sanic runs middleware with
    a signal dispatched around each one, which cost more than the checks themselves on
    every webhook call. Keyed on the route, so every URL Sanic sends there is guarded.
    """
    for route in app.router.routes:
        if route.path.strip("/") != path:
            continue
        handler = route.handler

        @functools.wraps(handler)
        async def guarded(
            request: Request, *args: Any, _handler: Any = handler, **kwargs: Any
        ) -> Any:
            for refusal in refusals:
                refused = refusal(request)
                if refused is not None:
                    return refused
            try:
                return await _handler(request, *args, **kwargs)
            finally:
                # Sanic's request sits in a reference cycle (with its connection), so the
                # decoded body it holds, a tracker of a few dozen dicts and lists, would
                # wait for a garbage collection: let it go with the answer instead.
                request.parsed_json = None

        route.handler = guarded


def _describe(error: ValidationError) -> str:
    # Field paths and reasons only: pydantic's own message would quote the input values.
    first = error.errors()[0]
    if not first["loc"]:
        return "invalid action call: the body must be a JSON object with next_action and tracker"
    location = ".".join(str(part) for part in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"invalid action call: {location}: {first['msg']}{more}"


def freeze_long_lived_objects() -> None:
    """Collect garbage once, then leave everything alive now out of later collections.

    After the warm-up, what the process holds (modules, models, catalogue, compiled rules)
    lives as long as it does. Without this, every full collection walks all of it: about
    75 ms of CPU with the demo loaded, during which no request is answered, a few times
    per thousand recommendations (the webhook's p99). Objects made later are collected
    as usual.
    """
    gc.collect()
    gc.freeze()


async def _warm_up_then_freeze(service: PersonalizationService) -> None:
    try:
        await service.warm_up()
    finally:
        freeze_long_lived_objects()


def attach_extensions(
    app: Sanic[Any, Any],
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    webhook_token: str | None = None,
) -> Sanic[Any, Any]:
    """Harden a rasa-sdk Sanic app: token, validation, no echoing errors, store shutdown.

    Args:
        app: an app built by rasa-sdk's ``create_app``.
        max_body_bytes: the largest request body accepted.
        webhook_token: when given, ``/webhook`` and ``/actions`` answer only requests
            that carry it (see :func:`token_matches`); ``/health`` stays open and the
            ``/personalize/*`` API keeps its own keys.
    """
    app.config.REQUEST_MAX_SIZE = max_body_bytes
    expected = webhook_token.encode() if webhook_token is not None else None

    def token_refusal(request: Request) -> HTTPResponse | None:
        # CORS preflights never carry credentials; rasa-sdk's CORS layer answers them.
        if expected is None or request.method == "OPTIONS" or token_matches(request, expected):
            return None
        response = _bad_request("missing or wrong webhook token", status=401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="rasa-personalize"'
        return response

    def body_refusal(request: Request) -> HTTPResponse | None:
        if request.method != "POST":
            return None
        try:
            payload = _decode_body(request, max_body_bytes)
        except OverflowError:
            return _bad_request("body too large", status=413)
        except zlib.error:
            return _bad_request("body is not valid deflate data")
        except JsonBodyError as error:
            # The decoder's message names the problem and quotes none of the body.
            return _bad_request(str(error))
        if not _envelope_is_valid(payload):
            try:
                _WebhookEnvelope.model_validate(payload)
            except ValidationError as error:
                return _bad_request(_describe(error))
        if "content-encoding" not in request.headers:
            # rasa-sdk reads ``request.json``: hand it this parse instead of a second one.
            request.parsed_json = payload
        return None

    # The token first: a caller without it learns nothing about what its body would get.
    _guard_routes(app, WEBHOOK_ROUTE, token_refusal, body_refusal)
    for path in TOKEN_GUARDED_ROUTES - {WEBHOOK_ROUTE}:
        _guard_routes(app, path, token_refusal)

    async def answer_without_echo(request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, SanicException) and 400 <= exception.status_code < 500:
            # The status's own name: Sanic's messages quote the URL, and a profile URL
            # holds a customer id.
            status = exception.status_code
            return json_response({"error": _status_phrase(status)}, status=status)
        # No request content here or in the log: it is a customer's conversation. The
        # route's pattern, not the path: a profile URL holds a customer id.
        route = request.route
        logger.error(
            "Unhandled %s on %s /%s",
            type(exception).__name__,
            request.method,
            route.path if route is not None else "(no route)",
            exc_info=exception,
        )
        return json_response({"error": "internal error in the action server"}, status=500)

    # Sanic refuses a second handler for Exception, so replace rasa-sdk's echoing one in
    # place; a test guards this against Sanic changing its handler table.
    app.error_handler.cached_handlers[(Exception, None)] = answer_without_echo

    async def close_store(_app: Sanic[Any, Any]) -> None:
        await shutdown_service()

    async def warm_up(_app: Sanic[Any, Any]) -> None:
        # In the background: a store that is down must not hold up the server's start.
        try:
            service = personalization_service()
        except PersonalizeError as error:
            logger.error("Personalization is not configured: %s", error)
            return
        _app.add_task(_warm_up_then_freeze(service))

    app.after_server_start(warm_up)
    app.after_server_stop(close_store)
    return app
