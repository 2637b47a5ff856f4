"""GET/PUT /personalize/profiles/<customer>/consent, and suppression in POST /events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from redis import asyncio as redis_asyncio
from sanic import Sanic

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.identity import customer_key
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.models import CustomerAlias
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.events.test_api import PRIVATE, auth, event, profile_path
from tests.factories import add_customer, add_product

KEY = customer_key(TEST_SECRET, PRIVATE)


class RecordingCache:
    """Stands in for the profile cache: notes what was invalidated."""

    def __init__(self) -> None:
        self.invalidated: list[str] = []

    async def invalidate(self, keys: Any) -> None:
        self.invalidated.extend(keys)


async def make_api(
    database_url: str, monkeypatch: pytest.MonkeyPatch, **settings: object
) -> tuple[Sanic[Any, Any], SqlStore, dict[str, str], PersonalizationService]:
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    store = await migrated_store(database_url)
    keys: dict[str, str] = {}
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        for scope in ("ingest", "read", "admin"):
            _, keys[scope] = await create_api_key(session, scope, label=f"test {scope}")
    service = PersonalizationService(make_settings(database_url, **settings), store)
    install_service(service)
    return attach_event_routes(create_app(ActionExecutor())), store, keys, service


@pytest.fixture
async def api(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Sanic[Any, Any], SqlStore, dict[str, str], PersonalizationService]]:
    """The app over a migrated store, opt-out default, a policy version configured."""
    yield await make_api(database_url, monkeypatch, consent_policy_version="2026-01")
    await shutdown_service()


def consent_path(customer: str = PRIVATE) -> str:
    return f"{profile_path(customer)}/consent"


async def test_consent_round_trip(api: Any) -> None:
    """Unknown customer: defaults; a PUT records, audits with the key and drops the cache."""
    app, store, keys, service = api
    cache = RecordingCache()
    service.profile_cache = cache
    _, before = await app.asgi_client.get(consent_path(), headers=auth(keys["read"]))
    assert before.status == 200
    assert before.json["customer"] == PRIVATE
    assert {p: s["state"] for p, s in before.json["purposes"].items()} == {
        "personalization": "default", "tracking": "default", "marketing": "default",
    }  # fmt: skip
    assert all(s["effective"] for s in before.json["purposes"].values())
    assert before.json["history"] == []

    body = {"grant": ["personalization"], "deny": ["tracking", "marketing"]}
    _, changed = await app.asgi_client.put(consent_path(), json=body, headers=auth(keys["admin"]))
    assert changed.status == 200
    tracking = changed.json["purposes"]["tracking"]
    assert (tracking["state"], tracking["effective"], tracking["source"],
            tracking["policy_version"]) == ("denied", False, "api", "2026-01")  # fmt: skip
    assert tracking["updated_at"] is not None
    assert changed.json["purposes"]["personalization"]["effective"] is True
    assert [(h["purpose"], h["decision"]) for h in changed.json["history"]] == [
        ("personalization", "granted"), ("tracking", "denied"), ("marketing", "denied"),
    ]  # fmt: skip
    assert cache.invalidated == [KEY]

    _, after = await app.asgi_client.get(consent_path(), headers=auth(keys["admin"]))
    assert after.json == changed.json
    async with store.sessions() as session:
        entries = await list_audit_entries(session)
    assert [(e.actor, e.api_key_label, e.action, e.outcome, e.customer_key) for e in entries] == [
        ("api", "test admin", "consent.grant", "changed", KEY),
        ("api", "test admin", "consent.deny", "changed", KEY),
    ]
    assert all(e.api_key_id is not None for e in entries)
    assert PRIVATE not in repr(entries)


@pytest.mark.parametrize(
    ("method", "key", "status"),
    [
        ("get", None, 401),  # no key
        ("get", "ingest", 403),  # ingest may not read consent
        ("put", "read", 403),  # read may not change it
        ("put", "ingest", 403),  # nor may ingest
    ],
)
async def test_consent_scopes(api: Any, method: str, key: str | None, status: int) -> None:
    app, _, keys, _ = api
    headers = auth(keys[key]) if key else {}
    call = getattr(app.asgi_client, method)
    kwargs = {"json": {"grant": ["tracking"]}} if method == "put" else {}
    _, response = await call(consent_path(), headers=headers, **kwargs)
    assert response.status == status


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # not an object
        (["tracking"], "invalid consent: body: must be"),
        # a purpose that does not exist, named with the valid ones
        ({"grant": ["ads"]}, "invalid consent: grant: unknown purpose 'ads': use personalization"),
        # both at once
        ({"grant": ["tracking"], "deny": ["tracking"]}, "invalid consent: deny: tracking cannot"),
        # a list expected
        ({"deny": "tracking"}, "invalid consent: deny: must be a list"),
        # too long for the column
        ({"grant": ["tracking"], "policy_version": "v" * 40}, "invalid consent: policy_version:"),
        # nothing to change
        ({}, "invalid consent: grant: nothing to change"),
        # a field of another API
        ({"grant": ["tracking"], "tier": "gold"}, "invalid consent: tier: unknown field"),
    ],
)
async def test_bad_consent_bodies_are_400s_naming_the_field(
    api: Any, body: Any, message: str
) -> None:
    app, store, keys, _ = api
    _, response = await app.asgi_client.put(consent_path(), json=body, headers=auth(keys["admin"]))
    assert response.status == 400
    assert response.json["error"].startswith(message)
    async with store.sessions() as session:
        assert await list_audit_entries(session) == []


async def test_events_of_customers_without_tracking_consent_are_suppressed(api: Any) -> None:
    """POST /events lists them under "suppressed"; after a grant they are accepted."""
    app, _, keys, _ = api
    _, denied = await app.asgi_client.put(
        consent_path(), json={"deny": ["tracking"]}, headers=auth(keys["admin"])
    )
    assert denied.status == 200
    body = {"events": [event("a"), event("b", customer="someone-else")]}
    _, response = await app.asgi_client.post(
        "/personalize/events", json=body, headers=auth(keys["ingest"])
    )
    assert (response.status, response.json["accepted"], response.json["suppressed"]) == (
        200, ["b"], ["a"],
    )  # fmt: skip
    await app.asgi_client.put(
        consent_path(), json={"grant": ["tracking"]}, headers=auth(keys["admin"])
    )
    _, again = await app.asgi_client.post(
        "/personalize/events", json={"events": [event("a")]}, headers=auth(keys["ingest"])
    )
    assert (again.json["accepted"], again.json["suppressed"]) == (["a"], [])


async def test_opt_in_suppresses_customers_who_never_answered(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PERSONALIZE_CONSENT_DEFAULT=denied nothing is stored without a yes."""
    app, _, keys, _ = await make_api(sqlite_url, monkeypatch, consent_default="denied")
    try:
        _, response = await app.asgi_client.post(
            "/personalize/events", json={"events": [event("a")]}, headers=auth(keys["ingest"])
        )
        assert (response.json["accepted"], response.json["suppressed"]) == ([], ["a"])
        _, consent = await app.asgi_client.get(consent_path(), headers=auth(keys["read"]))
        assert consent.json["purposes"]["tracking"] == {
            "state": "default", "effective": False, "source": None, "policy_version": None,
            "updated_at": None,
        }  # fmt: skip
    finally:
        await shutdown_service()


@pytest.mark.redis
async def test_queued_batches_report_suppressed_events_too(
    sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis, suppressed events are never queued and are listed in the answer."""
    stream = f"test:events:{uuid.uuid4().hex}"
    app, _, keys, _ = await make_api(
        sqlite_url, monkeypatch, redis_url=redis_url, event_stream=stream, redis_timeout_s=1.0
    )
    client = redis_asyncio.from_url(redis_url)
    try:
        await app.asgi_client.put(
            consent_path(), json={"deny": ["tracking"]}, headers=auth(keys["admin"])
        )
        body = {"events": [event("a"), event("b", customer="someone-else")]}
        _, response = await app.asgi_client.post(
            "/personalize/events", json=body, headers=auth(keys["ingest"])
        )
        assert response.json["queued"] is True
        assert (response.json["accepted"], response.json["suppressed"]) == (["b"], ["a"])
        assert await client.xlen(stream) == 1  # one message, holding "b" alone
    finally:
        await client.delete(stream)
        await client.aclose()
        await shutdown_service()


@pytest.mark.parametrize("customer", ["%00", "jane%0Adoe", "%FF"])
async def test_ids_with_control_characters_or_bad_utf8_are_refused(api: Any, customer: str) -> None:
    """A 400 that says why, and nothing is recorded."""
    app, _, keys, _ = api
    body = {"grant": ["tracking"]}
    _, response = await app.asgi_client.put(
        f"/personalize/profiles/{customer}/consent", json=body, headers=auth(keys["admin"])
    )

    assert response.status == 400
    assert response.json == {"error": "customer id must be printable UTF-8 text"}


async def test_a_merged_customers_answer_drops_the_profile_cached_under_each_key(
    api: Any,
) -> None:
    """A PUT under one of a merged customer's ids invalidates every key they may chat under,
    and the profile read with the other id holds the new answer."""
    app, store, keys, service = api
    cache = RecordingCache()
    service.profile_cache = cache
    old_key = customer_key(TEST_SECRET, "old-id@example.com")
    async with store.sessions.begin() as session:
        customer = await add_customer(session, PRIVATE)
        session.add(CustomerAlias(alias_key=old_key, customer_id=customer.id, match="exact"))
    body = {"deny": ["personalization"]}
    _, changed = await app.asgi_client.put(
        consent_path("old-id@example.com"), json=body, headers=auth(keys["admin"])
    )
    assert changed.status == 200
    assert sorted(cache.invalidated) == sorted([KEY, old_key])
    snapshot = await store.load_snapshot(KEY)
    assert snapshot is not None
    assert snapshot.consent == {"personalization": False}
