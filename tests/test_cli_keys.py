"""``personalize keys rotate-contacts`` through the real command line (SQLite)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.imports.contacts import ContactCipher
from rasa_personalize.store.models import Customer
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import migrated_store

runner = CliRunner()
KEY_1 = bytes(range(32))
KEY_2 = bytes(range(1, 33))
B64_1 = base64.b64encode(KEY_1).decode()
B64_2 = base64.b64encode(KEY_2).decode()


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store with three customers' e-mails under k1, a secret, and keys k1 and k2."""
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    old = ContactCipher({"k1": KEY_1}, "k1")

    async def seed() -> None:
        store = await migrated_store(database_url)
        async with store.sessions.begin() as session:
            session.add_all(
                Customer(
                    customer_key=f"{n:064x}", email_encrypted=old.encrypt("email", f"{n}@x.org")
                )
                for n in range(3)
            )
        await store.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEYS", f"k1:{B64_1},k2:{B64_2}")
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY_ID", "k2")
    return database_url


def prefixes(database_url: str) -> list[str]:
    """The key id of every stored e-mail."""

    async def read() -> list[str]:
        store = SqlStore(database_url)
        try:
            async with store.sessions() as session:
                values = (await session.scalars(select(Customer.email_encrypted))).all()
        finally:
            await store.dispose()
        return sorted(str(value).partition(":")[0] for value in values)

    return asyncio.run(read())


def test_dry_run_then_rotation_then_nothing_left(url: str) -> None:
    """The dry run counts and writes nothing; the run re-encrypts all three under k2; a
    second run finds nothing to do."""
    dry = runner.invoke(app, ["keys", "rotate-contacts", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert (
        "Would re-encrypt 3 contact field(s) of 3 customer(s) under key 'k2' (from k1: 3)."
        in dry.stdout
    )
    assert prefixes(url) == ["k1", "k1", "k1"]

    done = runner.invoke(app, ["keys", "rotate-contacts", "--batch-size", "2"])
    assert done.exit_code == 0, done.output
    assert "Re-encrypted 3 contact field(s) of 3 customer(s) under key 'k2'" in done.stdout
    assert prefixes(url) == ["k2", "k2", "k2"]

    again = runner.invoke(app, ["keys", "rotate-contacts"])
    assert "Re-encrypted 0 contact field(s) of 0 customer(s) under key 'k2'." in again.stdout


def test_a_missing_old_key_fails_naming_its_id(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without k1 in the list its fields stay: exit 1, the id named, no key printed."""
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEYS", f"k2:{B64_2}")
    result = runner.invoke(app, ["keys", "rotate-contacts"])
    assert result.exit_code == 1
    assert "3 contact field(s) did not decrypt" in result.output
    assert "(key ids: k1)" in result.output
    assert B64_2 not in result.output
    assert prefixes(url) == ["k1", "k1", "k1"]


def test_without_a_configured_key_there_is_nothing_to_rotate_to(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the development key: exit 2 with what to set."""
    monkeypatch.delenv("PERSONALIZE_CONTACT_KEYS")
    monkeypatch.delenv("PERSONALIZE_CONTACT_KEY_ID")
    result = runner.invoke(app, ["keys", "rotate-contacts"])
    assert result.exit_code == 2
    assert "set PERSONALIZE_CONTACT_KEYS" in result.output


def test_a_bad_key_list_is_refused_without_key_material(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write id that is not in the list: exit with the variable named, keys not shown."""
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY_ID", "k3")
    result = runner.invoke(app, ["keys", "rotate-contacts"])
    assert result.exit_code != 0
    assert "PERSONALIZE_CONTACT_KEY_ID" in result.output
    assert B64_1 not in result.output
    assert B64_2 not in result.output
