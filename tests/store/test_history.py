"""A customer's aggregated history on SQLite and PostgreSQL: what is read, and when."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.store.history import (
    HistoryQuery,
    has_newer_interactions,
    read_history_entries,
)
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product

COUNTED = frozenset({"view", "cart", "purchase", "feedback"})


async def shopper(store: SqlStore) -> int:
    """One customer: shoes bought twice and viewed, a mug viewed, a lamp only shown."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-SHOES", "running")
        mug = await add_product(session, "SKU-MUG", "kitchen")
        lamp = await add_product(session, "SKU-LAMP", "home")
        ada = await add_customer(session, "ada")
        await add_interactions(session, ada, shoes, "purchase", 2, days_ago=10)  # days 10, 11
        await add_interactions(session, ada, shoes, "view", 3, days_ago=12)  # days 12..14
        await add_interactions(session, ada, mug, "view", 1, days_ago=5)
        await add_interactions(session, ada, lamp, "shown", 2, days_ago=1)
        return ada.id


async def test_history_is_aggregated_per_product_kind_and_value(store: SqlStore) -> None:
    """One row per (sku, kind, value) with its count and newest time, newest first."""
    customer_id = await shopper(store)
    query = HistoryQuery(after=None, kinds=COUNTED)
    async with store.engine.connect() as connection:
        entries = await connection.run_sync(read_history_entries, customer_id, query)
    assert [(e.sku, e.kind, e.value, e.count) for e in entries] == [
        ("SKU-MUG", "view", None, 1),
        ("SKU-SHOES", "purchase", None, 2),
        ("SKU-SHOES", "view", None, 3),
    ]
    assert [e.last_at for e in entries] == [
        NOW - timedelta(days=5),
        NOW - timedelta(days=10),
        NOW - timedelta(days=12),
    ]


async def test_history_keeps_only_the_most_recently_touched_products(store: SqlStore) -> None:
    """limit=1: the mug (touched 5 days ago) stays, the shoes (10 days ago) go."""
    customer_id = await shopper(store)
    query = HistoryQuery(after=None, kinds=COUNTED, limit=1)
    async with store.engine.connect() as connection:
        entries = await connection.run_sync(read_history_entries, customer_id, query)
    assert {e.sku for e in entries} == {"SKU-MUG"}


async def test_history_reads_only_the_newest_events(store: SqlStore) -> None:
    """max_events=3: the mug view and the two purchases; the older shoe views are cut."""
    customer_id = await shopper(store)
    query = HistoryQuery(after=None, kinds=COUNTED, max_events=3)
    async with store.engine.connect() as connection:
        entries = await connection.run_sync(read_history_entries, customer_id, query)
    assert [(e.sku, e.kind, e.count) for e in entries] == [
        ("SKU-MUG", "view", 1),
        ("SKU-SHOES", "purchase", 2),
    ]


@pytest.mark.parametrize(
    ("days_before_now", "expected"),
    [
        (6, True),  # the mug view (5 days ago) is newer
        (5, False),  # nothing strictly newer than the mug view
        (2, False),  # only the lamp was shown since: "shown" does not count
    ],
)
async def test_newer_interactions_are_found_by_query_and_by_recent_rows_alike(
    store: SqlStore, days_before_now: int, expected: bool
) -> None:
    """The shortcut over already-read recent rows answers as the statement does."""
    customer_id = await shopper(store)
    after = NOW - timedelta(days=days_before_now)
    query = HistoryQuery(after=after, kinds=COUNTED)
    recent = [("shown", NOW - timedelta(days=1)), ("shown", NOW - timedelta(days=2))]
    recent.append(("view", NOW - timedelta(days=5)))
    async with store.engine.connect() as connection:
        by_statement = await connection.run_sync(has_newer_interactions, customer_id, query)
        by_recent_rows = await connection.run_sync(
            lambda sync: has_newer_interactions(
                sync,
                customer_id,
                query,
                recent,
                recent_since=NOW - timedelta(days=7),
                recent_complete=True,
            )
        )
    assert by_statement is expected
    assert by_recent_rows is expected


async def test_customer_read_brings_the_history_only_when_something_is_new(
    store: SqlStore,
) -> None:
    """Cutoff before the mug view: the whole history comes along; after it: nothing."""
    await shopper(store)
    key = customer_key(TEST_SECRET, "ada")
    since = NOW - timedelta(days=30)
    stale = HistoryQuery(after=NOW - timedelta(days=6), kinds=COUNTED)
    current = HistoryQuery(after=NOW - timedelta(days=2), kinds=COUNTED)

    _, with_news = await store.load_customer_context(key, since, history=stale)
    _, without = await store.load_customer_context(key, since, history=current)
    _, unasked = await store.load_customer_context(key, since)

    assert with_news is not None
    assert with_news.history is not None
    assert with_news.history.newest_at == NOW - timedelta(days=5)
    assert {e.sku for e in with_news.history.entries} == {"SKU-MUG", "SKU-SHOES"}
    assert without is not None
    assert without.history is not None
    assert without.history.entries == ()
    assert unasked is not None
    assert unasked.history is None
    assert unasked.customer_id == with_news.customer_id


async def test_history_can_be_read_on_its_own(store: SqlStore) -> None:
    """The service's fallback read gives the same history as the combined read."""
    customer_id = await shopper(store)
    query = HistoryQuery(after=None, kinds=COUNTED)
    history = await store.load_customer_history(customer_id, query)
    _, items = await store.load_customer_context(
        customer_key(TEST_SECRET, "ada"), NOW - timedelta(days=30), history=query
    )
    assert items is not None
    assert items.history == history
    assert len(history.entries) == 3


def at(days: int) -> datetime:
    return NOW - timedelta(days=days)


@pytest.mark.parametrize(
    ("read", "wanted", "expected"),
    [
        (HistoryQuery(at(5), COUNTED), HistoryQuery(at(2), COUNTED), True),  # earlier cutoff
        (HistoryQuery(at(2), COUNTED), HistoryQuery(at(5), COUNTED), False),  # later cutoff
        (HistoryQuery(None, COUNTED), HistoryQuery(at(5), COUNTED), True),  # read regardless
        (HistoryQuery(at(5), COUNTED), HistoryQuery(None, COUNTED), False),  # may be old only
        (HistoryQuery(None, COUNTED), HistoryQuery(None, COUNTED, limit=10), False),  # cap
        (HistoryQuery(None, COUNTED), HistoryQuery(None, frozenset({"view"})), False),  # kinds
    ],
)
def test_a_history_answers_another_query_only_when_it_covers_it(
    read: HistoryQuery, wanted: HistoryQuery, expected: bool
) -> None:
    """covers(): same kinds and caps, and a cutoff no later than the one wanted."""
    assert read.covers(wanted) is expected


@pytest.mark.parametrize(
    "fields",
    [
        {"kinds": frozenset()},  # nothing would ever count
        {"kinds": COUNTED, "limit": 0},  # no product at all
        {"kinds": COUNTED, "after": datetime(2026, 1, 1)},  # naive time
    ],
)
def test_invalid_history_queries_are_refused(fields: dict[str, object]) -> None:
    """A query that could not mean anything fails when it is made, not when it is run."""
    values: dict[str, object] = {"after": None, **fields}
    with pytest.raises(InvalidInputError):
        HistoryQuery(**values)  # type: ignore[arg-type]
