"""The OpenAPI 3.1 document of the ``/personalize/*`` HTTP API, served at
``GET /personalize/openapi.json``.

Every limit, kind, purpose and scope in it is read from the constant the code enforces
(validation, profiles, consent, keys, export), and the profile update's schema is
generated from its pydantic model, so the document cannot drift from the handlers; a test
checks that every route the app registers is described here, and a generated-input run
(``tests/events/test_api_fuzz.py``) checks every answer against it.

The document is built on the first request for it and then served from memory. This
module is imported only then (the route imports it lazily), so a server that is never
asked for its spec never loads it.
"""

from __future__ import annotations

import functools
from typing import Any, Final, get_args

import orjson

from rasa_personalize.events.api import (
    CONTENT_ENCODINGS,
    DEFAULT_MAX_BODY_BYTES,
    EVENTS_PATH,
    MAX_EVENTS_PER_BATCH,
    OPENAPI_PATH,
    PROFILES_PATH,
)
from rasa_personalize.events.apikeys import ALLOWED, MAX_KEY_LENGTH
from rasa_personalize.events.profiles import MAX_ATTRIBUTES_BYTES, ProfileUpdate
from rasa_personalize.events.validation import (
    EARLIEST_TIME,
    MAX_CATEGORY_LENGTH,
    MAX_CLOCK_SKEW,
    MAX_CONTEXT_LENGTH,
    MAX_EVENT_ID_LENGTH,
    MAX_LOCATION_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_SKU_LENGTH,
    PRODUCTLESS_KINDS,
)
from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH
from rasa_personalize.json_input import MAX_JSON_DEPTH
from rasa_personalize.privacy.consent import (
    HISTORY_SHOWN,
    PURPOSES,
    ConsentSource,
    PurposeState,
)
from rasa_personalize.privacy.erasure import RedisStatus
from rasa_personalize.privacy.export import EXPORT_FORMAT, EXPORT_VERSION, ContactsStatus
from rasa_personalize.store.consent import MAX_POLICY_VERSION_LENGTH
from rasa_personalize.store.erasure import ERASED_TABLES
from rasa_personalize.store.models import CONSENT_DECISIONS, INTERACTION_KINDS
from rasa_personalize.store.repository import MAX_INTENT_COUNTS

OPENAPI_VERSION: Final = "3.1.0"
API_VERSION: Final = "1"
SECURITY_SCHEME: Final = "apiKey"
# Ids and labels hold no control character (rasa_personalize.text.has_control_characters,
# line breaks included); a test keeps the two in step. ECMA-262, as JSON Schema wants.
PRINTABLE_PATTERN: Final = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
CUSTOMER_PARAMETER: Final = "customer"
_CUSTOMER_PATH: Final = f"{PROFILES_PATH}/{{{CUSTOMER_PARAMETER}}}"
_SCHEMAS: Final = "#/components/schemas/"
_RESPONSES: Final = "#/components/responses/"
_JSON: Final = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"{_SCHEMAS}{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _time(*, nullable: bool = False) -> dict[str, Any]:
    schema = {"type": "string", "format": "date-time"}
    return _nullable(schema) if nullable else schema


def _text(*, nullable: bool = False) -> dict[str, Any]:
    return {"type": ["string", "null"]} if nullable else {"type": "string"}


def _object(properties: dict[str, Any], *, description: str = "") -> dict[str, Any]:
    """A closed object whose every property is always present (as our answers are)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _identifier(max_length: int, description: str, *, nullable: bool = False) -> dict[str, Any]:
    """An id or label of an event: text (or a whole number, read as its decimal text)."""
    return {
        "type": ["string", "integer", "null"] if nullable else ["string", "integer"],
        "minLength": 1,
        "maxLength": max_length,
        "pattern": PRINTABLE_PATTERN,
        "description": f"{description} Surrounding spaces are trimmed before the length "
        "check; no control characters or line breaks.",
    }


def _event_schema() -> dict[str, Any]:
    """One event as :func:`rasa_personalize.events.validation.validate_event` checks it."""
    productless = sorted(PRODUCTLESS_KINDS)
    earliest = int(EARLIEST_TIME.timestamp())
    skew_minutes = int(MAX_CLOCK_SKEW.total_seconds() // 60)
    properties: dict[str, Any] = {
        "event_id": _identifier(
            MAX_EVENT_ID_LENGTH, "Your id of the event; a re-sent id is stored once."
        ),
        "customer": _identifier(
            MAX_EXTERNAL_ID_LENGTH,
            "Your customer id, stored only as its keyed hash and never quoted back.",
        ),
        "product": _identifier(
            MAX_SKU_LENGTH,
            f"The sku; it must be in the catalogue. Not needed by {', '.join(productless)}.",
            nullable=True,
        ),
        "kind": {"type": "string", "enum": list(INTERACTION_KINDS)},
        "timestamp": {
            "description": "ISO 8601 with a zone (2026-06-01T12:00:00Z), or epoch seconds; "
            f"from {EARLIEST_TIME.date().isoformat()} to {skew_minutes} minutes ahead of the "
            "server's clock.",
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "minimum": earliest},
            ],
        },
        "channel": _identifier(MAX_CONTEXT_LENGTH, "Where it happened.", nullable=True),
        "device": _identifier(MAX_CONTEXT_LENGTH, "On what device.", nullable=True),
        "location": _identifier(
            MAX_LOCATION_LENGTH, "Where the customer was; never quoted back.", nullable=True
        ),
        "category": _identifier(
            MAX_CATEGORY_LENGTH,
            "A category (category_asked needs one); kept lower-cased.",
            nullable=True,
        ),
        "value": {
            "type": ["number", "null"],
            "description": "feedback: 1 or -1; rating: 1 to 5; session_end: the session's "
            "length in seconds (not negative).",
        },
        "quantity": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": MAX_QUANTITY,
            "description": "Items of the order line (default 1).",
        },
        "price": {"type": ["number", "null"], "minimum": 0, "maximum": MAX_PRICE},
    }

    def when_kind(kinds: list[str], then: dict[str, Any]) -> dict[str, Any]:
        return {"if": {"required": ["kind"], "properties": {"kind": {"enum": kinds}}}, "then": then}

    product_kinds = [kind for kind in INTERACTION_KINDS if kind not in PRODUCTLESS_KINDS]
    return {
        "type": "object",
        "description": "One interaction. Each event of a batch is checked on its own: an "
        "invalid one comes back in `rejected` (field and reason, never the customer or "
        "location) and does not fail the request.",
        "properties": properties,
        "required": ["event_id", "customer", "kind", "timestamp"],
        "additionalProperties": False,
        "allOf": [
            when_kind(
                product_kinds,
                {"required": ["product"], "properties": {"product": {"not": {"type": "null"}}}},
            ),
            when_kind(
                ["category_asked"],
                {"required": ["category"], "properties": {"category": {"not": {"type": "null"}}}},
            ),
            when_kind(
                ["feedback"],
                {"required": ["value"], "properties": {"value": {"enum": [-1, 1]}}},
            ),
            when_kind(
                ["session_end"],
                {"properties": {"value": {"type": ["number", "null"], "minimum": 0}}},
            ),
            when_kind(
                ["rating"],
                {
                    "required": ["value"],
                    "properties": {"value": {"type": "number", "minimum": 1, "maximum": 5}},
                },
            ),
        ],
    }


def _ingest_schemas() -> dict[str, Any]:
    rejection = _object(
        {
            "index": {"type": "integer", "minimum": 0},
            "event_id": {
                **_text(nullable=True),
                "description": "The event's id when it had a usable one.",
            },
            "field": {"type": "string"},
            "reason": {"type": "string"},
        },
        description="Why the event at `index` of the batch was refused.",
    )
    event_ids = {"type": "array", "items": {"type": "string"}}
    return {
        "Event": _event_schema(),
        "EventBatch": {
            "type": "object",
            "properties": {
                "events": {
                    "type": "array",
                    "maxItems": MAX_EVENTS_PER_BATCH,
                    "items": _ref("Event"),
                    "description": f"At most {MAX_EVENTS_PER_BATCH} events (more: 413).",
                }
            },
            "required": ["events"],
        },
        "Rejection": rejection,
        "IngestResult": _object(
            {
                "accepted": {**event_ids, "description": "Event ids stored (or queued)."},
                "duplicates": {**event_ids, "description": "Event ids stored before."},
                "rejected": {"type": "array", "items": _ref("Rejection")},
                "suppressed": {
                    **event_ids,
                    "description": "Valid events not stored: no tracking consent, or dated "
                    "before the customer's erasure.",
                },
                "queued": {
                    "type": "boolean",
                    "description": "True when the events went to the Redis Stream, which "
                    "`personalize worker` stores.",
                },
            }
        ),
    }


def _profile_schemas() -> dict[str, Any]:
    update = ProfileUpdate.model_json_schema(ref_template=_SCHEMAS + "{model}")
    nested = update.pop("$defs", {})
    update["description"] = (
        "Every part optional; a demographics field left out stays, null clears it. "
        f"`attributes` replaces the stored document and must encode to at most "
        f"{MAX_ATTRIBUTES_BYTES} bytes of JSON without control characters (tab and line "
        "breaks are fine). Text fields hold no control characters."
    )
    demographics = _object(
        {
            "age": {"type": ["integer", "null"]},
            "gender": _text(nullable=True),
            "country": _text(nullable=True),
            "city": _text(nullable=True),
        }
    )
    metrics = _object(
        {
            "interaction_count": {"type": "integer", "minimum": 0},
            "view_count": {"type": "integer", "minimum": 0},
            "purchase_count": {"type": "integer", "minimum": 0},
            "total_spent": {"type": "number"},
            "first_seen_at": _time(nullable=True),
            "last_seen_at": _time(nullable=True),
            "last_purchase_at": _time(nullable=True),
            "discounted_purchase_share": {"type": "number", "minimum": 0, "maximum": 1},
            "favorite_category": _text(nullable=True),
            "category_affinity": {"type": "object", "additionalProperties": {"type": "number"}},
            "chat_message_count": {"type": "integer", "minimum": 0},
            "intent_counts": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 1},
                "description": "The customer's chat messages by intent (the category of "
                f"their chat_message events), the {MAX_INTENT_COUNTS} most frequent.",
            },
            "session_count": {"type": "integer", "minimum": 0},
            "average_session_seconds": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "Mean length of the sessions whose end was recorded "
                "(session_end events); null when none was.",
            },
        }
    )
    # Present once `personalize propensity train` has scored the customer: per target.
    metrics["properties"]["propensity"] = {
        "type": "object",
        "additionalProperties": _object(
            {
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "band": {"enum": ["low", "medium", "high"]},
                "model_version": {"type": "string"},
                "scored_at": _time(nullable=True),
            }
        ),
    }
    segment = _object(
        {
            "segment": {"type": "string"},
            "method": {"type": "string"},
            "model_version": {"type": "string"},
            "score": {"type": ["number", "null"]},
            "assigned_at": _time(),
        }
    )
    return {
        **nested,
        "ProfileUpdate": update,
        "Demographics": demographics,
        "ProfileMetrics": metrics,
        "Segment": segment,
        "Profile": _object(
            {
                "loyalty_tier": {"type": "string"},
                "created_at": _time(),
                "demographics": _ref("Demographics"),
                "attributes": {"type": "object"},
                "metrics": _ref("ProfileMetrics"),
                "tags": {
                    "type": "array",
                    "items": _object(
                        {
                            "tag": {"type": "string"},
                            "source": {"type": "string"},
                            "weight": {"type": "number"},
                        }
                    ),
                },
                "segment": _nullable(_ref("Segment")),
                "profile_version": {"type": "integer"},
            },
            description="A customer's profile; it never holds the customer's id.",
        ),
    }


def _consent_history_entry() -> dict[str, Any]:
    return _object(
        {
            # An erasure leaves one "erased" row without purpose, source or policy.
            "purpose": {"anyOf": [{"enum": list(PURPOSES)}, {"type": "null"}]},
            "decision": {"enum": list(CONSENT_DECISIONS)},
            "source": {"anyOf": [{"enum": list(get_args(ConsentSource))}, {"type": "null"}]},
            "policy_version": _text(nullable=True),
            "recorded_at": _time(nullable=True),
        }
    )


def _consent_schemas() -> dict[str, Any]:
    purpose_list = {
        "type": ["array", "null"],
        "items": {"type": "string", "enum": list(PURPOSES)},
        "description": "Purposes, matched without regard to case or surrounding spaces.",
    }
    purpose = _object(
        {
            "state": {
                "enum": list(get_args(PurposeState)),
                "description": "The customer's answer, or `default` when they gave none.",
            },
            "effective": {"type": "boolean", "description": "Whether the purpose is allowed."},
            "source": {"anyOf": [{"enum": list(get_args(ConsentSource))}, {"type": "null"}]},
            "policy_version": _text(nullable=True),
            "updated_at": _time(nullable=True),
        }
    )
    return {
        "ConsentChange": {
            "type": "object",
            "description": "Purposes to grant and to deny (at least one in all; none in "
            "both), and the policy version they were given under.",
            "properties": {
                "grant": purpose_list,
                "deny": purpose_list,
                "policy_version": {
                    "type": ["string", "null"],
                    "maxLength": MAX_POLICY_VERSION_LENGTH,
                    "pattern": PRINTABLE_PATTERN,
                },
            },
            "additionalProperties": False,
            "anyOf": [
                {"required": ["grant"], "properties": {"grant": {"type": "array", "minItems": 1}}},
                {"required": ["deny"], "properties": {"deny": {"type": "array", "minItems": 1}}},
            ],
        },
        "PurposeConsent": purpose,
        "ConsentHistoryEntry": _consent_history_entry(),
        "Consent": _object(
            {
                "customer": {
                    "type": "string",
                    "description": "The id as the caller gave it (trimmed).",
                },
                "purposes": _object({name: _ref("PurposeConsent") for name in PURPOSES}),
                "history": {
                    "type": "array",
                    "maxItems": HISTORY_SHOWN,
                    "items": _ref("ConsentHistoryEntry"),
                    "description": f"The newest {HISTORY_SHOWN} changes.",
                },
            }
        ),
    }


def _export_schema() -> dict[str, Any]:
    """The document of :mod:`rasa_personalize.privacy.export` (``docs/privacy.md``)."""
    key = {"type": "string", "description": "A keyed hash, never the external id."}
    stored_state = _object(
        {
            "purpose": {"enum": list(PURPOSES)},
            "granted": {"type": "boolean"},
            "source": {"enum": list(get_args(ConsentSource))},
            "policy_version": _text(nullable=True),
            "updated_at": _time(),
        }
    )
    interaction = _object(
        {
            "sku": _text(nullable=True),
            "kind": {"enum": list(INTERACTION_KINDS)},
            "value": {"type": ["number", "null"]},
            "quantity": {"type": "integer"},
            "price": {"type": ["number", "null"]},
            "occurred_at": _time(),
            "channel": _text(nullable=True),
            "device": _text(nullable=True),
            "location": _text(nullable=True),
            "category": _text(nullable=True),
        }
    )
    return _object(
        {
            "format": {"const": EXPORT_FORMAT},
            "version": {"const": EXPORT_VERSION},
            "exported_at": _time(),
            "customer": _object({"customer_key": key, "created_at": _time()}),
            "profile": _object(
                {
                    "loyalty_tier": {"type": "string"},
                    "demographics": _ref("Demographics"),
                    "attributes": {"type": "object"},
                    "metrics": {"type": "object"},
                    "profile_version": {"type": ["integer", "null"]},
                    "updated_at": _time(nullable=True),
                }
            ),
            "contacts": _object(
                {
                    "status": {"enum": list(get_args(ContactsStatus))},
                    "name": _text(nullable=True),
                    "email": _text(nullable=True),
                    "phone": _text(nullable=True),
                    "problems": {"type": "array", "items": {"type": "string"}},
                }
            ),
            "consent": {
                "type": "array",
                "items": _object(
                    {
                        "customer_key": key,
                        "states": {"type": "array", "items": stored_state},
                        "history": {"type": "array", "items": _ref("ConsentHistoryEntry")},
                    }
                ),
            },
            "tags": {
                "type": "array",
                "items": _object(
                    {
                        "tag": {"type": "string"},
                        "source": {"type": "string"},
                        "weight": {"type": "number"},
                        "updated_at": _time(),
                    }
                ),
            },
            "segments": {"type": "array", "items": _ref("Segment")},
            "recommendations": _nullable(
                _object(
                    {
                        "model_version": {"type": "string"},
                        "computed_at": _time(),
                        "items": {
                            "type": "array",
                            "items": _object(
                                {"sku": {"type": "string"}, "score": {"type": "number"}}
                            ),
                        },
                    }
                )
            ),
            "aliases": {
                "type": "array",
                "items": _object(
                    {"customer_key": key, "match": {"type": "string"}, "merged_at": _time()}
                ),
            },
            "experiments": {
                "type": "array",
                "items": _object(
                    {
                        "experiment": {"type": "string"},
                        "arm": {"type": "string"},
                        "customer_key": key,
                        "exposed_at": _time(),
                    }
                ),
            },
            "propensity": {
                "type": "array",
                "items": _object(
                    {
                        "target": {"type": "string"},
                        "score": {"type": "number"},
                        "model_version": {"type": "string"},
                        "scored_at": _time(),
                    }
                ),
            },
            "offers": {
                "type": "array",
                "items": _object(
                    {
                        "offer": {"type": "string"},
                        "segment": {"type": "string"},
                        "customer_key": key,
                        "shown_at": _time(),
                    }
                ),
            },
            "interaction_count": {"type": "integer", "minimum": 0},
            "interactions": {"type": "array", "items": interaction},
        },
        description=f"Everything held about one customer ({EXPORT_FORMAT} version "
        f"{EXPORT_VERSION}).",
    )


def _erasure_schemas() -> dict[str, Any]:
    counts: dict[str, Any] = {
        "keys": {"type": "integer", "minimum": 0},
        "tables": _object({table: {"type": "integer", "minimum": 0} for table in ERASED_TABLES}),
        "tombstones": {"type": "integer", "minimum": 0},
        "redis_keys": {"type": "integer", "minimum": 0},
        "stream_events": {"type": "integer", "minimum": 0},
        "artifacts": {"type": "integer", "minimum": 0},
        "redis": {"enum": list(get_args(RedisStatus))},
        "failed": {"type": "array", "items": {"type": "string"}},
    }
    receipt: dict[str, Any] = {
        "customer_key": {"type": "string", "description": "A keyed hash, never the id."},
        "erased_at": _time(),
        "found": {"type": "boolean"},
        "outcome": {"enum": ["erased", "not_found", "incomplete"]},
        "sql_rows": {"type": "integer", "minimum": 0},
        **counts,
    }
    return {
        "ErasureReceipt": _object(receipt, description="What was erased, per store."),
        "IncompleteErasure": _object(
            {"error": {"type": "string"}, **receipt},
            description="The SQL rows are gone; Redis or the models were not reached: erase again.",
        ),
    }


def _responses() -> dict[str, Any]:
    def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": description,
            "content": {_JSON: {"schema": _ref("Error")}},
        }
        if headers:
            response["headers"] = headers
        return response

    return {
        "BadRequest": error(
            "Malformed JSON (or nested deeper than "
            f"{MAX_JSON_DEPTH} levels), a body that is not what the route takes, a "
            "customer id that is not 1 to "
            f"{MAX_EXTERNAL_ID_LENGTH} printable characters, or a gzip/deflate body that "
            "does not inflate."
        ),
        "Unauthorized": error(
            "No key, an unknown or revoked key, or not the Bearer scheme.",
            {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
        ),
        "Forbidden": error("The key's scope does not allow the route."),
        "NotFound": error("No such customer."),
        "PayloadTooLarge": error(
            f"The body is over the limit (by default {DEFAULT_MAX_BODY_BYTES} bytes, also "
            f"after inflating), or a batch of more than {MAX_EVENTS_PER_BATCH} events."
        ),
        "UnsupportedEncoding": error(
            f"A Content-Encoding other than {', '.join(CONTENT_ENCODINGS)}."
        ),
        "Unavailable": error(
            "The store is down or personalization is not configured; retry after "
            "`Retry-After` seconds (batches are idempotent by event id).",
            {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 0}}},
        ),
    }


def _operation(
    summary: str,
    scope: str | None,
    responses: dict[str, Any],
    *,
    body: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "tags": ["personalize"]}
    if description:
        operation["description"] = description
    operation["security"] = [{SECURITY_SCHEME: [scope]}] if scope else []
    if body is not None:
        operation["parameters"] = [{"$ref": "#/components/parameters/ContentEncoding"}]
        operation["requestBody"] = {"required": True, "content": {_JSON: {"schema": _ref(body)}}}
    errors = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden"} if scope else {}
    errors["503"] = "Unavailable"
    if body is not None:
        errors |= {"413": "PayloadTooLarge", "415": "UnsupportedEncoding"}
    merged = {status: {"$ref": _RESPONSES + name} for status, name in errors.items()}
    merged.update(responses)
    operation["responses"] = dict(sorted(merged.items()))
    return operation


def _ok(description: str, schema: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {_JSON: {"schema": _ref(schema)}}}}


def _paths() -> dict[str, Any]:
    not_found = {"404": {"$ref": _RESPONSES + "NotFound"}}
    profile = {
        "parameters": [{"$ref": "#/components/parameters/Customer"}],
        "get": _operation(
            "Read a profile",
            "read",
            {**_ok("The profile.", "Profile"), **not_found},
            description="Audited with the key's id and label.",
        ),
        "put": _operation(
            "Create or update a profile",
            "admin",
            {
                **_ok("The updated profile.", "Profile"),
                **_ok("The customer was created.", "Profile", "201"),
                **not_found,
            },
            body="ProfileUpdate",
            description="Audited with the names of the fields set, never their values.",
        ),
        "delete": _operation(
            "Erase the customer everywhere",
            "admin",
            {
                **_ok(
                    "The receipt (also when nothing was held: `found` is false).", "ErasureReceipt"
                ),
                "503": {
                    "description": "Erasure incomplete (the receipt says what was not "
                    "reached), or the store is down: erase again later.",
                    "headers": {"Retry-After": {"required": True, "schema": {"type": "integer"}}},
                    "content": {
                        _JSON: {"schema": {"anyOf": [_ref("IncompleteErasure"), _ref("Error")]}}
                    },
                },
            },
        ),
    }
    consent = {
        "parameters": [{"$ref": "#/components/parameters/Customer"}],
        "get": _operation(
            "Consent per purpose, with its history",
            "read",
            _ok("The consent document.", "Consent"),
            description="A visitor the store does not know yet has consent too (the "
            "configured default).",
        ),
        "put": _operation(
            "Grant or deny purposes",
            "admin",
            _ok("The consent document after the change.", "Consent"),
            body="ConsentChange",
        ),
    }
    export = {
        "parameters": [{"$ref": "#/components/parameters/Customer"}],
        "get": _operation(
            "Everything held about the customer, as one JSON document",
            "admin",
            {
                "200": {
                    "description": "The export document, streamed.",
                    "headers": {
                        "Content-Disposition": {"required": True, "schema": {"type": "string"}}
                    },
                    "content": {_JSON: {"schema": _ref("Export")}},
                },
                **not_found,
            },
            description="Audited before any byte is sent.",
        ),
    }
    return {
        EVENTS_PATH: {
            "post": _operation(
                "Store a batch of interaction events",
                "ingest",
                _ok("What became of each event.", "IngestResult"),
                body="EventBatch",
            )
        },
        _CUSTOMER_PATH: profile,
        f"{_CUSTOMER_PATH}/consent": consent,
        f"{_CUSTOMER_PATH}/export": export,
        OPENAPI_PATH: {
            "get": _operation(
                "This document",
                None,
                {"200": {"description": "The OpenAPI document.", "content": {_JSON: {}}}},
                description="Public: it describes the API and holds no data.",
            )
        },
    }


def build_openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the ``/personalize/*`` routes, built anew."""
    scopes = ", ".join(f"`{scope}` ({', '.join(sorted(ALLOWED[scope]))})" for scope in ALLOWED)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "rasa-personalize API",
            "version": API_VERSION,
            "description": "Events in, profiles, consent and exports out, on the action "
            "server's own port. Every answer to a bad request is a short JSON "
            '`{"error": ...}` that quotes nothing the caller sent about a person.',
        },
        "tags": [{"name": "personalize"}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A key from `personalize apikey create` (at most "
                    f"{MAX_KEY_LENGTH} characters), sent as `Authorization: Bearer <key>`. "
                    f"Each operation names the scope it needs; a scope allows: {scopes}.",
                }
            },
            "parameters": {
                "Customer": {
                    "name": CUSTOMER_PARAMETER,
                    "in": "path",
                    "required": True,
                    "description": "Your customer id, percent-encoded (an e-mail address "
                    "is fine). Surrounding spaces are trimmed; never quoted back in errors.",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_EXTERNAL_ID_LENGTH,
                        "pattern": PRINTABLE_PATTERN,
                    },
                },
                "ContentEncoding": {
                    "name": "Content-Encoding",
                    "in": "header",
                    "required": False,
                    "description": "A compressed body; the size limit holds after inflating.",
                    "schema": {"type": "string", "enum": list(CONTENT_ENCODINGS)},
                },
            },
            "responses": _responses(),
            "schemas": {
                "Error": _object({"error": {"type": "string"}}),
                **_ingest_schemas(),
                **_profile_schemas(),
                **_consent_schemas(),
                "Export": _export_schema(),
                **_erasure_schemas(),
            },
        },
    }


@functools.cache
def openapi_json() -> bytes:
    """The document as JSON bytes: built on first use, then served from memory."""
    return orjson.dumps(build_openapi_document())
