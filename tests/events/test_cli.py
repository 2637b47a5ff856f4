"""``personalize apikey``: a key is printed once, listed without it, can be revoked, and
both are audited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rasa_personalize.cli.events import register_commands
from rasa_personalize.events.apikeys import find_api_key
from rasa_personalize.store.audit import list_audit_entries
from tests.conftest import migrated_store

runner = CliRunner()


@pytest.fixture
def cli_app() -> typer.Typer:
    """A bare app with only the events commands, registered as rasa_personalize.cli does."""
    app = typer.Typer()
    register_commands(app)

    @app.callback()
    def main() -> None:
        """Keep ``apikey`` a subcommand even when it is the only one."""

    return app


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A migrated SQLite store."""
    database_url = f"sqlite:///{tmp_path / 'store.db'}"

    async def migrate() -> None:
        store = await migrated_store(database_url)
        await store.dispose()

    asyncio.run(migrate())
    return database_url


def scope_of(url: str, key: str) -> str | None:
    async def look_up() -> str | None:
        store = await migrated_store(url)
        try:
            async with store.sessions() as session:
                record = await find_api_key(session, key)
        finally:
            await store.dispose()
        return record.scope if record else None

    return asyncio.run(look_up())


def test_create_list_revoke(cli_app: typer.Typer, url: str) -> None:
    """The printed key works until revoked; the list never shows it."""
    created = runner.invoke(
        cli_app, ["apikey", "create", "--scope", "ingest", "--label", "shop", "--database-url", url]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert len(key) >= 43  # 32 random bytes, base64url
    assert scope_of(url, key) == "ingest"

    listed = runner.invoke(cli_app, ["apikey", "list", "--json", "--database-url", url])
    assert listed.exit_code == 0, listed.output
    records = json.loads(listed.stdout)
    assert [(r["id"], r["scope"], r["label"], r["revoked_at"]) for r in records] == [
        (1, "ingest", "shop", None)
    ]
    assert key not in listed.stdout

    revoked = runner.invoke(cli_app, ["apikey", "revoke", "1", "--database-url", url])
    assert revoked.exit_code == 0, revoked.output
    assert scope_of(url, key) is None
    again = runner.invoke(cli_app, ["apikey", "revoke", "1", "--database-url", url])
    assert again.exit_code == 1


def test_unknown_scope_is_refused(cli_app: typer.Typer, url: str) -> None:
    """Only ingest, read and admin are scopes."""
    result = runner.invoke(cli_app, ["apikey", "create", "--scope", "root", "--database-url", url])
    assert result.exit_code == 2


def audit_entries(url: str) -> list[tuple[str, str, str, dict[str, object]]]:
    async def read() -> list[tuple[str, str, str, dict[str, object]]]:
        store = await migrated_store(url)
        try:
            async with store.sessions() as session:
                records = await list_audit_entries(session)
        finally:
            await store.dispose()
        return [(r.actor, r.action, r.outcome, dict(r.detail)) for r in records]

    return asyncio.run(read())


def test_creation_and_revocation_are_audited_without_the_key(
    cli_app: typer.Typer, url: str
) -> None:
    """Each creation and revocation leaves an entry with the key's id, scope and label,
    and no entry holds the key itself."""
    created = runner.invoke(
        cli_app, ["apikey", "create", "--scope", "read", "--label", "crm", "--database-url", url]
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert runner.invoke(cli_app, ["apikey", "revoke", "1", "--database-url", url]).exit_code == 0
    assert runner.invoke(cli_app, ["apikey", "revoke", "9", "--database-url", url]).exit_code == 1
    entries = audit_entries(url)
    assert entries == [
        ("cli", "apikey.create", "ok", {"key_id": 1, "scope": "read", "label": "crm"}),
        ("cli", "apikey.revoke", "ok", {"key_id": 1, "scope": "read", "label": "crm"}),
        ("cli", "apikey.revoke", "not_found", {"key_id": 9}),
    ]
    assert key not in json.dumps(entries)
