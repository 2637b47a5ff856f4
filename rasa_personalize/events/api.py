"""The HTTP API on the action server's own Sanic app: events in, profiles in and out.

``POST /personalize/events`` (scope ingest), ``GET /personalize/profiles/<customer>``
(scope read) and ``PUT /personalize/profiles/<customer>`` (scope admin), and the same two
on ``/personalize/profiles/<customer>/consent``, and
``GET /personalize/profiles/<customer>/export`` (scope admin); an admin key may call them
all. Profile reads, writes and exports are audited with the key's id and label.
``DELETE /personalize/profiles/<customer>`` (scope admin) erases the customer and answers
the receipt (``rasa_personalize.privacy.erasure``). ``GET /personalize/openapi.json``
(no key: it describes the routes and holds no data) answers their OpenAPI document. Every
answer to a bad request is a short JSON ``{"error": ...}`` that quotes nothing the caller
sent about a person.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any, Final

from cachetools import TTLCache
from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic.response import raw as raw_response

from rasa_personalize.cache.breaker import RedisUnavailableError
from rasa_personalize.clock import utc_now
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.events.apikeys import ApiKeyRecord, find_api_key, hash_key
from rasa_personalize.events.ingest import (
    IngestResult,
    adopt_event_customers,
    check_events,
    ingest_events,
    store_events,
)
from rasa_personalize.events.profiles import (
    ProfileUpdate,
    changed_fields,
    parse_profile_update,
    profile_document,
    write_profile,
)
from rasa_personalize.events.stream import EventStream
from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH, customer_key
from rasa_personalize.json_input import JsonBodyError, load_json_body
from rasa_personalize.metrics import count_events
from rasa_personalize.privacy.audit import (
    OUTCOME_NOT_FOUND,
    OUTCOME_OK,
    PROFILE_READ,
    PROFILE_WRITE,
    Actor,
    record_audit,
)
from rasa_personalize.privacy.consent import (
    ConsentInputError,
    load_consent_document,
    parse_consent_body,
    record_consent,
)
from rasa_personalize.privacy.erasure import erase_with_settings
from rasa_personalize.privacy.secret_rotation import rekey_on_miss
from rasa_personalize.runtime import personalization_service
from rasa_personalize.segments.tag_rules import TagRules, load_ingest_tag_rules
from rasa_personalize.settings import Settings
from rasa_personalize.store.customers import keys_of_person
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.interactions import stored_event_ids
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.store.types import Session
from rasa_personalize.text import has_control_characters

logger = logging.getLogger(__name__)

EVENTS_PATH: Final = "/personalize/events"
PROFILES_PATH: Final = "/personalize/profiles"
# The OpenAPI document of these routes (rasa_personalize.events.openapi); public.
OPENAPI_PATH: Final = "/personalize/openapi.json"
# 1,000 events of a few hundred bytes each fit comfortably.
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
MAX_EVENTS_PER_BATCH: Final = 1_000
# How long an API key lookup (or a sku found in the catalogue) is trusted.
API_KEY_CACHE_S: Final = 5.0
KNOWN_SKU_CACHE_S: Final = 60.0
# Connections for batches stored in SQL: more concurrent batches only wait on each other.
WRITER_POOL_SIZE: Final = 4
# wbits for zlib: 16 + MAX_WBITS reads gzip; 32 + MAX_WBITS reads zlib or gzip headers,
# which covers the senders that label gzip data "deflate".
_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}
CONTENT_ENCODINGS: Final = ("identity", *_WBITS)


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
        RequestRejectedError: 413 too large, 415 unknown encoding, 400 not JSON or
            nested deeper than :data:`~rasa_personalize.json_input.MAX_JSON_DEPTH`.
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
        return load_json_body(body)
    except JsonBodyError as error:
        raise RequestRejectedError(400, str(error)) from None


def _bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


async def _authorize(
    service: PersonalizationService, request: Request, needed: str
) -> ApiKeyRecord:
    """The caller's API key, if it allows ``needed``; else a 401 or 403 refusal."""
    key = _bearer_key(request)
    if key is None:
        raise RequestRejectedError(401, "missing API key: send Authorization: Bearer <key>")
    # Keys are looked up once per API_KEY_CACHE_S, not on every batch; a revoked key
    # stops working within that time. Cached by hash: the table holds hashes only too.
    known: TTLCache[str, ApiKeyRecord | None] = request.app.ctx.personalize_api_keys
    digest = hash_key(key)
    if digest in known:
        record = known[digest]
    else:
        async with service.store.sessions() as session:
            record = await find_api_key(session, key)
        known[digest] = record
    if record is None:
        raise RequestRejectedError(401, "unknown or revoked API key")
    if not record.allows(needed):
        raise RequestRejectedError(403, f"this API key's scope does not allow {needed}")
    return record


def _external_id(customer: str) -> str:
    customer = customer.strip()
    if not customer or len(customer) > MAX_EXTERNAL_ID_LENGTH:
        raise RequestRejectedError(
            400, f"customer id must be 1 to {MAX_EXTERNAL_ID_LENGTH} characters"
        )
    # Control characters, or bytes that were not UTF-8 (decoded to U+FFFD, so that two
    # different ids would read as one): no shop sends such an id.
    if has_control_characters(customer) or "\ufffd" in customer:
        raise RequestRejectedError(400, "customer id must be printable UTF-8 text")
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
    except (DatabaseError, OSError) as error:
        # The type only: driver messages may quote the statement's parameters.
        logger.error(
            "Store failure %s on %s %s", type(error).__name__, request.method, request.route
        )
        return _error(503, "the store is unavailable; retry later")
    return response


async def _audit_profile_read(
    service: PersonalizationService, caller: ApiKeyRecord, key: str, *, found: bool
) -> None:
    """Record a profile read (found or not) in its own short transaction."""
    async with service.store.sessions.begin() as session:
        await record_audit(
            session,
            Actor.api(caller.id, caller.label),
            PROFILE_READ,
            OUTCOME_OK if found else OUTCOME_NOT_FOUND,
            customer_key=key,
        )


async def _write_profile_audited(
    session: Session, caller: ApiKeyRecord, key: str, change: ProfileUpdate
) -> bool:
    """Write a profile and its audit entry in the caller's transaction; True if created."""
    created = await write_profile(session, key, change)
    await record_audit(
        session,
        Actor.api(caller.id, caller.label),
        PROFILE_WRITE,
        OUTCOME_OK,
        customer_key=key,
        detail={"created": created, "fields": changed_fields(change)},
    )
    return created


async def _export_profile(request: Request, customer: str) -> HTTPResponse | None:
    """``GET /personalize/profiles/<customer>/export``: the export document, streamed."""
    pieces: list[AsyncIterator[str]] = []

    async def begin() -> HTTPResponse:
        # Exports are rare and admin-only: their decryption code stays out of the server
        # until one is asked for.
        from rasa_personalize.imports.contacts import contact_cipher  # noqa: PLC0415
        from rasa_personalize.privacy.export import (  # noqa: PLC0415
            CustomerNotFoundError,
            export_chunks,
        )

        service = _service()
        caller = await _authorize(service, request, "admin")
        external_id = _external_id(customer)
        # A customer not seen since the secret changed is still under a former key.
        await rekey_on_miss(service.store.sessions, service.settings, external_id)
        key = customer_key(service.settings.secret_key, external_id)
        chunks = export_chunks(
            service.store.sessions,
            key,
            cipher=contact_cipher(service.settings),
            actor=Actor.api(caller.id, caller.label),
        )
        try:
            # Audited and read before any byte is sent: an unknown customer is a 404.
            first = await anext(chunks)
        except CustomerNotFoundError:
            raise RequestRejectedError(404, "no such customer") from None
        response: HTTPResponse = await request.respond(
            content_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="export.json"'},
        )
        await response.send(first)
        pieces.append(chunks)
        return response

    response = await _guarded(request, begin)
    if not pieces:
        return response  # a refusal, not sent yet
    try:
        async for piece in pieces[0]:
            await response.send(piece)
    except (DatabaseError, OSError) as error:
        # Too late for an error status: the body breaks off and does not parse.
        logger.error("Store failure %s during an export", type(error).__name__)
        raise PersonalizeError("the export broke off: the store failed") from None
    await response.send("", end_stream=True)
    return None


async def _erase_profile(request: Request, customer: str) -> HTTPResponse:
    """``DELETE /personalize/profiles/<customer>``: erase the customer, answer the receipt."""

    async def handle() -> HTTPResponse:
        service = _service()
        caller = await _authorize(service, request, "admin")
        external_id = _external_id(customer)
        # A customer not seen since the secret changed is still under a former key.
        await rekey_on_miss(service.store.sessions, service.settings, external_id)
        key = customer_key(service.settings.secret_key, external_id)
        # The writer's connections: a big customer's batches outlast the reads' limit.
        sessions = _ingestion_path(request.app, service).writer.sessions
        receipt = await erase_with_settings(
            service.settings, sessions, key, actor=Actor.api(caller.id, caller.label)
        )
        if not receipt.complete:
            # The SQL rows are gone; Redis or the models were not reached: erase again.
            body = {"error": "erasure incomplete; retry later", **receipt.to_dict()}
            return json_response(body, status=503, headers={"Retry-After": "5"})
        return json_response(receipt.to_dict())

    return await _guarded(request, handle)


class IngestionPath:
    """Where a checked batch goes: the Redis Stream when configured and up, else SQL.

    One per app, built on first use (on the server's event loop) and closed with it.
    Tag rules are read once; a broken file is reported and ingestion goes on without.
    """

    def __init__(self, settings: Settings) -> None:
        # Batches stored in SQL get their own connections and statement limit: the
        # actions' limit (a second) is for reads, and a batch may wait that long for the
        # customer locks of another batch of the same customers.
        self.writer = SqlStore(
            settings.database_url,
            StoreTimeouts(settings.store_connect_timeout_s, settings.ingest_statement_timeout_s),
            pool_size=WRITER_POOL_SIZE,
        )
        self.stream = (
            EventStream.from_url(
                settings.redis_url,
                settings.event_stream,
                timeout_s=settings.redis_timeout_s,
                retry_after_s=settings.redis_retry_after_s,
            )
            if settings.redis_url
            else None
        )
        self.tag_rules = _tag_rules_or_none(settings)
        # Skus found in the catalogue lately: most batches name the same few hundred.
        self.known_skus: TTLCache[str, bool] = TTLCache(maxsize=100_000, ttl=KNOWN_SKU_CACHE_S)

    async def ingest(
        self, service: PersonalizationService, events: list[Any]
    ) -> tuple[IngestResult, bool]:
        """Check and store (or queue) a batch; returns the result and whether it was queued."""
        result, queued = await self._store_or_queue(service, events)
        count_events(
            "api",
            accepted=len(result.accepted),
            duplicate=len(result.duplicates),
            rejected=len(result.rejected),
            suppressed=len(result.suppressed),
        )
        return result, queued

    async def _store_or_queue(
        self, service: PersonalizationService, events: list[Any]
    ) -> tuple[IngestResult, bool]:
        secret = service.settings.secret_key
        if self.stream is None:
            async with self.writer.sessions.begin() as session:
                result = await ingest_events(
                    session,
                    events,
                    secret_key=secret,
                    tag_rules=self.tag_rules,
                    consent_default=service.settings.consent_default,
                    previous_secret_keys=service.settings.previous_secrets,
                )
            await _invalidate_profiles(service, result.changed_keys)
            return result, False
        if service.settings.previous_secrets:
            # Moved in a transaction of its own: the check below reads, and the worker
            # later stores, under the current keys.
            async with self.writer.sessions.begin() as session:
                await adopt_event_customers(
                    session,
                    events,
                    secret_key=secret,
                    previous_secret_keys=service.settings.previous_secrets,
                )
        async with service.store.sessions() as session:
            checked = await check_events(
                session,
                events,
                secret_key=secret,
                known_skus=self.known_skus.keys(),
                consent_default=service.settings.consent_default,
            )
            known = await stored_event_ids(session, [e.event_id for e in checked.storable])
        self.known_skus.update(dict.fromkeys(checked.found_skus, True))
        fresh = [e for e in checked.storable if e.event_id not in known]
        duplicates = [*checked.duplicates, *(e.event_id for e in checked.storable
                                             if e.event_id in known)]  # fmt: skip
        try:
            await self.stream.publish(fresh)
        except RedisUnavailableError:
            # Redis is down or slow: the same batch goes to SQL now, nothing is lost.
            async with self.writer.sessions.begin() as session:
                stored = await store_events(
                    session,
                    fresh,
                    tag_rules=self.tag_rules,
                    consent_default=service.settings.consent_default,
                )
            await _invalidate_profiles(service, stored.changed_keys)
            accepted = [e.event_id for e in fresh if e.event_id in stored.inserted]
            duplicates.extend(e.event_id for e in fresh if e.event_id in stored.already_stored)
            suppressed = [*checked.suppressed]
            suppressed.extend(e.event_id for e in fresh if e.event_id in stored.suppressed)
            return (
                IngestResult(accepted, duplicates, list(checked.rejected), suppressed=suppressed),
                False,
            )
        accepted = [e.event_id for e in fresh]
        return (
            IngestResult(
                accepted, duplicates, list(checked.rejected), suppressed=list(checked.suppressed)
            ),
            True,
        )

    async def close(self) -> None:
        """Close the stream's and the writer's connections."""
        if self.stream is not None:
            await self.stream.close()
        await self.writer.dispose()


def _tag_rules_or_none(settings: Settings) -> TagRules | None:
    try:
        return load_ingest_tag_rules(settings.tags_path)
    except PersonalizeError as error:
        logger.error("Tag rules not applied on ingestion: %s", error)
        return None


async def _invalidate_profiles(service: PersonalizationService, keys: frozenset[str]) -> None:
    """Drop the cached profiles of customers whose data changed (no-op without a cache)."""
    cache = getattr(service, "profile_cache", None)
    if cache is not None and keys:
        await cache.invalidate(keys)


def _ingestion_path(app: Sanic[Any, Any], service: PersonalizationService) -> IngestionPath:
    path: IngestionPath | None = getattr(app.ctx, "personalize_ingestion", None)
    if path is None:
        path = IngestionPath(service.settings)
        app.ctx.personalize_ingestion = path
    return path


async def _get_consent(request: Request, customer: str) -> HTTPResponse:
    """``GET /personalize/profiles/<customer>/consent``: the consent document."""

    async def handle() -> HTTPResponse:
        service = _service()
        await _authorize(service, request, "read")
        external_id = _external_id(customer)
        await rekey_on_miss(service.store.sessions, service.settings, external_id)
        key = customer_key(service.settings.secret_key, external_id)
        # Consent is kept by key: a visitor the store does not know yet has it too.
        async with service.store.sessions() as session:
            document = await load_consent_document(
                session, external_id, key, service.settings.consent_default
            )
        return json_response(document)

    return await _guarded(request, handle)


def _consent_writer(max_body_bytes: int) -> Any:
    """The handler of ``PUT /personalize/profiles/<customer>/consent``."""

    async def put_consent(request: Request, customer: str) -> HTTPResponse:
        async def handle() -> HTTPResponse:
            service = _service()
            caller = await _authorize(service, request, "admin")
            external_id = _external_id(customer)
            await rekey_on_miss(service.store.sessions, service.settings, external_id)
            key = customer_key(service.settings.secret_key, external_id)
            try:
                change = parse_consent_body(decode_json_body(request, max_bytes=max_body_bytes))
            except ConsentInputError as error:
                raise RequestRejectedError(400, f"invalid consent: {error}") from None
            settings = service.settings
            async with service.store.sessions.begin() as session:
                await record_consent(
                    session,
                    key,
                    change,
                    source="api",
                    actor=Actor.api(caller.id, caller.label),
                    now=utc_now(),
                    default_policy_version=settings.consent_policy_version,
                )
                keys = await keys_of_person(session, key)
            # The hot path caches consent with the profile, under each of a merged
            # customer's keys.
            await _invalidate_profiles(service, keys)
            async with service.store.sessions() as session:
                document = await load_consent_document(
                    session, external_id, key, settings.consent_default
                )
            return json_response(document)

        return await _guarded(request, handle)

    return put_consent


def _add_consent_routes(app: Sanic[Any, Any], max_body_bytes: int) -> None:
    """``GET`` (scope read) and ``PUT`` (scope admin) of a customer's consent."""
    for handler, method in ((_get_consent, "GET"), (_consent_writer(max_body_bytes), "PUT")):
        app.add_route(
            handler,
            f"{PROFILES_PATH}/<customer:str>/consent",
            methods=[method],
            name=f"personalize_consent_{method.lower()}",
            # External ids such as e-mail addresses arrive percent-encoded.
            unquote=True,
        )


async def _close_ingestion(app: Sanic[Any, Any]) -> None:
    path = getattr(app.ctx, "personalize_ingestion", None)
    if path is not None:
        app.ctx.personalize_ingestion = None
        await path.close()


async def _get_openapi(_request: Request) -> HTTPResponse:
    """``GET /personalize/openapi.json``: the routes' OpenAPI document; public, no data."""
    # Built on the first request: a server never asked for its spec never loads it.
    from rasa_personalize.events.openapi import openapi_json  # noqa: PLC0415

    return raw_response(openapi_json(), content_type="application/json")


def attach_event_routes(
    app: Sanic[Any, Any], max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Sanic[Any, Any]:
    """Add the events and profiles API to a rasa-sdk Sanic app; returns the app.

    Args:
        app: The action server's app (after :func:`rasa_personalize.webhook.attach_extensions`,
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
            path = _ingestion_path(app, service)
            result, queued = await path.ingest(service, events)
            return json_response(
                {
                    "accepted": result.accepted,
                    "duplicates": result.duplicates,
                    "rejected": [asdict(rejection) for rejection in result.rejected],
                    # Valid events not stored: no tracking consent, or from before an erasure.
                    "suppressed": result.suppressed,
                    # Queued events are in the Redis Stream; `personalize worker` stores them.
                    "queued": queued,
                }
            )

        return await _guarded(request, handle)

    async def get_profile(request: Request, customer: str) -> HTTPResponse:
        async def handle() -> HTTPResponse:
            service = _service()
            caller = await _authorize(service, request, "read")
            key = customer_key(service.settings.secret_key, _external_id(customer))
            snapshot = await service.store.load_snapshot(key)
            await _audit_profile_read(service, caller, key, found=snapshot is not None)
            if snapshot is None:
                return _error(404, "no such customer")
            return json_response(profile_document(snapshot))

        return await _guarded(request, handle)

    async def put_profile(request: Request, customer: str) -> HTTPResponse:
        async def handle() -> HTTPResponse:
            service = _service()
            caller = await _authorize(service, request, "admin")
            key = customer_key(service.settings.secret_key, _external_id(customer))
            try:
                change = parse_profile_update(decode_json_body(request, max_bytes=max_body_bytes))
            except PersonalizeError as error:
                if isinstance(error, RequestRejectedError):
                    raise
                raise RequestRejectedError(400, f"invalid profile: {error}") from None
            async with service.store.sessions.begin() as session:
                created = await _write_profile_audited(session, caller, key, change)
            await _invalidate_profiles(service, frozenset({key}))
            snapshot = await service.store.load_snapshot(key)
            if snapshot is None:  # erased between the write and the read
                return _error(404, "no such customer")
            return json_response(profile_document(snapshot), status=201 if created else 200)

        return await _guarded(request, handle)

    app.register_listener(_close_ingestion, "after_server_stop")
    app.add_route(_get_openapi, OPENAPI_PATH, methods=["GET"], name="personalize_openapi")
    app.ctx.personalize_api_keys = TTLCache(maxsize=1_024, ttl=API_KEY_CACHE_S)
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
        _export_profile,
        f"{PROFILES_PATH}/<customer:str>/export",
        methods=["GET"],
        name="personalize_profile_export",
        unquote=True,
    )
    app.add_route(
        put_profile,
        f"{PROFILES_PATH}/<customer:str>",
        methods=["PUT"],
        name="personalize_profile_put",
        unquote=True,
    )
    app.add_route(
        _erase_profile,
        f"{PROFILES_PATH}/<customer:str>",
        methods=["DELETE"],
        name="personalize_profile_delete",
        unquote=True,
    )
    _add_consent_routes(app, max_body_bytes)
    return app
