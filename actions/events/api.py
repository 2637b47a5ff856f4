"""The HTTP API on the action server's own Sanic app: events in, profiles in and out.

``POST /personalize/events`` (scope ingest), ``GET /personalize/profiles/<customer>``
(scope read) and ``PUT /personalize/profiles/<customer>`` (scope admin); an admin key may
call all three. Every answer to a bad request is a short JSON ``{"error": ...}`` that
quotes nothing the caller sent about a person.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import asdict
from typing import Any, Final

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sqlalchemy.exc import SQLAlchemyError

from actions.engine import PersonalizationService
from actions.errors import PersonalizeError
from actions.events.apikeys import find_api_key
from actions.events.ingest import ingest_events
from actions.events.profiles import parse_profile_update, profile_document, write_profile
from actions.identity import MAX_EXTERNAL_ID_LENGTH, customer_key
from actions.runtime import personalization_service

logger = logging.getLogger(__name__)

EVENTS_PATH: Final = "/personalize/events"
PROFILES_PATH: Final = "/personalize/profiles"
# 1,000 events of a few hundred bytes each fit comfortably.
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
MAX_EVENTS_PER_BATCH: Final = 1_000
# wbits for zlib: 16 + MAX_WBITS reads gzip; 32 + MAX_WBITS reads zlib or gzip headers,
# which covers the senders that label gzip data "deflate".
_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}


class RequestRejectedError(PersonalizeError):
    """A request is refused with ``status``; the message is safe to send back."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> HTTPResponse:
    headers: dict[str, str] | None = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif status == 503:
        # Batches are idempotent by event id, so a retry is always safe.
        headers = {"Retry-After": "1"}
    return json_response({"error": message}, status=status, headers=headers)


def decode_json_body(request: Request, max_bytes: int) -> Any:
    """The body as JSON, inflating gzip/deflate bodies; the size cap holds after inflating.

    Raises:
        RequestRejectedError: 413 too large, 415 unknown encoding, 400 not JSON.
    """
    body = request.body
    if len(body) > max_bytes:
        raise RequestRejectedError(413, f"body larger than {max_bytes} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding in _WBITS:
        inflater = zlib.decompressobj(_WBITS[encoding])
        try:
            # Inflate at most one byte past the cap: a small bomb never grows in memory.
            body = inflater.decompress(body, max_bytes + 1)
        except zlib.error:
            raise RequestRejectedError(400, f"body is not valid {encoding} data") from None
        if len(body) > max_bytes or inflater.unconsumed_tail:
            raise RequestRejectedError(413, f"body larger than {max_bytes} bytes when inflated")
    elif encoding != "identity":
        raise RequestRejectedError(415, "unsupported content encoding")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RequestRejectedError(400, "body is not valid JSON") from None


def _bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


async def _authorize(service: PersonalizationService, request: Request, needed: str) -> None:
    key = _bearer_key(request)
    if key is None:
        raise RequestRejectedError(401, "missing API key: send Authorization: Bearer <key>")
    async with service.store.sessions() as session:
        record = await find_api_key(session, key)
    if record is None:
        raise RequestRejectedError(401, "unknown or revoked API key")
    if not record.allows(needed):
        raise RequestRejectedError(403, f"this API key's scope does not allow {needed}")


def _external_id(customer: str) -> str:
    customer = customer.strip()
    if not customer or len(customer) > MAX_EXTERNAL_ID_LENGTH:
        raise RequestRejectedError(
            400, f"customer id must be 1 to {MAX_EXTERNAL_ID_LENGTH} characters"
        )
    return customer


def _service() -> PersonalizationService:
    try:
        return personalization_service()
    except PersonalizeError as error:
        logger.error("Personalization is not configured: %s", error)
        raise RequestRejectedError(503, "personalization is not configured") from None


async def _guarded(request: Request, handler: Any) -> HTTPResponse:
    """Run a handler; our refusals become short JSON errors, store failures a 503."""
    try:
        response: HTTPResponse = await handler()
    except RequestRejectedError as error:
        return _error(error.status, error.message)
    except (SQLAlchemyError, OSError) as error:
        # The type only: driver messages may quote the statement's parameters.
        logger.error(
            "Store failure %s on %s %s", type(error).__name__, request.method, request.route
        )
        return _error(503, "the store is unavailable; retry later")
    return response


def attach_event_routes(
    app: Sanic[Any, Any], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Sanic[Any, Any]:
    """Add the events and profiles API to a rasa-sdk Sanic app; returns the app.

    Args:
        app: The action server's app (after :func:`actions.server.attach_extensions`,
            whose error handler keeps unexpected failures from echoing requests).
        max_body_bytes: Largest body accepted, before and after decompression.
    """

    async def post_events(request: Request) -> HTTPResponse:
        async def handle() -> HTTPResponse:
            service = _service()
            await _authorize(service, request, "ingest")
            payload = decode_json_body(request, max_bytes=max_body_bytes)
            events = payload.get("events") if isinstance(payload, dict) else None
            if not isinstance(events, list):
                raise RequestRejectedError(400, 'the body must be {"events": [...]}')
            if len(events) > MAX_EVENTS_PER_BATCH:
                raise RequestRejectedError(
                    413, f"at most {MAX_EVENTS_PER_BATCH} events per request"
                )
            async with service.store.sessions.begin() as session:
                result = await ingest_events(
                    session, events, secret_key=service.settings.secret_key
                )
            return json_response(
                {
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "rejected": [asdict(rejection) for rejection in result.rejected],
                }
            )

        return await _guarded(request, handle)

    async def get_profile(request: Request, customer: str) -> HTTPResponse:
        async def handle() -> HTTPResponse:
            service = _service()
            await _authorize(service, request, "read")
            key = customer_key(service.settings.secret_key, _external_id(customer))
            snapshot = await service.store.load_snapshot(key)
            if snapshot is None:
                return _error(404, "no such customer")
            return json_response(profile_document(snapshot))

        return await _guarded(request, handle)

    async def put_profile(request: Request, customer: str) -> HTTPResponse:
        async def handle() -> HTTPResponse:
            service = _service()
            await _authorize(service, request, "admin")
            key = customer_key(service.settings.secret_key, _external_id(customer))
            try:
                change = parse_profile_update(decode_json_body(request, max_bytes=max_body_bytes))
            except PersonalizeError as error:
                if isinstance(error, RequestRejectedError):
                    raise
                raise RequestRejectedError(400, f"invalid profile: {error}") from None
            async with service.store.sessions.begin() as session:
                created = await write_profile(session, key, change)
            snapshot = await service.store.load_snapshot(key)
            if snapshot is None:  # erased between the write and the read
                return _error(404, "no such customer")
            return json_response(profile_document(snapshot), status=201 if created else 200)

        return await _guarded(request, handle)

    app.add_route(post_events, EVENTS_PATH, methods=["POST"], name="personalize_events")
    app.add_route(
        get_profile,
        f"{PROFILES_PATH}/<customer:str>",
        methods=["GET"],
        name="personalize_profile_get",
        # External ids such as e-mail addresses arrive percent-encoded.
        unquote=True,
    )
    app.add_route(
        put_profile,
        f"{PROFILES_PATH}/<customer:str>",
        methods=["PUT"],
        name="personalize_profile_put",
        unquote=True,
    )
    return app
