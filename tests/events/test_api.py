"""The events and profiles API through rasa-sdk's real Sanic app."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic
from sqlalchemy import func, select

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.events.api import API_KEY_CACHE_S, MAX_EVENTS_PER_BATCH, attach_event_routes
from rasa_personalize.events.apikeys import create_api_key, revoke_api_key
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.factories import add_product

PRIVATE = "jane.doe@example.com"
MAX_BODY = 32 * 1024


def event(event_id: str, **changes: Any) -> dict[str, Any]:
    """A valid event of PRIVATE viewing SKU-1."""
    base = {
        "event_id": event_id,
        "customer": PRIVATE,
        "product": "SKU-1",
        "kind": "view",
        "timestamp": "2026-01-01T10:00:00Z",
    }
    base.update(changes)
    return base


@pytest.fixture
async def api(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Sanic[Any, Any], SqlStore, dict[str, str]]]:
    """The app over a migrated store with one product, plus a key of each scope."""
    # Should a service be created from the environment, it must reach this store too.
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    store = await migrated_store(database_url)
    keys: dict[str, str] = {}
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        for scope in ("ingest", "read", "admin"):
            _, keys[scope] = await create_api_key(session, scope, label=f"test {scope}")
        record, keys["revoked"] = await create_api_key(session, "admin")
        await revoke_api_key(session, record.id)
    install_service(PersonalizationService(make_settings(database_url), store))
    # Without attach_extensions: its after_server_stop closes the service, and the test
    # client starts and stops the server around every request.
    app = attach_event_routes(create_app(ActionExecutor()), max_body_bytes=MAX_BODY)
    yield app, store, keys
    await shutdown_service()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def profile_path(customer: str = PRIVATE) -> str:
    return f"/personalize/profiles/{quote(customer, safe='')}"


async def test_events_round_trip(api: Any) -> None:
    """Accepted, duplicate and rejected events are listed; a re-send stores nothing new."""
    app, store, keys = api
    body = {"events": [event("a"), event("b", kind="hover"), event("c", product="GHOST")]}
    _, response = await app.asgi_client.post(
        "/personalize/events", json=body, headers=auth(keys["ingest"])
    )
    assert response.status == 200
    assert response.json["accepted"] == ["a"]
    assert response.json["duplicates"] == []
    assert [(r["index"], r["event_id"], r["field"]) for r in response.json["rejected"]] == [
        (1, "b", "kind"),
        (2, "c", "product"),
    ]
    _, again = await app.asgi_client.post(
        "/personalize/events", json=body, headers=auth(keys["admin"])
    )
    assert (again.status, again.json["accepted"], again.json["duplicates"]) == (200, [], ["a"])
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Interaction)) == 1


@pytest.mark.parametrize(
    ("method", "path", "key", "status"),
    [
        # no Authorization header
        ("post", "/personalize/events", None, 401),
        # a key nobody issued
        ("post", "/personalize/events", "made-up", 401),
        # a revoked key
        ("get", profile_path(), "revoked", 401),
        # read may not ingest
        ("post", "/personalize/events", "read", 403),
        # ingest may not read profiles
        ("get", profile_path(), "ingest", 403),
        # read may not write profiles
        ("put", profile_path(), "read", 403),
        # ingest may not write profiles
        ("put", profile_path(), "ingest", 403),
    ],
)
async def test_keys_and_scopes(
    api: Any, method: str, path: str, key: str | None, status: int
) -> None:
    """Missing or unknown keys get 401, keys of the wrong scope 403, before the body is read."""
    app, _, keys = api
    headers = {} if key is None else auth(keys.get(key, key))
    body = {"events": [event("a")]} if path.endswith("events") else {"loyalty_tier": "gold"}
    send = getattr(app.asgi_client, method)
    if method == "get":
        _, response = await send(path, headers=headers)
    else:
        _, response = await send(path, json=body, headers=headers)
    assert response.status == status
    assert PRIVATE not in response.text
    assert set(response.json) == {"error"}


async def test_basic_scheme_is_not_a_bearer_key(api: Any) -> None:
    """Only the Bearer scheme carries a key."""
    app, _, keys = api
    _, response = await app.asgi_client.get(
        profile_path(), headers={"Authorization": f"Basic {keys['admin']}"}
    )
    assert response.status == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        # not JSON
        (b"{not json", {}, 400, "not valid JSON"),
        # JSON without an events list
        (json.dumps({"event": []}).encode(), {}, 400, '{"events": [...]}'),
        # raw body over the limit
        (json.dumps({"events": [event("a", location="x" * MAX_BODY)]}).encode(), {}, 413, "larger"),
        # small gzip body that inflates past the limit
        (gzip.compress(b" " * (MAX_BODY * 4)), {"Content-Encoding": "gzip"}, 413, "inflated"),
        # small deflate body that inflates past the limit
        (zlib.compress(b" " * (MAX_BODY * 4)), {"Content-Encoding": "deflate"}, 413, "inflated"),
        # corrupt gzip
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "gzip"),
        # unknown encoding
        (b"{}", {"Content-Encoding": "br"}, 415, "encoding"),
    ],
)
async def test_bad_bodies(
    api: Any, body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    """Malformed, oversized and badly encoded bodies get short errors."""
    app, _, keys = api
    _, response = await app.asgi_client.post(
        "/personalize/events", content=body, headers={**auth(keys["ingest"]), **headers}
    )
    assert response.status == status
    assert message in response.json["error"]
    assert PRIVATE not in response.text


async def test_compressed_batch_is_accepted(api: Any) -> None:
    """A gzip body within the limit is inflated and ingested."""
    app, _, keys = api
    body = gzip.compress(json.dumps({"events": [event("z")]}).encode())
    _, response = await app.asgi_client.post(
        "/personalize/events",
        content=body,
        headers={**auth(keys["ingest"]), "Content-Encoding": "gzip"},
    )
    assert (response.status, response.json["accepted"]) == (200, ["z"])


async def test_too_many_events(api: Any) -> None:
    """More events than a batch may hold are refused whole."""
    app, _, keys = api
    body = {"events": [{} for _ in range(MAX_EVENTS_PER_BATCH + 1)]}
    _, response = await app.asgi_client.post(
        "/personalize/events", json=body, headers=auth(keys["ingest"])
    )
    assert response.status == 413


async def test_no_customer_value_in_rejections(api: Any) -> None:
    """Rejections name the customer field but never repeat its value."""
    app, _, keys = api
    body = {"events": [event("a", customer=PRIVATE * 30), event("b", location=PRIVATE * 10)]}
    _, response = await app.asgi_client.post(
        "/personalize/events", json=body, headers=auth(keys["ingest"])
    )
    assert [r["field"] for r in response.json["rejected"]] == ["customer", "location"]
    assert PRIVATE not in response.text


async def test_profile_put_then_get(api: Any) -> None:
    """PUT creates the customer (201), a second PUT updates (200), GET reads it back."""
    app, _, keys = api
    _, missing = await app.asgi_client.get(profile_path(), headers=auth(keys["read"]))
    assert (missing.status, missing.json) == (404, {"error": "no such customer"})
    change = {
        "loyalty_tier": "gold",
        "demographics": {"age": 41, "country": "DE"},
        "attributes": {"newsletter": True},
    }
    _, created = await app.asgi_client.put(profile_path(), json=change, headers=auth(keys["admin"]))
    assert created.status == 201
    assert created.json["loyalty_tier"] == "gold"
    _, updated = await app.asgi_client.put(
        profile_path(), json={"demographics": {"city": "Berlin"}}, headers=auth(keys["admin"])
    )
    assert updated.status == 200
    _, read = await app.asgi_client.get(profile_path(), headers=auth(keys["read"]))
    assert read.status == 200
    profile = read.json
    assert profile["loyalty_tier"] == "gold"
    assert profile["demographics"] == {"age": 41, "gender": None, "country": "DE", "city": "Berlin"}
    assert profile["attributes"] == {"newsletter": True}
    assert profile["profile_version"] == 2
    assert profile["segment"] is None
    assert PRIVATE not in read.text


async def test_profile_reflects_ingested_events(api: Any) -> None:
    """Metrics in the profile include events just ingested."""
    app, _, keys = api
    body = {"events": [event("a"), event("b", kind="purchase", price=100.0)]}
    _, posted = await app.asgi_client.post(
        "/personalize/events", json=body, headers=auth(keys["ingest"])
    )
    assert posted.json["accepted"] == ["a", "b"], posted.json
    _, read = await app.asgi_client.get(profile_path(), headers=auth(keys["admin"]))
    assert read.status == 200, read.json
    metrics = read.json["metrics"]
    assert (metrics["interaction_count"], metrics["purchase_count"], metrics["total_spent"]) == (
        2,
        1,
        100.0,
    )
    assert metrics["favorite_category"] == "shoes"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # tier outside the contract's values
        ({"loyalty_tier": "diamond"}, "loyalty_tier"),
        # age out of range
        ({"demographics": {"age": 200}}, "demographics.age"),
        # age as text (strict: no coercion)
        ({"demographics": {"age": "41"}}, "demographics.age"),
        # unknown demographic field, which may hold personal data
        ({"demographics": {"email": PRIVATE}}, "demographics.email"),
        # unknown top-level field
        ({"name": PRIVATE}, "name"),
        # attributes not an object
        ({"attributes": [PRIVATE]}, "attributes"),
        # not an object at all
        ([PRIVATE], "body"),
        # NUL in a demographic (refused by PostgreSQL)
        ({"demographics": {"city": "Ber\x00lin"}}, "demographics.city"),
        # NUL deep inside the attributes document (jsonb refuses it)
        ({"attributes": {"notes": [{"text": "a\x00b"}]}}, "attributes"),
    ],
)
async def test_profile_put_validation(api: Any, body: Any, field: str) -> None:
    """A bad PUT body is refused with the field named and nothing quoted."""
    app, _, keys = api
    _, response = await app.asgi_client.put(profile_path(), json=body, headers=auth(keys["admin"]))
    assert response.status == 400
    assert field in response.json["error"]
    assert PRIVATE not in response.text
    _, read = await app.asgi_client.get(profile_path(), headers=auth(keys["admin"]))
    assert read.status == 404  # nothing was created


async def test_a_revoked_key_stops_working_once_its_cached_lookup_expires(api: Any) -> None:
    """Keys are looked up once per API_KEY_CACHE_S; after that a revocation holds."""
    app, store, _ = api
    async with store.sessions.begin() as session:
        record, key = await create_api_key(session, "read", label="soon revoked")
    _, first = await app.asgi_client.get(profile_path(), headers=auth(key))
    assert first.status == 404  # authorized: the customer just does not exist
    async with store.sessions.begin() as session:
        await revoke_api_key(session, record.id)

    _, cached = await app.asgi_client.get(profile_path(), headers=auth(key))
    app.ctx.personalize_api_keys.expire(time.monotonic() + API_KEY_CACHE_S + 1)
    _, expired = await app.asgi_client.get(profile_path(), headers=auth(key))

    assert cached.status == 404
    assert expired.status == 401


async def test_json_nested_ten_thousand_deep_is_a_400(api: Any) -> None:
    """A body deeper than the interpreter's recursion limit: a short 400, not a 500."""
    app, _, keys = api
    body = b'{"events": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    _, response = await app.asgi_client.post(
        "/personalize/events", content=body, headers=auth(keys["ingest"])
    )
    assert response.status == 400
    assert response.json == {"error": "body is nested deeper than 64 levels"}


async def test_a_nul_in_one_event_rejects_that_event_alone(api: Any) -> None:
    """NUL (refused by PostgreSQL) rejects its event, naming the field; the rest go in."""
    app, store, keys = api
    batch = [
        event("ok-1"),
        event("bad-1", device="mob\x00ile"),
        event("bad-2", location="Ber\x00lin"),
        event("ok-2", channel="web"),
    ]
    _, response = await app.asgi_client.post(
        "/personalize/events", json={"events": batch}, headers=auth(keys["ingest"])
    )
    assert response.status == 200
    assert response.json["accepted"] == ["ok-1", "ok-2"]
    assert [(r["event_id"], r["field"], r["reason"]) for r in response.json["rejected"]] == [
        ("bad-1", "device", "contains a control character"),
        ("bad-2", "location", "contains a control character"),
    ]
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Interaction)) == 2
