"""Profile reads, writes and exports over the HTTP API: audited by key, exported whole."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from rasa_personalize.events.apikeys import list_api_keys
from rasa_personalize.identity import customer_key
from rasa_personalize.privacy.export import EXPORT_FORMAT, EXPORT_VERSION
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.models import AuditEntry
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET

# The fixture is shared with the API's other tests; pytest finds it by name here.
from tests.events.test_api import PRIVATE, api, auth, profile_path  # noqa: F401

KEY = customer_key(TEST_SECRET, PRIVATE)


def export_path(customer: str = PRIVATE) -> str:
    return f"{profile_path(customer)}/export"


async def key_ids(store: SqlStore) -> dict[str, int]:
    """label -> id of the fixture's keys."""
    async with store.sessions() as session:
        return {record.label: record.id for record in await list_api_keys(session)}


async def audited(store: SqlStore) -> list[tuple[str, int | None, str | None, str, str, Any]]:
    async with store.sessions() as session:
        records = await list_audit_entries(session)
    return [
        (r.action, r.api_key_id, r.api_key_label, r.outcome, r.customer_key, dict(r.detail))
        for r in records
    ]


async def test_profile_reads_and_writes_are_audited(api: Any) -> None:  # noqa: F811
    """Each read (found or not) and write leaves an entry with the key's id and label,
    the customer's key, and for writes the names of the fields set."""
    app, store, keys = api
    _, missing = await app.asgi_client.get(profile_path(), headers=auth(keys["read"]))
    assert missing.status == 404
    change = {"loyalty_tier": "gold", "demographics": {"city": "Berlin", "age": 41}}
    _, created = await app.asgi_client.put(profile_path(), json=change, headers=auth(keys["admin"]))
    assert created.status == 201
    _, updated = await app.asgi_client.put(
        profile_path(), json={"attributes": {"vip": True}}, headers=auth(keys["admin"])
    )
    assert updated.status == 200
    _, read = await app.asgi_client.get(profile_path(), headers=auth(keys["admin"]))
    assert read.status == 200
    ids = await key_ids(store)
    assert await audited(store) == [
        ("profile.read", ids["test read"], "test read", "not_found", KEY, {}),
        (
            "profile.write",
            ids["test admin"],
            "test admin",
            "ok",
            KEY,
            {"created": True, "fields": ["loyalty_tier", "demographics.age", "demographics.city"]},
        ),
        (
            "profile.write",
            ids["test admin"],
            "test admin",
            "ok",
            KEY,
            {"created": False, "fields": ["attributes"]},
        ),
        ("profile.read", ids["test admin"], "test admin", "ok", KEY, {}),
    ]


async def test_refused_requests_are_not_audited_as_access(api: Any) -> None:  # noqa: F811
    """A wrong scope or an invalid body reads and writes nothing, and leaves no entry."""
    app, store, keys = api
    _, forbidden = await app.asgi_client.get(profile_path(), headers=auth(keys["ingest"]))
    _, invalid = await app.asgi_client.put(
        profile_path(), json={"loyalty_tier": "diamond"}, headers=auth(keys["admin"])
    )
    assert (forbidden.status, invalid.status) == (403, 400)
    assert await audited(store) == []


async def test_export_over_the_api(api: Any) -> None:  # noqa: F811
    """An admin key gets the whole document as JSON; the export is audited with its key."""
    app, store, keys = api
    await app.asgi_client.put(
        profile_path(), json={"loyalty_tier": "platinum"}, headers=auth(keys["admin"])
    )
    events = [
        {
            "event_id": f"e{n}",
            "customer": PRIVATE,
            "product": "SKU-1",
            "kind": "view",
            "timestamp": f"2026-01-01T10:00:0{n}Z",
            "channel": "web",
        }
        for n in range(3)
    ]
    _, ingested = await app.asgi_client.post(
        "/personalize/events", json={"events": events}, headers=auth(keys["ingest"])
    )
    assert ingested.status == 200
    _, response = await app.asgi_client.get(export_path(), headers=auth(keys["admin"]))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    document = json.loads(response.text)
    assert (document["format"], document["version"]) == (EXPORT_FORMAT, EXPORT_VERSION)
    assert document["customer"]["customer_key"] == KEY
    assert document["profile"]["loyalty_tier"] == "platinum"
    assert [(i["sku"], i["kind"], i["occurred_at"]) for i in document["interactions"]] == [
        ("SKU-1", "view", f"2026-01-01T10:00:0{n}+00:00") for n in range(3)
    ]
    assert document["contacts"]["status"] == "none"
    ids = await key_ids(store)
    assert (await audited(store))[-1] == (
        "privacy.export",
        ids["test admin"],
        "test admin",
        "ok",
        KEY,
        {"interactions": 3, "aliases": 0, "contacts": "none"},
    )


async def test_export_refusals(api: Any) -> None:  # noqa: F811
    """A read key is refused (403, nothing audited); an unknown customer is a 404 that
    does not repeat the id, audited as not_found."""
    app, store, keys = api
    _, forbidden = await app.asgi_client.get(export_path(), headers=auth(keys["read"]))
    assert forbidden.status == 403
    assert await audited(store) == []
    _, missing = await app.asgi_client.get(export_path(), headers=auth(keys["admin"]))
    assert (missing.status, missing.json) == (404, {"error": "no such customer"})
    assert PRIVATE not in missing.text
    [entry] = await audited(store)
    assert (entry[0], entry[3], entry[4]) == ("privacy.export", "not_found", KEY)


async def test_no_raw_id_in_the_audit_table(api: Any) -> None:  # noqa: F811
    """After reads, writes and exports, no audit column holds the external id."""
    app, store, keys = api
    admin = auth(keys["admin"])
    await app.asgi_client.get(profile_path(), headers=admin)
    await app.asgi_client.put(profile_path(), json={"loyalty_tier": "gold"}, headers=admin)
    await app.asgi_client.get(profile_path(), headers=admin)
    await app.asgi_client.get(export_path(), headers=admin)
    async with store.sessions() as session:
        rows = (await session.scalars(select(AuditEntry))).all()
    assert [row.action for row in rows] == [
        "profile.read",
        "profile.write",
        "profile.read",
        "privacy.export",
    ]
    dumped = json.dumps(
        [[row.actor, row.api_key_label, row.action, row.customer_key, row.outcome, row.detail]
         for row in rows]
    )  # fmt: skip
    assert PRIVATE not in dumped
    assert "jane" not in dumped
    assert {row.customer_key for row in rows} == {KEY}
