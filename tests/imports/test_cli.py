"""``personalize import customers|interactions`` through the real command line."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.store.models import CustomerTag
from tests.conftest import migrated_store
from tests.imports.conftest import MESSY_CUSTOMERS, write

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite store, a secret and a contact key in the environment."""
    database_url = f"sqlite:///{tmp_path / 'store.db'}"

    async def migrate() -> None:
        store = await migrated_store(database_url)
        await store.dispose()

    asyncio.run(migrate())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", database_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "cli-test-secret-key")
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY", base64.b64encode(bytes(32)).decode())
    return database_url


def import_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["import", *args, "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_import_group_keeps_movielens_and_adds_files() -> None:
    """`personalize import` lists the dataset importer and both file importers."""
    result = runner.invoke(app, ["import", "--help"])
    assert result.exit_code == 0
    for command in ("movielens", "customers", "interactions"):
        assert command in result.stdout


def test_customers_json_then_rerun_then_dry_run(url: str, tmp_path: Path) -> None:
    """The JSON report counts; a rerun inserts and merges nothing."""
    path = str(write(tmp_path, "customers.csv", MESSY_CUSTOMERS))
    first = import_json("customers", path)
    assert {k: first[k] for k in ("read", "inserted", "merged_exact", "merged_fuzzy",
                                  "duplicates", "rejected")} == {
        "read": 8, "inserted": 3, "merged_exact": 1, "merged_fuzzy": 1, "duplicates": 1,
        "rejected": 2,
    }  # fmt: skip
    again = import_json("customers", path)
    assert (again["inserted"], again["merged_exact"], again["merged_fuzzy"]) == (0, 0, 0)
    assert again["unchanged"] == 3


def test_dry_run_and_no_fuzzy(url: str, tmp_path: Path) -> None:
    """--dry-run reports and stores nothing; --no-fuzzy keeps the two Annas apart."""
    path = str(write(tmp_path, "customers.csv", MESSY_CUSTOMERS))
    dry = import_json("customers", path, "--dry-run", "--no-fuzzy")
    assert (dry["inserted"], dry["merged_fuzzy"], dry["dry_run"]) == (4, 0, True)
    real = import_json("customers", path, "--fuzzy-threshold", "0")
    assert real["inserted"] == 4  # the dry run left nothing behind


def test_table_report_lists_merges_and_rejections_without_personal_data(
    url: str, tmp_path: Path
) -> None:
    """The human report shows counts, merges by line and rejections by line and field."""
    result = runner.invoke(
        app, ["import", "customers", str(write(tmp_path, "c.csv", MESSY_CUSTOMERS))]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "merged (fuzzy)" in out
    assert "line 5 merged into line 2 (fuzzy, score 90)" in out
    assert "is not a valid e-mail address" in out
    for personal in ("not-an-email", "Carla", "Dan Brown", "c-005", "@example"):
        assert personal not in result.output


def test_unreadable_files_and_bad_options_exit_non_zero(url: str, tmp_path: Path) -> None:
    """A bad header or a missing file exits 1 naming it; a bad region exits 2."""
    bad = write(tmp_path, "bad.csv", "customer,shoe size\nc-1,42\n")
    result = runner.invoke(app, ["import", "customers", str(bad)])
    assert result.exit_code == 1
    assert "bad.csv: line 1: unknown column 'shoe size'" in result.stderr
    missing = runner.invoke(app, ["import", "interactions", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1
    assert "nope.csv: no such file" in missing.stderr
    not_utf8 = tmp_path / "latin1.csv"
    not_utf8.write_bytes("customer,name\nc-1,J\xfcrgen\n".encode("latin-1"))
    encoded = runner.invoke(app, ["import", "customers", str(not_utf8)])
    assert encoded.exit_code == 1
    assert "latin1.csv: line 2: not UTF-8 text" in encoded.stderr
    region = runner.invoke(app, ["import", "customers", str(bad), "--default-region", "XX"])
    assert region.exit_code == 2
    assert "default region" in region.stderr


def test_interactions_jsonl_and_rerun(url: str, tmp_path: Path) -> None:
    """Events for new customers are stored once; the rerun finds them all stored."""
    lines = "\n".join(
        json.dumps({"customer": f"u-{n}", "kind": "search", "category": "Running Shoes",
                    "timestamp": f"2026-05-0{n + 1}T10:00:00Z"})
        for n in range(3)
    )  # fmt: skip
    path = str(write(tmp_path, "events.jsonl", lines))
    first = import_json("interactions", path)
    assert (first["read"], first["inserted"], first["customers_created"]) == (3, 3, 3)
    again = import_json("interactions", path)
    assert (again["inserted"], again["duplicates"]) == (0, 3)


def test_customers_import_applies_the_tag_rules_file(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PERSONALIZE_TAGS_PATH's rules tag imported customers; a broken file stops the import."""
    rules = write(
        tmp_path, "tags.yml", "tags:\n  - tag: vip\n    when: {feature: loyalty_tier, gte: 2}\n"
    )
    monkeypatch.setenv("PERSONALIZE_TAGS_PATH", str(rules))
    import_json("customers", str(write(tmp_path, "c.csv", MESSY_CUSTOMERS)))

    async def vip_count() -> int:
        store = await migrated_store(url)
        try:
            async with store.sessions() as session:
                return int(
                    await session.scalar(
                        select(func.count())
                        .select_from(CustomerTag)
                        .where(CustomerTag.tag == "vip")
                    )
                    or 0
                )
        finally:
            await store.dispose()

    assert asyncio.run(vip_count()) == 2  # c-001 gold, c-007 platinum

    rules.write_text("tags:\n  - tag: vip\n    when: {feature: shoe_size, gte: 2}\n")
    broken = runner.invoke(
        app, ["import", "customers", str(write(tmp_path, "d.csv", "customer\nc-9\n"))]
    )
    assert broken.exit_code == 1
    assert "tags.yml" in broken.stderr
    assert "shoe_size" in broken.stderr
