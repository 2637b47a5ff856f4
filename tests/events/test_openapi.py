"""The OpenAPI document of ``/personalize/*``: valid, complete, served, and in step with
the validation it describes."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.events.api import (
    CONTENT_ENCODINGS,
    MAX_EVENTS_PER_BATCH,
    OPENAPI_PATH,
    attach_event_routes,
)
from rasa_personalize.events.apikeys import ALLOWED
from rasa_personalize.events.openapi import (
    PRINTABLE_PATTERN,
    SECURITY_SCHEME,
    build_openapi_document,
    openapi_json,
)
from rasa_personalize.events.profiles import parse_profile_update
from rasa_personalize.events.validation import (
    KNOWN_FIELDS,
    MAX_EVENT_ID_LENGTH,
    MAX_LOCATION_LENGTH,
    MAX_PRICE,
    MAX_SKU_LENGTH,
    EventRejectedError,
    validate_event,
)
from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH
from rasa_personalize.plugin import install
from rasa_personalize.privacy.consent import PURPOSES, ConsentInputError, parse_consent_body
from rasa_personalize.store.models import INTERACTION_KINDS
from rasa_personalize.text import has_control_characters
from tests.conftest import TEST_SECRET

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
# Sanic's <name:type> segments, as OpenAPI writes them: {name}.
_SANIC_PARAMETER = re.compile(r"<([A-Za-z_]\w*)(?::[^>]*)?>")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_openapi_document()


@pytest.fixture
def served_app() -> Sanic[Any, Any]:
    """rasa-sdk's app with the plugin installed, as both ways of serving build it."""
    return install(create_app(ActionExecutor()))


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def event(**changes: Any) -> dict[str, Any]:
    base = {
        "event_id": "e-1",
        "customer": "jane.doe@example.com",
        "product": "SKU-1",
        "kind": "view",
        "timestamp": "2026-06-01T10:00:00Z",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    """openapi-spec-validator accepts the document as OpenAPI 3.1."""
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_registered_route_is_described_and_nothing_else(
    document: dict[str, Any], served_app: Sanic[Any, Any]
) -> None:
    """The app's /personalize/* routes and methods are exactly the document's operations:
    a route added without a description (or a description without a route) fails here."""
    registered = {
        (method, "/" + _SANIC_PARAMETER.sub(r"{\1}", route.path))
        for route in served_app.router.routes
        if route.path.startswith("personalize/")
        for method in route.methods
    }
    assert registered == operations(document)


def test_operations_name_their_scope_and_refusals(document: dict[str, Any]) -> None:
    """Each operation but the spec's own needs a known scope and documents 401 and 403;
    each with a body documents 400, 413 and 415."""
    for method, path in operations(document):
        operation = document["paths"][path][method.lower()]
        if path == OPENAPI_PATH:
            assert operation["security"] == []
            continue
        [requirement] = operation["security"]
        [scope] = requirement[SECURITY_SCHEME]
        assert scope in ALLOWED
        assert {"401", "403", "503"} <= set(operation["responses"]), (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "415"} <= set(operation["responses"]), (method, path)


def test_scopes_are_the_routes_of_the_docs(document: dict[str, Any]) -> None:
    """Reads need read, writes and exports admin, events ingest (as docs/events-api.md says)."""
    scopes = {
        (method, path): document["paths"][path][method.lower()]["security"][0][SECURITY_SCHEME][0]
        for method, path in operations(document)
        if path != OPENAPI_PATH
    }
    customer = "/personalize/profiles/{customer}"
    assert scopes == {
        ("POST", "/personalize/events"): "ingest",
        ("GET", customer): "read",
        ("PUT", customer): "admin",
        ("DELETE", customer): "admin",
        ("GET", f"{customer}/consent"): "read",
        ("PUT", f"{customer}/consent"): "admin",
        ("GET", f"{customer}/export"): "admin",
    }


def test_limits_and_enumerations_come_from_the_code(document: dict[str, Any]) -> None:
    """Field names, kinds, purposes, encodings and limits are the code's constants."""
    schemas = document["components"]["schemas"]
    fields = schemas["Event"]["properties"]
    assert set(fields) == KNOWN_FIELDS
    assert fields["kind"]["enum"] == list(INTERACTION_KINDS)
    assert fields["event_id"]["maxLength"] == MAX_EVENT_ID_LENGTH
    assert fields["customer"]["maxLength"] == MAX_EXTERNAL_ID_LENGTH
    assert fields["product"]["maxLength"] == MAX_SKU_LENGTH
    assert fields["location"]["maxLength"] == MAX_LOCATION_LENGTH
    assert fields["price"]["maximum"] == MAX_PRICE
    assert schemas["EventBatch"]["properties"]["events"]["maxItems"] == MAX_EVENTS_PER_BATCH
    assert schemas["ConsentChange"]["properties"]["grant"]["items"]["enum"] == list(PURPOSES)
    assert list(schemas["Consent"]["properties"]["purposes"]["properties"]) == list(PURPOSES)
    parameters = document["components"]["parameters"]
    assert parameters["Customer"]["schema"]["maxLength"] == MAX_EXTERNAL_ID_LENGTH
    assert parameters["ContentEncoding"]["schema"]["enum"] == list(CONTENT_ENCODINGS)


def test_printable_pattern_matches_the_control_character_check() -> None:
    """The document's "no control characters" pattern refuses exactly what the code does."""
    pattern = re.compile(PRINTABLE_PATTERN)
    for point in range(0x3000):
        character = chr(point)
        # fullmatch: ECMA-262's $ is the end of the text, Python's may precede a last \n.
        assert (pattern.fullmatch(character) is None) == has_control_characters(character), point


@pytest.mark.parametrize(
    "raw",
    [
        # a plain view
        event(),
        # search and category questions name no product
        event(kind="search", product=None),
        event(kind="category_asked", product=None, category="Shoes"),
        # numeric ids are read as text
        event(event_id=42, customer=12345),
        # feedback of -1, a rating at the top, an order line with a free sample
        event(kind="feedback", value=-1),
        event(kind="rating", value=5),
        event(kind="purchase", quantity=0, price=0),
        # epoch seconds
        event(timestamp=1_780_000_000),
        # a view without a product
        event(product=None),
        # a category question without a category
        event(kind="category_asked", product=None),
        # feedback must be 1 or -1, a rating 1 to 5
        event(kind="feedback", value=0.5),
        event(kind="feedback"),
        event(kind="rating", value=6),
        # an unknown kind or field
        event(kind="hover"),
        event(email="jane.doe@example.com"),
        # out of range numbers
        event(quantity=-1),
        event(quantity=1_000_001),
        event(price=-0.01),
        event(price=MAX_PRICE),
        event(price=MAX_PRICE * 10),
        # too long, or with a line break
        event(event_id="x" * (MAX_EVENT_ID_LENGTH + 1)),
        event(product="S" * (MAX_SKU_LENGTH + 1)),
        event(channel="web\nforged"),
        # before 2000 as epoch seconds
        event(timestamp=0),
    ],
)
def test_event_schema_agrees_with_validation(document: dict[str, Any], raw: dict[str, Any]) -> None:
    """An event fits the document's schema exactly when the validation accepts it (for
    the rules a schema can state: the sku catalogue and the clock are the server's)."""
    schema = document["components"]["schemas"]["Event"]
    fits = Draft202012Validator(schema).is_valid(raw)
    try:
        validate_event(raw, secret_key=TEST_SECRET, now=NOW)
    except EventRejectedError:
        accepted = False
    else:
        accepted = True
    assert fits == accepted


def in_document(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator of one component schema, its references resolved in the document."""
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    )


@pytest.mark.parametrize(
    "body",
    [
        # each part alone, and clearing a field
        {"loyalty_tier": "gold"},
        {"demographics": {"age": 149, "city": None}},
        {"attributes": {"shoe_size": 42, "notes": ["runs", "hikes"]}},
        # nothing at all changes nothing, and is fine
        {},
        # an unknown tier, an age out of range, a float age, an unknown field
        {"loyalty_tier": "diamond"},
        {"demographics": {"age": 150}},
        {"demographics": {"age": 30.5}},
        {"demographics": {"shoe": 42}},
        {"email": "jane.doe@example.com"},
        # too long a city
        {"demographics": {"city": "c" * 129}},
    ],
)
def test_profile_update_schema_agrees_with_the_model(
    document: dict[str, Any], body: dict[str, Any]
) -> None:
    """The profile update's schema, generated from its model, accepts what the model does."""
    fits = in_document(document, "ProfileUpdate").is_valid(body)
    try:
        parse_profile_update(body)
    except InvalidInputError:
        accepted = False
    else:
        accepted = True
    assert fits == accepted


@pytest.mark.parametrize(
    "body",
    [
        # grant, deny, both with a policy version
        {"grant": ["tracking"]},
        {"deny": ["marketing", "personalization"]},
        {"grant": ["tracking"], "deny": ["marketing"], "policy_version": "2026-01"},
        # nothing to change, an unknown purpose or field, a policy version too long
        {},
        {"grant": [], "deny": None},
        {"grant": ["newsletter"]},
        {"grant": ["tracking"], "reason": "asked"},
        {"grant": ["tracking"], "policy_version": "v" * 33},
    ],
)
def test_consent_schema_agrees_with_the_parser(
    document: dict[str, Any], body: dict[str, Any]
) -> None:
    """The consent change's schema accepts what ``parse_consent_body`` does."""
    fits = in_document(document, "ConsentChange").is_valid(body)
    try:
        parse_consent_body(body)
    except ConsentInputError:
        accepted = False
    else:
        accepted = True
    assert fits == accepted


async def test_served_document_is_public_json() -> None:
    """GET /personalize/openapi.json answers the document without a key, as JSON."""
    app = attach_event_routes(create_app(ActionExecutor()))
    _, response = await app.asgi_client.get(OPENAPI_PATH)
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json == json.loads(json.dumps(build_openapi_document()))


def test_document_is_built_once() -> None:
    """The served bytes are built on first use and kept."""
    assert openapi_json() is openapi_json()
