"""Webhook hardening for rasa-sdk's Sanic app: input validation, safe errors, lifecycle.

Stock rasa-sdk answers an exception with a 500 whose body echoes the whole request (the
tracker, i.e. the conversation). :func:`attach_extensions` replaces that handler, rejects
malformed webhook bodies with a short 4xx before they reach an action, and closes the
store when the server stops. :func:`rasa_personalize.plugin.install` attaches it, from
``personalize serve`` and from rasa-sdk's own server (through ``rasa_sdk_plugins``).
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.runtime import personalization_service, shutdown_service

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
WEBHOOK_PATH = "/webhook"


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


def _bad_request(message: str, status: int = 400) -> HTTPResponse:
    return json_response({"error": message}, status=status)


def _decode_body(request: Request, max_bytes: int) -> Any:
    """The webhook body as JSON, inflating ``deflate`` bodies with a size cap."""
    body = request.body
    if len(body) > max_bytes:
        raise OverflowError
    if request.headers.get("content-encoding", "").lower() == "deflate":
        inflater = zlib.decompressobj()
        body = inflater.decompress(body, max_bytes + 1)
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise OverflowError
    return json.loads(body)


def _describe(error: ValidationError) -> str:
    # Field paths and reasons only: pydantic's own message would quote the input values.
    first = error.errors()[0]
    if not first["loc"]:
        return "invalid action call: the body must be a JSON object with next_action and tracker"
    location = ".".join(str(part) for part in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"invalid action call: {location}: {first['msg']}{more}"


def attach_extensions(
    app: Sanic[Any, Any], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Sanic[Any, Any]:
    """Harden a rasa-sdk Sanic app: validation, no echoing errors, store shutdown."""
    app.config.REQUEST_MAX_SIZE = max_body_bytes

    async def validate_webhook_body(request: Request) -> HTTPResponse | None:
        # Sanic routes "/webhook/" to the same handler, so it gets the same checks.
        if request.path.rstrip("/") != WEBHOOK_PATH or request.method != "POST":
            return None
        try:
            payload = _decode_body(request, max_body_bytes)
        except OverflowError:
            return _bad_request("body too large", status=413)
        except zlib.error:
            return _bad_request("body is not valid deflate data")
        except (ValueError, UnicodeDecodeError):
            return _bad_request("body is not valid JSON")
        try:
            _WebhookEnvelope.model_validate(payload)
        except ValidationError as error:
            return _bad_request(_describe(error))
        return None

    async def answer_without_echo(request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, SanicException) and 400 <= exception.status_code < 500:
            return json_response({"error": str(exception)}, status=exception.status_code)
        # No request content here or in the log: it is a customer's conversation.
        logger.error(
            "Unhandled %s on %s %s",
            type(exception).__name__,
            request.method,
            request.path,
            exc_info=exception,
        )
        return json_response({"error": "internal error in the action server"}, status=500)

    app.on_request(validate_webhook_body, priority=100)
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
        _app.add_task(service.warm_up())

    app.after_server_start(warm_up)
    app.after_server_stop(close_store)
    return app
