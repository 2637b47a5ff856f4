"""Tag rows of one source: set-based count tags, scoped counts, reads, writes, deletes."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from rasa_personalize.store import tags as store_tags
from rasa_personalize.store.models import CustomerTag
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.store.tags import (
    InteractionCount,
    TagHolders,
    catalogue_categories,
    count_holders,
    delete_tags,
    delete_tags_except,
    refresh_count_tag,
    stream_tags,
    write_tags,
)
from rasa_personalize.store.types import Session
from tests.shops import DAY, NOW, TinyShop, build_tiny_shop

# ana viewed running items three times in the last 30 days, cleo twice.
RUNNING_VIEWS = InteractionCount("view", 2, category="running", since=NOW - 30 * DAY)
EARLIER = NOW - 5 * DAY


async def rows_by_name(session: Session, shop: TinyShop) -> set[tuple[str, str, str, float]]:
    """(customer name, tag, source, weight) of every stored tag."""
    names = {customer_id: name for name, customer_id in shop.customers.items()}
    result = await session.execute(
        select(CustomerTag.customer_id, CustomerTag.tag, CustomerTag.source, CustomerTag.weight)
    )
    return {(names[c], t, s, float(w)) for c, t, s, w in result}


async def updated_at(session: Session, customer_id: int, tag: str) -> datetime | None:
    return await session.scalar(
        select(CustomerTag.updated_at).where(
            CustomerTag.customer_id == customer_id, CustomerTag.tag == tag
        )
    )


def add_tag(session: Session, customer_id: int, tag: str, source: str, weight: float) -> None:
    session.add(
        CustomerTag(
            customer_id=customer_id, tag=tag, source=source, weight=weight, updated_at=EARLIER
        )
    )


async def test_a_count_tag_over_everyone_adds_refreshes_and_removes(store: SqlStore) -> None:
    """Holders get the tag, a stale row of the source goes, a same-named tag from another
    source stays as it was, and the counts say so."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        add_tag(session, shop.customers["ben"], "runner", "rule", 0.5)  # no longer holds
        add_tag(session, shop.customers["cleo"], "runner", "seed", 0.25)  # not the rule's
        await session.flush()
        first = await refresh_count_tag(
            session, "runner", 0.75, RUNNING_VIEWS, source="rule", now=NOW
        )
        after_first = await rows_by_name(session, shop)
        second = await refresh_count_tag(
            session, "runner", 0.5, RUNNING_VIEWS, source="rule", now=NOW + DAY
        )
        after_second = await rows_by_name(session, shop)
        refreshed = await updated_at(session, shop.customers["ana"], "runner")
        kept = await updated_at(session, shop.customers["cleo"], "runner")
    assert (first.qualifying, first.written, first.removed) == (2, 1, 1)
    assert after_first == {("ana", "runner", "rule", 0.75), ("cleo", "runner", "seed", 0.25)}
    assert (second.qualifying, second.written, second.removed) == (2, 1, 0)
    assert after_second == {("ana", "runner", "rule", 0.5), ("cleo", "runner", "seed", 0.25)}
    assert refreshed == NOW + DAY
    assert kept == EARLIER


async def test_a_count_tag_without_the_count_still_writes(store: SqlStore) -> None:
    """Skipping the qualifying count reports 0 qualifying and writes the same rows."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        changes = await refresh_count_tag(
            session,
            "buyer",
            1.0,
            InteractionCount("purchase", 1),
            source="rule",
            now=NOW,
            count_qualifying=False,
        )
        rows = await rows_by_name(session, shop)
    assert changes.qualifying == 0
    assert changes.removed == 0
    assert rows == {("ana", "buyer", "rule", 1.0)}


async def test_count_holders_in_one_pass(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every count's holders among the given customers, however the ids are chunked."""
    counts = [
        RUNNING_VIEWS,
        InteractionCount("purchase", 1),
        InteractionCount("chat_click", 2),  # ana clicked once only
        InteractionCount("view", 1, category="books"),  # cleo, 70 days ago
        InteractionCount("view", 1, category="books", since=NOW - 30 * DAY),
    ]
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        c = shop.customers
        everyone = sorted(c.values())
        holders = await count_holders(session, counts, everyone)
        only_ben_and_cleo = await count_holders(session, counts, [c["ben"], c["cleo"]])
        monkeypatch.setattr(store_tags, "ID_CHUNK", 1)
        one_by_one = await count_holders(session, counts, everyone)
        nothing = await count_holders(session, [], everyone)
    expected = [sorted([c["ana"], c["cleo"]]), [c["ana"]], [], [c["cleo"]], []]
    assert [sorted(ids) for ids in holders] == expected
    assert [sorted(ids) for ids in one_by_one] == expected
    assert only_ben_and_cleo == [[c["cleo"]], [], [], [c["cleo"]], []]
    assert nothing == []


async def test_tags_are_read_per_chunk_and_deleted_by_id(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads cover every source (or the named tags); deletes remove exactly the ids given."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        c = shop.customers
        add_tag(session, c["ana"], "runner", "rule", 0.5)
        add_tag(session, c["ana"], "vip", "crm", 1.0)
        add_tag(session, c["cleo"], "runner", "seed", 0.25)
        await session.flush()
        monkeypatch.setattr(store_tags, "ID_CHUNK", 1)
        chunks = [chunk async for chunk in stream_tags(session, [c["ana"], c["ben"], c["cleo"]])]
        runners = [
            row
            async for chunk in stream_tags(session, [c["ana"], c["cleo"]], tags={"runner"})
            for row in chunk
        ]
        vip = [row[0] for chunk in chunks for row in chunk if row[2] == "vip"]
        deleted = await delete_tags(session, vip)
        again = await delete_tags(session, vip)
        rows = await rows_by_name(session, shop)
    assert [len(chunk) for chunk in chunks] == [2, 0, 1]  # ana, ben, cleo
    assert {(customer, tag, source, weight) for _, customer, tag, source, weight in chunks[0]} == {
        (c["ana"], "runner", "rule", 0.5),
        (c["ana"], "vip", "crm", 1.0),
    }
    assert all(isinstance(weight, float) for chunk in chunks for weight in chunk.weights)
    assert sorted((customer, source) for _, customer, _, source, _ in runners) == sorted(
        [(c["ana"], "rule"), (c["cleo"], "seed")]
    )
    assert (deleted, again) == (1, 0)
    assert rows == {("ana", "runner", "rule", 0.5), ("cleo", "runner", "seed", 0.25)}


async def test_writes_insert_and_refresh_only_the_sources_rows(store: SqlStore) -> None:
    """New holders get a row; the source's rows take the new weight and time; a row of
    another source under the same name is left as it was."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        c = shop.customers
        add_tag(session, c["ana"], "premium", "rule", 0.25)
        add_tag(session, c["cleo"], "premium", "manual", 0.5)
        await session.flush()
        sent = await write_tags(
            session,
            [
                TagHolders("premium", 0.75, [c["ana"], c["ben"], c["cleo"]]),
                TagHolders("clicker", 1.0, [c["ana"]]),
                TagHolders("nobody", 1.0, []),
            ],
            source="rule",
            now=NOW,
        )
        none = await write_tags(session, [TagHolders("nobody", 1.0, [])], source="rule", now=NOW)
        rows = await rows_by_name(session, shop)
        refreshed = await updated_at(session, c["ana"], "premium")
        kept = await updated_at(session, c["cleo"], "premium")
    assert (sent, none) == (4, 0)
    assert rows == {
        ("ana", "premium", "rule", 0.75),
        ("ana", "clicker", "rule", 1.0),
        ("ben", "premium", "rule", 0.75),
        ("cleo", "premium", "manual", 0.5),
    }
    assert refreshed == NOW
    assert kept == EARLIER


async def test_tags_of_a_source_outside_a_set_are_deleted(store: SqlStore) -> None:
    """Rows of the source whose tag is not kept go; kept tags and other sources stay."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        c = shop.customers
        add_tag(session, c["ana"], "retired", "rule", 1.0)
        add_tag(session, c["ben"], "retired", "rule", 1.0)
        add_tag(session, c["ana"], "premium", "rule", 1.0)
        add_tag(session, c["cleo"], "retired", "crm", 1.0)
        await session.flush()
        removed = await delete_tags_except(session, "rule", {"premium", "clicker"})
        rows = await rows_by_name(session, shop)
    assert removed == 2
    assert rows == {("ana", "premium", "rule", 1.0), ("cleo", "retired", "crm", 1.0)}


async def test_catalogue_categories(store: SqlStore) -> None:
    """Every category of the catalogue, once each."""
    async with store.sessions.begin() as session:
        assert await catalogue_categories(session) == frozenset()
        await build_tiny_shop(session)
        assert await catalogue_categories(session) == {"running", "books"}
