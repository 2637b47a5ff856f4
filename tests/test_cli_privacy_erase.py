"""``personalize privacy erase`` through the real command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.identity import customer_key
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import migrated_store
from tests.factories import add_customer, add_interactions, add_product

runner = CliRunner()
SECRET = "cli-test-secret-key"
CUSTOMER = "jane.doe@example.com"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite store holding the customer with four interactions."""
    database_url = f"sqlite:///{tmp_path / 'store.db'}"

    async def seed() -> None:
        store = await migrated_store(database_url)
        try:
            async with store.sessions.begin() as session:
                product = await add_product(session, "SKU-1", "shoes")
                customer = await add_customer(session, "placeholder")
                customer.customer_key = customer_key(SECRET, CUSTOMER)
                await add_interactions(session, customer, product, "view", 4)
        finally:
            await store.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", SECRET)
    monkeypatch.setenv("PERSONALIZE_MODEL_DIR", str(tmp_path / "models"))
    return database_url


def rows(database_url: str) -> tuple[int, int, list[tuple[str, str, str | None]]]:
    """(customers, interactions, audit (actor, outcome, key)) in the store."""

    async def read() -> tuple[int, int, list[tuple[str, str, str | None]]]:
        store = SqlStore(database_url, StoreTimeouts())
        try:
            async with store.sessions() as session:
                customers = await session.scalar(select(func.count()).select_from(Customer))
                interactions = await session.scalar(select(func.count()).select_from(Interaction))
                audit = await list_audit_entries(session, action="privacy.erase")
        finally:
            await store.dispose()
        return (
            int(customers or 0),
            int(interactions or 0),
            [(e.actor, e.outcome, e.customer_key) for e in audit],
        )

    return asyncio.run(read())


def test_without_yes_nothing_is_erased(url: str) -> None:
    """No --yes: one line on stderr, exit 2, the customer still there."""
    result = runner.invoke(app, ["privacy", "erase", CUSTOMER])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: erasure cannot be undone: add --yes to erase this customer"
    ]
    assert rows(url) == (1, 4, [])


def test_erase_prints_the_receipt_then_finds_nothing(url: str) -> None:
    """The table lists what went; erasing again is a no-op; both runs are audited."""
    result = runner.invoke(app, ["privacy", "erase", CUSTOMER, "--yes"])
    assert result.exit_code == 0, result.output
    assert "Erasure receipt (erased)" in result.stdout
    assert "interactions" in result.stdout
    assert "Customer erased (1 key(s))" in result.stdout
    assert CUSTOMER not in result.output
    key = customer_key(SECRET, CUSTOMER)
    assert rows(url) == (0, 0, [("cli", "erased", key)])
    again = runner.invoke(app, ["privacy", "erase", CUSTOMER, "--yes", "--json"])
    assert again.exit_code == 0, again.output
    receipt = json.loads(again.stdout)
    assert receipt["found"] is False
    assert receipt["outcome"] == "not_found"
    assert receipt["customer_key"] == key
    assert receipt["sql_rows"] == receipt["tombstones"] == 0
    assert receipt["redis"] == "not configured"
    assert rows(url)[2] == [("cli", "erased", key), ("cli", "not_found", key)]


def test_json_receipt_counts_each_table(url: str) -> None:
    """--json prints the counts per table."""
    result = runner.invoke(app, ["privacy", "erase", CUSTOMER, "--yes", "--json"])
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.stdout)
    assert receipt["tables"]["customers"] == 1
    assert receipt["tables"]["interactions"] == 4
    assert receipt["tombstones"] == 1
    assert receipt["found"] is True
