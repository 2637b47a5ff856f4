"""``personalize privacy export`` and ``personalize audit list`` through the real app."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.clock import utc_now
from rasa_personalize.identity import customer_key
from rasa_personalize.imports.contacts import (
    DEVELOPMENT_KEY_ID,
    ContactCipher,
    development_contact_key,
)
from rasa_personalize.store.audit import append_audit_entry, list_audit_entries
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import add_customer, add_interactions, add_product

runner = CliRunner()
T = TypeVar("T")
RAW_ID = "jane.doe@example.com"
KEY = customer_key(TEST_SECRET, RAW_ID)


def on_store(url: str, work: Callable[[SqlStore], Awaitable[T]]) -> T:
    """Run ``work`` on a store over ``url`` (already migrated)."""

    async def run() -> T:
        store = SqlStore(url)
        try:
            return await work(store)
        finally:
            await store.dispose()

    return asyncio.run(run())


def migrate(url: str) -> None:
    async def run() -> None:
        store = await migrated_store(url)
        await store.dispose()

    asyncio.run(run())


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite store with Jane (contacts under the development key, as an
    import without PERSONALIZE_CONTACT_KEY leaves them) and three interactions."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    database_url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(database_url)
    cipher = ContactCipher(
        {DEVELOPMENT_KEY_ID: development_contact_key(TEST_SECRET)}, DEVELOPMENT_KEY_ID
    )

    async def seed(store: SqlStore) -> None:
        async with store.sessions.begin() as session:
            product = await add_product(session, "SKU-1", "shoes")
            jane = await add_customer(session, RAW_ID, tier="silver")
            jane.email_encrypted = cipher.encrypt("email", RAW_ID)
            await add_interactions(session, jane, product, "view", 3)

    on_store(database_url, seed)
    return database_url


def audit_rows(url: str) -> list[dict[str, object]]:
    async def read(store: SqlStore) -> list[dict[str, object]]:
        async with store.sessions() as session:
            records = await list_audit_entries(session)
        return [
            {
                "actor": r.actor,
                "action": r.action,
                "outcome": r.outcome,
                "customer_key": r.customer_key,
                "detail": dict(r.detail),
            }
            for r in records
        ]

    return on_store(url, read)


def test_export_to_stdout(url: str) -> None:
    """The document goes to stdout, contacts decrypted; the export is audited."""
    result = runner.invoke(app, ["privacy", "export", RAW_ID, "--database-url", url])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["format"] == "rasa-personalize.export"
    assert document["customer"]["customer_key"] == KEY
    assert document["profile"]["loyalty_tier"] == "silver"
    assert document["contacts"]["email"] == RAW_ID
    assert [i["kind"] for i in document["interactions"]] == ["view"] * 3
    assert audit_rows(url) == [
        {
            "actor": "cli",
            "action": "privacy.export",
            "outcome": "ok",
            "customer_key": KEY,
            "detail": {"interactions": 3, "aliases": 0, "contacts": "decrypted"},
        }
    ]


def test_export_to_a_file(url: str, tmp_path: Path) -> None:
    """--out writes the same document, private to its owner, says where, and leaves no
    temporary file behind."""
    target = tmp_path / "exports" / "jane.json"
    target.parent.mkdir()
    target.write_text("old export")
    result = runner.invoke(
        app, ["privacy", "export", RAW_ID, "--out", str(target), "--database-url", url]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"Export written to {target}" in result.stderr
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["customer"]["customer_key"] == KEY
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["jane.json"]


def test_export_never_replaces_a_link_a_pipe_or_a_device(url: str, tmp_path: Path) -> None:
    """--out to something that is not a regular file: refused, and it is left as it was."""
    target = tmp_path / "target.json"
    target.write_text("kept")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out in (link, fifo):
        result = runner.invoke(
            app, ["privacy", "export", RAW_ID, "--out", str(out), "--database-url", url]
        )
        assert result.exit_code != 0
        assert "not a regular file" in result.stderr
    assert link.is_symlink()
    assert target.read_text() == "kept"
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_unknown_customer_exits_1_without_echoing_the_id(url: str, tmp_path: Path) -> None:
    """Exit 1, one line that does not repeat the id, no file written; audited not_found."""
    target = tmp_path / "nobody.json"
    result = runner.invoke(
        app,
        ["privacy", "export", "nobody@example.com", "--out", str(target), "--database-url", url],
    )
    assert result.exit_code == 1
    assert "no such customer" in result.stderr
    assert "nobody" not in result.output
    assert list(tmp_path.glob("*nobody*")) == []
    [row] = audit_rows(url)
    assert (row["action"], row["outcome"], row["customer_key"]) == (
        "privacy.export",
        "not_found",
        customer_key(TEST_SECRET, "nobody@example.com"),
    )


def test_export_to_a_missing_directory_fails_cleanly(url: str, tmp_path: Path) -> None:
    """A directory that does not exist: exit 1 naming the path, and nothing exported."""
    target = tmp_path / "missing" / "jane.json"
    result = runner.invoke(
        app, ["privacy", "export", RAW_ID, "--out", str(target), "--database-url", url]
    )
    assert result.exit_code == 1
    assert "cannot write" in result.stderr
    assert RAW_ID not in result.output


def seed_audit(url: str) -> None:
    """An old entry (40 days ago) and two recent ones."""

    async def seed(store: SqlStore) -> None:
        now = utc_now()
        async with store.sessions.begin() as session:
            for days, action, key in [
                (40, "profile.read", KEY),
                (1, "profile.write", KEY),
                (0, "profile.read", "c" * 64),
            ]:
                await append_audit_entry(
                    session,
                    occurred_at=now - timedelta(days=days),
                    actor="api",
                    action=action,
                    outcome="ok",
                    customer_key=key,
                    api_key_id=4,
                    api_key_label="crm [sync]",
                )

    on_store(url, seed)


def listed(url: str, *options: str) -> list[dict[str, object]]:
    result = runner.invoke(app, ["audit", "list", "--json", *options, "--database-url", url])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_audit_list_filters(url: str) -> None:
    """--since (a duration or a date), --action, --customer and --limit narrow the list;
    --json prints one object per line, oldest first."""
    seed_audit(url)
    everything = listed(url)
    assert [(e["action"], e["customer_key"]) for e in everything] == [
        ("profile.read", KEY),
        ("profile.write", KEY),
        ("profile.read", "c" * 64),
    ]
    assert everything[0]["api_key_id"] == 4
    assert everything[0]["api_key_label"] == "crm [sync]"
    assert [e["action"] for e in listed(url, "--since", "7d")] == ["profile.write", "profile.read"]
    long_ago = (utc_now() - timedelta(days=60)).date().isoformat()
    assert len(listed(url, "--since", long_ago)) == 3
    assert [e["customer_key"] for e in listed(url, "--action", "profile.read")] == [KEY, "c" * 64]
    assert [e["action"] for e in listed(url, "--customer", RAW_ID)] == [
        "profile.read",
        "profile.write",
    ]
    # The newest entries are kept.
    assert [e["customer_key"] for e in listed(url, "--limit", "1")] == ["c" * 64]


def test_audit_list_table(url: str) -> None:
    """The default output is a table naming actions, actors and labels as typed."""
    seed_audit(url)
    result = runner.invoke(app, ["audit", "list", "--database-url", url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Audit log: 3 entries" in result.stdout
    assert "profile.write" in result.stdout
    assert "api key 4 (crm [sync])" in result.stdout
    assert KEY[:12] in result.stdout


def test_audit_list_refuses_a_bad_since(url: str) -> None:
    """A --since that is neither a date nor a duration is a usage error."""
    result = runner.invoke(app, ["audit", "list", "--since", "last week", "--database-url", url])
    assert result.exit_code == 2
    assert "7d" in result.stderr


def test_export_finds_a_customer_under_a_former_secret(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the secret changed, a customer not seen since is moved to the new key and
    exported, not reported missing."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "a-new-secret-0123456789abcdef")
    monkeypatch.setenv("PERSONALIZE_PREVIOUS_SECRET_KEYS", TEST_SECRET)
    result = runner.invoke(app, ["privacy", "export", RAW_ID, "--database-url", url])
    assert result.exit_code == 0, result.output
    new_key = customer_key("a-new-secret-0123456789abcdef", RAW_ID)
    assert json.loads(result.stdout)["customer"]["customer_key"] == new_key
    assert [row["customer_key"] for row in audit_rows(url)][-1] == new_key
