"""``DELETE /personalize/profiles/<customer>``: erasure through rasa-sdk's real Sanic app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic
from sqlalchemy import func, select

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.identity import customer_key
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.factories import add_customer, add_interactions, add_product

PRIVATE = "jane.doe@example.com"
PATH = f"/personalize/profiles/{quote(PRIVATE, safe='')}"

Api = tuple[Sanic[Any, Any], SqlStore, dict[str, str]]


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Api]:
    """The app over a store holding the customer (three interactions), a key per scope."""
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    store = await migrated_store(database_url)
    keys: dict[str, str] = {}
    async with store.sessions.begin() as session:
        product = await add_product(session, "SKU-1", "shoes", price=100.0)
        customer = await add_customer(session, PRIVATE)
        await add_interactions(session, customer, product, "view", 3)
        for scope in ("read", "admin"):
            _, keys[scope] = await create_api_key(session, scope, label=f"test {scope}")
    settings = make_settings(database_url, model_dir=tmp_path / "models")
    install_service(PersonalizationService(settings, store))
    app = attach_event_routes(create_app(ActionExecutor()))
    yield app, store, keys
    await shutdown_service()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def counts(store: SqlStore) -> tuple[int, int]:
    async with store.sessions() as session:
        customers = await session.scalar(select(func.count()).select_from(Customer))
        interactions = await session.scalar(select(func.count()).select_from(Interaction))
    return int(customers or 0), int(interactions or 0)


async def test_an_admin_key_erases_and_gets_the_receipt(api: Api) -> None:
    """200 with the receipt; the customer is gone, a GET is a 404, the key is audited."""
    app, store, keys = api
    _, response = await app.asgi_client.delete(PATH, headers=auth(keys["admin"]))
    assert response.status == 200
    receipt = response.json
    assert receipt["found"] is True
    assert receipt["outcome"] == "erased"
    assert receipt["tables"]["customers"] == 1
    assert receipt["tables"]["interactions"] == 3
    assert receipt["customer_key"] == customer_key(TEST_SECRET, PRIVATE)
    assert PRIVATE not in response.text
    assert await counts(store) == (0, 0)
    _, missing = await app.asgi_client.get(PATH, headers=auth(keys["read"]))
    assert missing.status == 404
    async with store.sessions() as session:
        [entry] = await list_audit_entries(session, action="privacy.erase")
    assert (entry.actor, entry.api_key_label, entry.outcome) == ("api", "test admin", "erased")
    _, again = await app.asgi_client.delete(PATH, headers=auth(keys["admin"]))
    assert again.status == 200
    assert again.json["found"] is False


async def test_erasure_needs_an_admin_key(api: Api) -> None:
    """No key is a 401, a read key a 403; nothing is erased."""
    app, store, keys = api
    _, anonymous = await app.asgi_client.delete(PATH)
    assert anonymous.status == 401
    _, reader = await app.asgi_client.delete(PATH, headers=auth(keys["read"]))
    assert (reader.status, reader.json) == (
        403,
        {"error": "this API key's scope does not allow admin"},
    )
    assert await counts(store) == (1, 3)
