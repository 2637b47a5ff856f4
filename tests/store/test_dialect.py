"""store/dialect.py: the same statement gives the same rows on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rasa_personalize.store.dialect import (
    count_where,
    dialect_of,
    insert_ignoring,
    lock_for_update,
    member_of,
    upsert,
)
from rasa_personalize.store.models import Customer, CustomerTag, Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer


def _event(event_id: str, customer_id: int, kind: str = "view") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "kind": kind,
        "quantity": 1,
        "occurred_at": NOW,
    }


def _tag(customer_id: int, tag: str, source: str, weight: float) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "tag": tag,
        "source": source,
        "weight": weight,
        "updated_at": NOW,
    }


async def _tags(session: AsyncSession) -> dict[str, tuple[str, float, Any]]:
    rows = await session.execute(
        select(CustomerTag.tag, CustomerTag.source, CustomerTag.weight, CustomerTag.updated_at)
    )
    return {tag: (source, weight, updated_at) for tag, source, weight, updated_at in rows}


async def test_insert_ignoring_skips_stored_keys_and_returns_only_new_rows(
    store: SqlStore,
) -> None:
    """A redelivered event is not stored twice, and RETURNING names only the new ones."""
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        dialect = dialect_of(session)
        statement = insert_ignoring(dialect, Interaction, ["event_id"]).returning(
            Interaction.event_id
        )
        first = await session.execute(statement, [_event("e-1", ana.id), _event("e-2", ana.id)])
        assert sorted(first.scalars().all()) == ["e-1", "e-2"]
        # e-2 again (with another kind, which must not overwrite), and one new id.
        second = await session.execute(
            statement, [_event("e-2", ana.id, "purchase"), _event("e-3", ana.id)]
        )
        assert second.scalars().all() == ["e-3"]
    async with store.sessions() as session:
        stored = dict((await session.execute(select(Interaction.event_id, Interaction.kind))).all())
    assert stored == {"e-1": "view", "e-2": "view", "e-3": "view"}


async def test_insert_ignoring_of_a_single_row_values_clause(store: SqlStore) -> None:
    """The multi-row VALUES form behaves like the executemany form."""
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        dialect = dialect_of(session)
        await session.execute(
            insert_ignoring(dialect, Interaction, ["event_id"]), [_event("e-1", ana.id)]
        )
        inserted = await session.execute(
            insert_ignoring(dialect, Interaction, ["event_id"])
            .values([_event("e-1", ana.id), _event("e-9", ana.id)])
            .returning(Interaction.event_id)
        )
        assert inserted.scalars().all() == ["e-9"]


async def test_upsert_inserts_new_rows_and_updates_the_chosen_columns(store: SqlStore) -> None:
    """Existing rows take the new weight and time; the source column is left as it was."""
    later = NOW + timedelta(hours=1, microseconds=250)
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        session.add(
            CustomerTag(customer_id=ana.id, tag="runner", source="rule", weight=0.5, updated_at=NOW)
        )
        await session.flush()
        statement = upsert(
            dialect_of(session), CustomerTag, ["customer_id", "tag"], ["weight", "updated_at"]
        )
        await session.execute(
            statement,
            [
                {**_tag(ana.id, "runner", "import", 0.75), "updated_at": later},
                _tag(ana.id, "reader", "import", 0.25),
            ],
        )
    async with store.sessions() as session:
        tags = await _tags(session)
    assert tags == {
        "runner": ("rule", 0.75, later),
        "reader": ("import", 0.25, NOW),
    }


async def test_upsert_only_where_leaves_other_rows_alone(store: SqlStore) -> None:
    """Only rows the condition holds for are updated; others keep every column."""
    later = NOW + timedelta(days=1)
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        session.add_all(
            [
                CustomerTag(
                    customer_id=ana.id, tag="runner", source="rule", weight=0.5, updated_at=NOW
                ),
                CustomerTag(
                    customer_id=ana.id, tag="vip", source="manual", weight=1.0, updated_at=NOW
                ),
            ]
        )
        await session.flush()
        statement = upsert(
            dialect_of(session),
            CustomerTag,
            ["customer_id", "tag"],
            ["weight", "updated_at"],
            only_where=CustomerTag.source == "rule",
        )
        # Several rows in one executemany: the condition's constant must survive the
        # drivers' multi-row rewrite.
        await session.execute(
            statement,
            [
                {**_tag(ana.id, "runner", "rule", 0.9), "updated_at": later},
                {**_tag(ana.id, "vip", "rule", 0.1), "updated_at": later},
                {**_tag(ana.id, "new", "rule", 0.3), "updated_at": later},
            ],
        )
    async with store.sessions() as session:
        tags = await _tags(session)
    assert tags == {
        "runner": ("rule", 0.9, later),
        "vip": ("manual", 1.0, NOW),
        "new": ("rule", 0.3, later),
    }


async def test_upsert_condition_on_an_updated_column_sees_the_old_row(store: SqlStore) -> None:
    """A condition reading the column being updated judges the stored value, not the new one.

    MySQL assigns left to right and later assignments see earlier ones; ``weight`` is
    listed first here on purpose, so it must still be assigned after ``updated_at``.
    """
    later = NOW + timedelta(days=1)
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        session.add_all(
            [
                CustomerTag(
                    customer_id=ana.id, tag="low", source="rule", weight=0.2, updated_at=NOW
                ),
                CustomerTag(
                    customer_id=ana.id, tag="high", source="rule", weight=0.8, updated_at=NOW
                ),
            ]
        )
        await session.flush()
        statement = upsert(
            dialect_of(session),
            CustomerTag,
            ["customer_id", "tag"],
            ["weight", "updated_at"],
            only_where=CustomerTag.weight < 0.5,
        )
        await session.execute(
            statement,
            [
                {**_tag(ana.id, "low", "rule", 0.9), "updated_at": later},
                {**_tag(ana.id, "high", "rule", 0.9), "updated_at": later},
            ],
        )
    async with store.sessions() as session:
        tags = await _tags(session)
    assert tags == {"low": ("rule", 0.9, later), "high": ("rule", 0.8, NOW)}


def test_upsert_refuses_a_condition_on_two_updated_columns() -> None:
    """MySQL could not keep such a condition on the old row, so no dialect accepts it."""
    with pytest.raises(ValueError, match="at most one updated column"):
        upsert(
            "sqlite",
            CustomerTag,
            ["customer_id", "tag"],
            ["weight", "updated_at"],
            only_where=(CustomerTag.weight < 0.5) & (CustomerTag.updated_at < NOW),
        )


async def test_member_of_finds_the_rows_of_the_given_values(store: SqlStore) -> None:
    """Ids (BIGINT) and keys (VARCHAR) alike; values that match nothing find nothing."""
    async with store.sessions.begin() as session:
        customers = [await add_customer(session, name) for name in ("ana", "ben", "cleo")]
    ana, ben, cleo = customers
    async with store.sessions() as session:
        dialect = dialect_of(session)
        by_id = await session.scalars(
            select(Customer.customer_key).where(
                member_of(Customer.id, [ana.id, cleo.id, 10**12], dialect)
            )
        )
        by_key = await session.scalars(
            select(Customer.id).where(
                member_of(Customer.customer_key, [ben.customer_key, "no-such-key"], dialect)
            )
        )
        assert sorted(by_id.all()) == sorted([ana.customer_key, cleo.customer_key])
        assert by_key.all() == [ben.id]


async def test_lock_for_update_selects_the_same_rows(store: SqlStore) -> None:
    """Locking changes no result: the locked rows come back in order."""
    async with store.sessions.begin() as session:
        ids = [(await add_customer(session, name)).id for name in ("ana", "ben", "cleo")]
    async with store.sessions.begin() as session:
        dialect = dialect_of(session)
        locked = await session.scalars(
            lock_for_update(
                select(Customer.id)
                .where(member_of(Customer.id, ids[:2], dialect))
                .order_by(Customer.id),
                dialect,
            )
        )
        assert locked.all() == ids[:2]


async def test_count_where_is_a_whole_number(store: SqlStore) -> None:
    """A conditional count per group is an int on every backend (MySQL's SUM is DECIMAL)."""
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        dialect = dialect_of(session)
        await session.execute(
            insert_ignoring(dialect, Interaction, ["event_id"]),
            [_event("e-1", ana.id), _event("e-2", ana.id, "purchase"), _event("e-3", ana.id)],
        )
    async with store.sessions() as session:
        views, purchases = (
            await session.execute(
                select(
                    count_where(Interaction.kind == "view"),
                    count_where(Interaction.kind == "purchase"),
                ).group_by(Interaction.customer_id)
            )
        ).one()
    assert (views, purchases) == (2, 1)
    assert type(views) is int
    assert type(purchases) is int
