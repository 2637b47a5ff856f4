"""Interaction imports (CSV and JSON Lines) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from rasa_personalize.events.validation import KNOWN_FIELDS
from rasa_personalize.identity import customer_key
from rasa_personalize.imports.interactions import (
    EVENT_HEADER_ALIASES,
    InteractionImportOptions,
    file_format_of,
    generated_event_id,
    import_interactions,
    normalise_event,
)
from rasa_personalize.imports.normalise import FieldError
from rasa_personalize.imports.report import ImportReport, Rejection
from rasa_personalize.imports.source import CsvSource, ImportFileError
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_product
from tests.imports.conftest import table_contents, write

# An export with its own header spellings, kind names, number and date formats.
MESSY_EVENTS = """\
Event ID,Customer ID,SKU,Type,Occurred At,Channel,Device,Category,Value,Qty,Price
ev-1,u-1,SKU-1,Page View,2026-05-01T10:00:00Z,WEB,Mobile,,,,
ev-2,u-1,SKU-2,add-to-cart,01.05.2026 11:00,web,,,,2,
,u-2,SKU-1,order,05/02/2026 09:30,app,,,,1,"89,90"
,u-2,,search,1777716000,app,,Running Shoes,,,
ev-5,u-3,SKU-9,view,2026-05-03,web,,,,,
ev-6,u-3,SKU-1,rating,2026-05-03,web,,,7,,
ev-7,u-3,SKU-1,view,someday,web,,,,,
ev-1,u-1,SKU-1,view,2026-05-01T10:00:00Z,web,,,,,
"""


async def seed(store: SqlStore) -> None:
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=100.0)
        await add_product(session, "SKU-2", "socks", price=10.0)


async def run(store: SqlStore, path: Path, **options: object) -> ImportReport:
    return await import_interactions(
        store.sessions,
        path,
        secret_key=TEST_SECRET,
        options=InteractionImportOptions(**options),  # type: ignore[arg-type]
        now=NOW,
    )


async def stored(store: SqlStore) -> list[tuple[object, ...]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(
                Interaction.event_id,
                Customer.customer_key,
                Interaction.kind,
                Interaction.quantity,
                Interaction.price,
                Interaction.channel,
                Interaction.device,
                Interaction.category,
                Interaction.occurred_at,
            )
            .join(Customer, Customer.id == Interaction.customer_id)
            .order_by(Interaction.occurred_at)
        )
        return [tuple(row) for row in rows]


async def test_messy_csv_is_normalised_validated_and_stored(
    store: SqlStore, tmp_path: Path
) -> None:
    """Good rows are stored normalised; bad ones are reported by line, field and reason."""
    await seed(store)
    report = await run(store, write(tmp_path, "events.csv", MESSY_EVENTS), chunk_size=3)

    assert (report.read, report.inserted, report.duplicates, report.rejected) == (8, 4, 1, 3)
    assert report.customers_created == 2  # u-1 and u-2; u-3 has nothing accepted
    assert report.rejections == (
        Rejection(6, "product", "unknown sku"),
        Rejection(7, "value", "7.0: a rating is between 1 and 5"),
        Rejection(8, "timestamp", "is not a date in a known form "
                  "(ISO 8601, YYYY/MM/DD, DD.MM.YYYY, epoch seconds)"),
    )  # fmt: skip
    rows = await stored(store)
    assert [(r[0][:7], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows] == [
        ("ev-1", "view", 1, None, "web", "mobile", None),
        ("ev-2", "cart", 2, None, "web", None, None),
        ("import-", "purchase", 1, 89.9, "app", None, None),
        ("import-", "search", 1, None, "app", None, "running_shoes"),
    ]
    assert [r[8].isoformat() for r in rows] == [
        "2026-05-01T10:00:00+00:00",
        "2026-05-01T11:00:00+00:00",
        "2026-05-02T09:30:00+00:00",  # 05/02 month first
        "2026-05-02T10:00:00+00:00",  # epoch seconds
    ]
    assert rows[0][1] == customer_key(TEST_SECRET, "u-1")


async def test_rerun_stores_nothing_twice(store: SqlStore, tmp_path: Path) -> None:
    """Generated ids are stable: the second run reports duplicates and changes no table."""
    await seed(store)
    path = write(tmp_path, "events.csv", MESSY_EVENTS)
    await run(store, path)
    before = await table_contents(store)

    again = await run(store, path)

    assert (again.inserted, again.duplicates, again.customers_created) == (0, 5, 0)
    assert await table_contents(store) == before


async def test_jsonl_rows_and_bad_lines(store: SqlStore, tmp_path: Path) -> None:
    """JSON Lines: objects are imported; broken lines and unknown fields are rejected."""
    await seed(store)
    lines = [
        json.dumps({"event_id": "j-1", "customer": 42, "product": "SKU-1", "kind": "purchase",
                    "timestamp": 1777629600, "price": 95, "quantity": "1"}),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"event_id": "j-2", "customer": "u-9", "product": "SKU-1", "kind": "view",
                    "timestamp": "2026-05-01T10:00:00Z", "email": "x@example.com"}),
    ]  # fmt: skip
    report = await run(store, write(tmp_path, "events.jsonl", "\n".join(lines) + "\n"))
    assert (report.read, report.inserted) == (4, 1)
    assert report.rejections == (
        Rejection(3, "line", "is not valid JSON"),
        Rejection(4, "line", "is a JSON list, not an object"),
        Rejection(5, "email", "is not a known event field"),
    )
    assert "x@example.com" not in json.dumps(report.to_document())


async def test_dry_run_stores_nothing_but_counts_like_a_run(
    store: SqlStore, tmp_path: Path
) -> None:
    """A dry run reports what a run would do, across chunks, and leaves the store empty."""
    await seed(store)
    path = write(tmp_path, "events.csv", MESSY_EVENTS)
    before = await table_contents(store)
    report = await import_interactions(
        store.sessions,
        path,
        secret_key=TEST_SECRET,
        options=InteractionImportOptions(chunk_size=2),
        dry_run=True,
        now=NOW,
    )
    assert (report.inserted, report.duplicates, report.rejected, report.dry_run) == (4, 1, 3, True)
    assert await table_contents(store) == before


def test_unknown_header_and_format_are_file_errors(tmp_path: Path) -> None:
    """A CSV with an unknown column, or a file of unknown format, is refused whole."""
    bad = write(tmp_path, "e.csv", "event_id,customer,colour\n1,u,red\n")
    with pytest.raises(ImportFileError, match=r"e\.csv: line 1: unknown column 'colour'"):
        CsvSource(bad, KNOWN_FIELDS, EVENT_HEADER_ALIASES, required=set())
    with pytest.raises(ImportFileError, match="cannot tell the format"):
        file_format_of(tmp_path / "events.xlsx", None)
    assert file_format_of(tmp_path / "events.xlsx", "csv") == "csv"


def test_generated_ids_depend_on_content_not_on_raw_customer_ids() -> None:
    """Equal rows, equal ids; any change of content, another id; the raw id is not hashed."""
    row = normalise_event(
        {"customer": " u-1 ", "product": "SKU-1", "kind": "View", "timestamp": "2026-05-01"},
        dayfirst=False,
    )
    assert row == {"customer": "u-1", "product": "SKU-1", "kind": "view",
                   "timestamp": "2026-05-01T00:00:00+00:00"}  # fmt: skip
    first = generated_event_id(row, TEST_SECRET)
    assert first == generated_event_id(dict(row), TEST_SECRET)
    assert first != generated_event_id({**row, "kind": "cart"}, TEST_SECRET)
    # Under another secret the same row gets another id: the customer entered as its key.
    assert first != generated_event_id(row, "another-secret-key-0123")


def test_numbers_that_are_not_numbers_are_rejected() -> None:
    """A price or quantity that cannot be read names its field."""
    with pytest.raises(FieldError, match="price: is not a number"):
        normalise_event({"price": "twelve"}, dayfirst=False)
    with pytest.raises(FieldError, match="quantity: is not a whole number"):
        normalise_event({"quantity": "1.5"}, dayfirst=False)


async def test_a_control_character_rejects_its_row_naming_the_column(
    store: SqlStore, tmp_path: Path
) -> None:
    """NUL (refused by PostgreSQL) in a cell rejects that row, CSV or JSON Lines alike."""
    await seed(store)
    csv_text = (
        "event_id,customer,product,kind,timestamp,device\n"
        "c-1,u-1,SKU-1,view,2026-05-01T10:00:00Z,mobile\n"
        "c-2,u-1,SKU-1,view,2026-05-01T10:00:00Z,mob\x00ile\n"
    )
    csv_report = await run(store, write(tmp_path, "events.csv", csv_text))
    lines = [
        json.dumps({"event_id": "j-1", "customer": "u-2", "product": "SKU-1", "kind": "view",
                    "timestamp": "2026-05-01T10:00:00Z", "location": "Ber\x00lin"}),
        json.dumps({"event_id": "j-2", "customer": "u-2", "product": "SKU-1", "kind": "view",
                    "timestamp": "2026-05-01T10:00:00Z", "location": "Berlin"}),
    ]  # fmt: skip
    jsonl_report = await run(store, write(tmp_path, "events.jsonl", "\n".join(lines) + "\n"))

    assert csv_report.rejections == (Rejection(3, "device", "contains a control character"),)
    assert jsonl_report.rejections == (Rejection(1, "location", "contains a control character"),)
    assert sorted(row[0] for row in await stored(store)) == ["c-1", "j-2"]
