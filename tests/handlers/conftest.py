"""Fixtures for action tests: a seeded store installed as the running loop's service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import make_settings
from tests.factories import NOW, add_customer, add_interactions, add_product


@pytest.fixture
async def service(
    store: SqlStore, database_url: str, tmp_path: Path
) -> AsyncIterator[PersonalizationService]:
    """A service over a store with a loyal and a bargain-hunting customer, installed; its
    models (none trained yet) in a folder of its own."""
    async with store.sessions.begin() as session:
        tv = await add_product(session, "SKU-EL-1", "electronics", price=900.0)
        shoes = await add_product(session, "SKU-RUN-1", "running", price=120.0)
        loyal = await add_customer(session, "demo-loyal", tier="gold", tags=("premium",))
        await add_interactions(session, loyal, tv, "purchase", 8, days_ago=3)
        bargain = await add_customer(session, "demo-bargain", tags=("interested_in_running",))
        await add_interactions(session, bargain, shoes, "purchase", 5, days_ago=2, paid=84.0)
        await add_interactions(session, bargain, shoes, "view", 12, days_ago=1)
        await rebuild_profile_metrics(session, now=NOW)
    settings = make_settings(database_url, model_dir=tmp_path / "models")
    personalization = PersonalizationService(settings, store, clock=lambda: NOW)
    install_service(personalization)
    yield personalization
    await shutdown_service()
