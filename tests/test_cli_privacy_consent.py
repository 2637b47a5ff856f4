"""``personalize privacy consent`` through the real command line."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from typer.testing import CliRunner

from rasa_personalize.cache.profiles import entry_key, version_key
from rasa_personalize.cli import app
from rasa_personalize.identity import customer_key
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import migrated_store

runner = CliRunner()
SECRET = "cli-test-secret-key"
CUSTOMER = "jane.doe@example.com"


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite store and a secret in the environment."""
    database_url = f"sqlite:///{tmp_path / 'store.db'}"

    async def migrate() -> None:
        store = await migrated_store(database_url)
        await store.dispose()

    asyncio.run(migrate())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", SECRET)
    return database_url


def consent_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["privacy", "consent", CUSTOMER, *args, "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def audit_rows(database_url: str) -> list[tuple[Any, ...]]:
    async def read() -> list[tuple[Any, ...]]:
        store = SqlStore(database_url, StoreTimeouts())
        try:
            async with store.sessions() as session:
                entries = await list_audit_entries(session)
        finally:
            await store.dispose()
        return [(e.actor, e.action, e.outcome, e.customer_key, e.api_key_id) for e in entries]

    return asyncio.run(read())


def test_show_change_and_repeat(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defaults first; a change is stored with the configured policy and audited; the same
    answer again adds no history."""
    monkeypatch.setenv("PERSONALIZE_CONSENT_POLICY_VERSION", "2026-01")
    before = consent_json()
    assert before["customer"] == CUSTOMER
    assert {p: s["state"] for p, s in before["purposes"].items()} == dict.fromkeys(
        ("personalization", "tracking", "marketing"), "default"
    )
    after = consent_json("--grant", "tracking", "--deny", "MARKETING", "--grant", "personalization")
    assert {p: (s["state"], s["source"], s["policy_version"])
            for p, s in after["purposes"].items()} == {
        "personalization": ("granted", "cli", "2026-01"),
        "tracking": ("granted", "cli", "2026-01"),
        "marketing": ("denied", "cli", "2026-01"),
    }  # fmt: skip
    again = consent_json("--deny", "marketing")
    assert len(again["history"]) == 3
    renewed = consent_json("--deny", "marketing", "--policy-version", "2026-06")
    assert [(h["purpose"], h["policy_version"]) for h in renewed["history"]][-1] == (
        "marketing",
        "2026-06",
    )
    key = customer_key(SECRET, CUSTOMER)
    assert audit_rows(url) == [
        ("cli", "consent.grant", "changed", key, None),
        ("cli", "consent.deny", "changed", key, None),
        ("cli", "consent.deny", "unchanged", key, None),
        ("cli", "consent.deny", "changed", key, None),
    ]


def test_table_output(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The human view lists every purpose, the default named, and the history."""
    monkeypatch.setenv("PERSONALIZE_CONSENT_DEFAULT", "denied")
    result = runner.invoke(app, ["privacy", "consent", CUSTOMER, "--grant", "tracking"])
    assert result.exit_code == 0, result.output
    assert "default: denied (PERSONALIZE_CONSENT_DEFAULT)" in result.stdout
    assert "│ tracking        │ granted │ yes" in result.stdout
    assert "History (oldest first)" in result.stdout
    fresh = runner.invoke(app, ["privacy", "consent", "someone-else"])
    assert fresh.exit_code == 0
    assert "No consent history." in fresh.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # a purpose that does not exist, with the valid ones
        (["--grant", "newsletter"], "--grant: unknown purpose 'newsletter': use "
                                    "personalization, tracking, marketing"),
        # the same purpose both ways
        (["--grant", "tracking", "--deny", "tracking"], "--deny: tracking cannot be both"),
        # a policy version without a change
        (["--policy-version", "v2"], "--policy-version goes with --grant or --deny"),
        # too long for the column
        (["--deny", "tracking", "--policy-version", "v" * 40], "--policy-version: must be at most"),
        # a number (a phone, perhaps) is not repeated back
        (["--grant", "15551234567"], "--grant: unknown purpose a value: use personalization"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(url: str, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["privacy", "consent", CUSTOMER, *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert audit_rows(url) == []


def test_a_change_refuses_the_development_secret(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading works with the public key; writing customer data does not."""
    monkeypatch.delenv("PERSONALIZE_SECRET_KEY")
    assert runner.invoke(app, ["privacy", "consent", CUSTOMER]).exit_code == 0
    result = runner.invoke(app, ["privacy", "consent", CUSTOMER, "--deny", "tracking"])
    assert result.exit_code == 2
    assert "PERSONALIZE_SECRET_KEY is not set" in result.stderr


@pytest.mark.redis
def test_a_change_drops_the_customers_cached_profile(
    url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hot path caches consent with the profile: a change outdates that one entry."""
    customer = f"cache-test-{uuid.uuid4().hex}"
    key = customer_key(SECRET, customer)
    client = Redis.from_url(redis_url)
    try:
        client.set(entry_key(key), "stale snapshot")
        monkeypatch.setenv("PERSONALIZE_REDIS_URL", redis_url)
        result = runner.invoke(app, ["privacy", "consent", customer, "--deny", "personalization"])
        assert result.exit_code == 0, result.output
        assert client.get(entry_key(key)) is None
        assert client.get(version_key(key)) == b"1"
        # Showing changes nothing.
        assert runner.invoke(app, ["privacy", "consent", customer]).exit_code == 0
        assert client.get(version_key(key)) == b"1"
    finally:
        client.delete(entry_key(key), version_key(key))
        client.close()


@pytest.mark.parametrize("customer", ["", "   ", "x" * 10_000, "jane\x1bdoe"])
def test_an_id_that_cannot_be_a_customer_is_refused(url: str, customer: str) -> None:
    """Empty, too long or with control characters: exit 2, nothing recorded, not echoed."""
    result = runner.invoke(app, ["privacy", "consent", customer, "--grant", "tracking"])

    assert result.exit_code == 2
    assert "the customer id must" in result.stderr
    assert "jane" not in result.stderr
    assert audit_rows(url) == []
