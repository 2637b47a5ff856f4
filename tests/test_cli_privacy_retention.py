"""``personalize privacy retention`` through the real command line."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.clock import utc_now
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import migrated_store
from tests.factories import NOW, add_customer, add_interactions, add_product

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite store: three interactions from long ago, two recent ones."""
    database_url = f"sqlite:///{tmp_path / 'store.db'}"

    async def seed() -> None:
        store = await migrated_store(database_url)
        try:
            async with store.sessions.begin() as session:
                product = await add_product(session, "SKU-1", "shoes")
                customer = await add_customer(session, "ada")
                # The factories date events back from their NOW; the command counts back
                # from today: "recent" is a day before today, "old" years before.
                recent = (NOW - utc_now()) / timedelta(days=1) + 1
                await add_interactions(session, customer, product, "view", 3, days_ago=3000)
                await add_interactions(session, customer, product, "view", 2, days_ago=recent)
        finally:
            await store.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    monkeypatch.setenv("PERSONALIZE_TAGS_PATH", str(tmp_path / "no-tags.yml"))
    return database_url


def interactions(database_url: str) -> int:
    async def read() -> int:
        store = SqlStore(database_url, StoreTimeouts())
        try:
            async with store.sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(Interaction)) or 0)
        finally:
            await store.dispose()

    return asyncio.run(read())


def test_dry_run_then_run(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dry run counts the old interactions and keeps them; the run deletes them."""
    monkeypatch.setenv("PERSONALIZE_RETENTION_DAYS", "365")
    dry = runner.invoke(app, ["privacy", "retention", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    counts = json.loads(dry.stdout)
    assert (counts["dry_run"], counts["interactions"]) == (True, 3)
    assert interactions(url) == 5
    done = runner.invoke(app, ["privacy", "retention"])
    assert done.exit_code == 0, done.output
    assert "Retention (done)" in done.stdout
    assert "1 customer(s) lost interactions: 1 profile(s) recomputed" in done.stdout
    assert interactions(url) == 2


def test_without_a_retention_interactions_stay(url: str) -> None:
    """PERSONALIZE_RETENTION_DAYS unset: the table says they are kept forever."""
    result = runner.invoke(app, ["privacy", "retention"])
    assert result.exit_code == 0, result.output
    assert "kept forever" in result.stdout
    assert interactions(url) == 5
