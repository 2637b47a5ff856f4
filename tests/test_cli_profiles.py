"""`personalize profile show`: the customer's stated likes and dislikes, with source and date."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.store.models import CustomerTag
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import NOW, add_customer

runner = CliRunner()


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """ada said no to kitchen and yes to toys in the chat; a tag rule found running."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"

    async def seed() -> None:
        store = await migrated_store(url)
        async with store.sessions.begin() as session:
            ada = await add_customer(session, "ada", tags=("premium",))
            for tag, source, days_ago in (
                ("not_interested_in_kitchen", "chat", 0),
                ("interested_in_toys", "chat", 2),
                ("interested_in_running", "rule", 9),
            ):
                session.add(
                    CustomerTag(
                        customer_id=ada.id,
                        tag=tag,
                        source=source,
                        updated_at=NOW - timedelta(days=days_ago),
                    )
                )
            await add_customer(session, "bob")
        await store.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    return url


def test_the_json_lists_likes_and_dislikes_newest_first(shop: str) -> None:
    """`preferences`: {likes, dislikes}, each with category, source and date; not premium."""
    result = runner.invoke(app, ["profile", "show", "ada", "--json"])

    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout.strip().splitlines()[-1])
    assert profile["preferences"] == {
        "likes": [
            {
                "category": "toys",
                "source": "chat",
                "updated_at": (NOW - timedelta(days=2)).isoformat(),
            },
            {
                "category": "running",
                "source": "rule",
                "updated_at": (NOW - timedelta(days=9)).isoformat(),
            },
        ],
        "dislikes": [{"category": "kitchen", "source": "chat", "updated_at": NOW.isoformat()}],
    }
    assert "not_interested_in_kitchen" in [tag["tag"] for tag in profile["tags"]]


def test_the_table_has_a_preferences_section(shop: str) -> None:
    """One row per preference: what, which category, who wrote it, since when."""
    result = runner.invoke(app, ["profile", "show", "ada"])

    assert result.exit_code == 0, result.output
    section = result.stdout.split("Preferences", 1)[1].split("Slots the assistant gets")[0]
    rows = [line.split() for line in section.splitlines() if "│" in line]
    cells = [[cell for cell in row if cell != "│"] for row in rows]
    assert cells == [
        ["likes", "toys", "chat", "2026-05-30"],
        ["likes", "running", "rule", "2026-05-23"],
        ["does", "not", "want", "kitchen", "chat", "2026-06-01"],
    ]


def test_a_customer_without_preferences_says_none(shop: str) -> None:
    """bob stated nothing: an empty list each, and one line in the table view."""
    as_json = runner.invoke(app, ["profile", "show", "bob", "--json"])
    as_table = runner.invoke(app, ["profile", "show", "bob"])

    profile = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert profile["preferences"] == {"likes": [], "dislikes": []}
    assert "Preferences: none" in as_table.stdout
