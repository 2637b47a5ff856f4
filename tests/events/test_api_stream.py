"""POST /personalize/events with Redis: queued in the stream, or straight to SQL when
Redis is down, with the same end result once the worker ran."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from redis import asyncio as redis_asyncio
from sanic import Sanic
from sqlalchemy import select

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.events.worker import StreamWorker, WorkerOptions
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.events.test_api import auth, event
from tests.factories import add_product

pytestmark = pytest.mark.redis

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


async def make_api(
    database_url: str, redis_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Sanic[Any, Any], SqlStore, str]:
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    store = await migrated_store(database_url)
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        _, key = await create_api_key(session, "ingest")
    settings = make_settings(
        database_url, redis_url=redis_url, event_stream=stream, redis_timeout_s=0.3
    )
    install_service(PersonalizationService(settings, store))
    return attach_event_routes(create_app(ActionExecutor())), store, key


@pytest.fixture
async def stream(redis_url: str) -> AsyncIterator[str]:
    name = f"test:events:{uuid.uuid4().hex}"
    yield name
    client = redis_asyncio.from_url(redis_url)
    await client.delete(name)
    await client.aclose()


async def stored(store: SqlStore) -> list[str]:
    async with store.sessions() as session:
        return sorted((await session.execute(select(Interaction.event_id))).scalars().all())


async def test_events_are_queued_then_stored_by_the_worker(
    database_url: str, redis_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, store, key = await make_api(database_url, redis_url, stream, monkeypatch)
    try:
        body = {"events": [event("a"), event("b"), event("a"), event("c", product="GHOST")]}
        _, response = await app.asgi_client.post(
            "/personalize/events", json=body, headers=auth(key)
        )
        assert response.status == 200
        assert response.json["queued"] is True
        assert response.json["accepted"] == ["a", "b"]
        assert response.json["duplicates"] == ["a"]
        assert [r["field"] for r in response.json["rejected"]] == ["product"]
        assert await stored(store) == []  # not yet: the worker stores them

        client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
        options = WorkerOptions(block_ms=50, exit_when_idle=True)
        stats = await StreamWorker(client, stream, store.sessions, options=options).run()
        await client.aclose()
        assert stats.stored == 2
        assert await stored(store) == ["a", "b"]

        # Sent again after storing: reported as duplicates, nothing queued.
        _, again = await app.asgi_client.post(
            "/personalize/events", json={"events": [event("a")]}, headers=auth(key)
        )
        assert (again.json["accepted"], again.json["duplicates"]) == ([], ["a"])
    finally:
        await shutdown_service()


async def test_with_redis_down_events_go_straight_to_sql(
    database_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, store, key = await make_api(database_url, UNREACHABLE_REDIS, stream, monkeypatch)
    try:
        body = {"events": [event("a"), event("b")]}
        _, response = await app.asgi_client.post(
            "/personalize/events", json=body, headers=auth(key)
        )
        assert response.status == 200
        assert response.json["queued"] is False
        assert response.json["accepted"] == ["a", "b"]
        assert await stored(store) == ["a", "b"]
    finally:
        await shutdown_service()
