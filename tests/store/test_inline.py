"""Inline snapshot reads of a SQLite file: the same snapshots as the threaded read, fresh,
never waiting for a writer, and out of the way whenever they cannot answer at once."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from rasa_personalize.identity import customer_key
from rasa_personalize.store.catalogue import replace_precomputed
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.database import SQLITE_CACHE_KIB
from rasa_personalize.store.history import HistoryQuery
from rasa_personalize.store.inline import (
    InlineReadUnavailableError,
    InlineSnapshotReader,
    _utc_time_reader,
)
from rasa_personalize.store.models import CustomerAlias, UtcDateTime
from rasa_personalize.store.records import CustomerSnapshot
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import NOT_INLINE, SqlStore, _json_document
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product


def key(name: str) -> str:
    return customer_key(TEST_SECRET, name)


def inline(store: SqlStore, name: str) -> CustomerSnapshot | None:
    """The inline answer, which must be there."""
    answer = store.inline_snapshot(key(name))
    assert answer is not NOT_INLINE
    return answer


def inline_tier(store: SqlStore, name: str) -> str:
    snapshot = inline(store, name)
    assert snapshot is not None
    return snapshot.loyalty_tier


async def threaded(store: SqlStore, customer: str) -> object:
    """The snapshot through the worker thread, inline reads switched off."""
    reader = store._inline
    store._inline = None
    try:
        return await store.load_snapshot(key(customer))
    finally:
        store._inline = reader


async def seeded(store: SqlStore) -> None:
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-RUN-1", "running", price=100.0)
        ada = await add_customer(
            session, "ada", tier="gold", tags=("premium", "runner"), segment="loyal", age=36
        )
        await add_interactions(session, ada, shoes, "purchase", 2, days_ago=3, paid=80.0)
        await add_customer(session, "bare")  # no profile, no tags, no segment
        session.add(CustomerAlias(alias_key=key("ada-old"), customer_id=ada.id, match="exact"))
        await set_consent(
            session,
            key("ada"),
            {"personalization": True, "marketing": False},
            source="cli",
            policy_version=None,
            now=NOW,
        )
        await rebuild_profile_metrics(session, now=NOW)


@pytest.mark.parametrize("customer", ["ada", "bare", "ada-old", "nobody"])
async def test_inline_snapshot_equals_the_threaded_one(
    sqlite_store: SqlStore, customer: str
) -> None:
    """Tier, demographics, metrics, tags in order, segment, aliases, unknown keys: equal."""
    await seeded(sqlite_store)

    assert inline(sqlite_store, customer) == await threaded(sqlite_store, customer)


async def test_inline_snapshot_values_are_converted(sqlite_store: SqlStore) -> None:
    """Times are aware UTC datetimes and documents are mappings, as the ORM types give."""
    await seeded(sqlite_store)

    snapshot = inline(sqlite_store, "ada")

    assert snapshot is not None
    assert snapshot.created_at.tzinfo is not None
    assert snapshot.metrics.purchase_count == 2
    assert snapshot.metrics.favorite_category == "running"
    assert [t.tag for t in snapshot.tags] == ["premium", "runner"]
    assert snapshot.tags[0].updated_at.tzinfo is not None
    assert snapshot.segment.segment == "loyal"
    assert snapshot.consent == {"personalization": True, "marketing": False}


async def test_a_committed_write_is_seen_by_the_next_inline_read(sqlite_store: SqlStore) -> None:
    """No cache: the read after a commit sees the new tier."""
    await seeded(sqlite_store)
    assert inline_tier(sqlite_store, "ada") == "gold"

    async with sqlite_store.sessions.begin() as session:
        await session.execute(
            text("UPDATE customers SET loyalty_tier = 'platinum' WHERE customer_key = :k"),
            {"k": key("ada")},
        )

    assert inline_tier(sqlite_store, "ada") == "platinum"


async def test_an_open_write_transaction_neither_blocks_nor_leaks(
    sqlite_store: SqlStore, sqlite_url: str
) -> None:
    """A writer holding its lock: the inline read answers at once, with the committed data."""
    await seeded(sqlite_store)
    sqlite_store.inline_snapshot(key("ada"))  # the reader exists
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "UPDATE customers SET loyalty_tier = 'silver' WHERE customer_key = ?", (key("ada"),)
        )

        during = inline_tier(sqlite_store, "ada")

        writer.execute("COMMIT")
    finally:
        writer.close()
    assert during == "gold"
    assert inline_tier(sqlite_store, "ada") == "silver"


async def test_a_failing_inline_read_falls_back_to_the_thread(sqlite_store: SqlStore) -> None:
    """Any sqlite3 error: inline_snapshot steps aside and load_snapshot still answers."""
    await seeded(sqlite_store)
    reader = sqlite_store._inline_reader()
    assert reader is not None
    reader.close()  # every statement now raises sqlite3.ProgrammingError

    with pytest.raises(InlineReadUnavailableError):
        reader.snapshot(key("ada"))
    assert sqlite_store.inline_snapshot(key("ada")) is NOT_INLINE
    snapshot = await sqlite_store.load_snapshot(key("ada"))
    assert snapshot is not None
    assert snapshot.loyalty_tier == "gold"
    sqlite_store._inline = None


def test_no_inline_reader_without_wal_or_a_file(tmp_path: Path, sqlite_store: SqlStore) -> None:
    """Rollback-journal files, in-memory databases, missing files and servers: no reader."""
    dialect = sqlite_store.engine.sync_engine.dialect
    journal = tmp_path / "journal.db"
    sqlite3.connect(journal).execute("CREATE TABLE t (x)").connection.close()

    assert InlineSnapshotReader.open(f"sqlite:///{journal}", dialect) is None
    assert InlineSnapshotReader.open("sqlite://", dialect) is None
    assert InlineSnapshotReader.open(f"sqlite:///{tmp_path / 'missing.db'}", dialect) is None
    assert InlineSnapshotReader.open("postgresql://localhost/x", dialect) is None


async def test_stores_on_a_server_have_no_inline_reads(database_url: str, store: SqlStore) -> None:
    """PostgreSQL and MariaDB are read through their async drivers."""
    expected_inline = database_url.startswith("sqlite")
    await seeded(store)

    assert (store.inline_snapshot(key("ada")) is not NOT_INLINE) is expected_inline


async def test_inline_items_equal_the_threaded_ones(sqlite_store: SqlStore) -> None:
    """Purchases, recent interactions and the last purchase's title: the same either way."""
    await seeded(sqlite_store)
    snapshot = inline(sqlite_store, "ada")
    assert snapshot is not None
    since = NOW - timedelta(days=30)

    inline_items = await sqlite_store.load_customer_items(snapshot.customer_id, since)
    reader = sqlite_store._inline
    sqlite_store._inline = None
    try:
        threaded_items = await sqlite_store.load_customer_items(snapshot.customer_id, since)
    finally:
        sqlite_store._inline = reader

    assert inline_items == threaded_items
    assert inline_items.purchased == frozenset({"SKU-RUN-1"})
    assert inline_items.last_purchase_title is not None
    # The synchronous entry point answers the same, without a coroutine.
    assert sqlite_store.inline_items(snapshot.customer_id, since) == threaded_items


async def test_inline_items_answer_not_inline_without_a_reader(sqlite_store: SqlStore) -> None:
    await seeded(sqlite_store)
    snapshot = inline(sqlite_store, "ada")
    assert snapshot is not None
    sqlite_store._inline = None  # as on PostgreSQL, or a file outside WAL mode

    assert sqlite_store.inline_items(snapshot.customer_id, NOW) is NOT_INLINE


async def test_every_sqlite_connection_gets_the_larger_page_cache(sqlite_store: SqlStore) -> None:
    """The hot path's reads hit pages all over the file: each connection may cache 64 MiB."""
    await seeded(sqlite_store)
    assert sqlite_store.inline_snapshot(key("ada")) is not NOT_INLINE
    reader = sqlite_store._inline
    assert reader is not None

    inline_pages = reader._connection.execute("PRAGMA cache_size").fetchone()[0]
    assert sqlite_store._thread_engine is not None
    with sqlite_store._thread_engine.connect() as connection:
        threaded_pages = connection.exec_driver_sql("PRAGMA cache_size").scalar()

    assert inline_pages == threaded_pages == -SQLITE_CACHE_KIB == -65_536


@pytest.mark.parametrize(
    ("since_days", "after_days"),
    [
        # no history asked for
        (30, None),
        # the recent window reaches the cutoff and holds the newer purchases: read
        (30, 10),
        # nothing after the cutoff: the recent window says so, no statement
        (30, -1),
        # the window does not reach back to the cutoff: the statement decides
        (1, 10),
        # a history of everything
        (30, "all"),
    ],
)
async def test_inline_items_with_history_and_a_list_equal_the_threaded_ones(
    sqlite_store: SqlStore, since_days: int, after_days: int | str | None
) -> None:
    """With a precomputed list and any history query, the inline items are the threaded ones."""
    await seeded(sqlite_store)
    snapshot = inline(sqlite_store, "ada")
    assert snapshot is not None
    async with sqlite_store.sessions.begin() as session:
        await replace_precomputed(
            session, [(snapshot.customer_id, [["SKU-RUN-1", 0.75], ["SKU-X", 0.5]])], "v7"
        )
    since = NOW - timedelta(days=since_days)
    history = (
        None
        if after_days is None
        else HistoryQuery(
            after=None if after_days == "all" else NOW - timedelta(days=float(after_days)),
            kinds=frozenset({"purchase", "view"}),
        )
    )

    reader = sqlite_store._inline_reader()
    assert reader is not None
    # Straight from the reader: a failure must not pass as the thread's answer.
    inline_items = reader.items(snapshot.customer_id, since, with_precomputed=True, history=history)
    sqlite_store._inline = None
    try:
        threaded_items = await sqlite_store.load_customer_items(
            snapshot.customer_id, since, history=history
        )
    finally:
        sqlite_store._inline = reader

    assert inline_items == threaded_items
    assert inline_items.precomputed == (("SKU-RUN-1", 0.75), ("SKU-X", 0.5))
    assert inline_items.precomputed_version == "v7"
    if history is not None and after_days != -1:
        assert inline_items.history is not None
        assert [entry.sku for entry in inline_items.history.entries] == ["SKU-RUN-1"]


@pytest.mark.parametrize(
    "document",
    [
        '{"favorite_category": "running", "category_affinity": {"running": 0.75}}',
        # what json writes and orjson refuses: read as json reads it
        '{"score": NaN, "big": 123456789012345678901234567890}',
        '["\\ud800"]',
    ],
)
def test_stored_json_documents_read_as_json_reads_them(document: str) -> None:
    """The SQLite engine's faster JSON reader gives what ``json.loads`` gives, always."""
    found, expected = _json_document(document), json.loads(document)
    assert repr(found) == repr(expected)


@pytest.mark.parametrize(
    "stored",
    [
        # as SQLAlchemy writes a time into SQLite
        "2026-12-07 10:11:12.123456",
        # as other writers might have: no fraction, a T, an offset, a Z
        "2026-12-07 10:11:12",
        "2026-12-07T10:11:12.123456",
        "2026-12-07 10:11:12.123+02:00",
        "2026-12-07 10:11:12Z",
    ],
)
def test_stored_times_read_inline_as_sqlalchemy_reads_them(stored: str) -> None:
    """The inline reader's quick reading of a stored time is SQLAlchemy's, aware and UTC."""
    dialect = sqlite.dialect()
    processor = UtcDateTime()._cached_result_processor(dialect, None)
    assert processor is not None
    quick = _utc_time_reader(processor)(stored)
    assert quick == processor(stored)
    assert quick.tzinfo is timezone.utc


def test_a_time_that_is_not_one_fails_as_before() -> None:
    """Text that only looks like a stored time is refused by SQLAlchemy's converter."""
    processor = UtcDateTime()._cached_result_processor(sqlite.dialect(), None)
    assert processor is not None
    with pytest.raises(ValueError, match="month must be in"):
        _utc_time_reader(processor)("2026-13-07 10:11:12.123456")
