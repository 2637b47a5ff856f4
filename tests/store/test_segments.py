"""Segment assignment rows and true groups, on every backend."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from rasa_personalize.store import segments as store_segments
from rasa_personalize.store.models import Customer, SegmentAssignment
from rasa_personalize.store.segments import (
    delete_segment_assignments,
    read_synthetic_groups,
    write_segment_assignments,
)
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.store.types import Session
from tests.shops import DAY, NOW, build_tiny_shop


async def assignment_rows(session: Session) -> list[tuple[int, str, str, str, float]]:
    """(customer id, method, segment, model version, score), ordered."""
    result = await session.execute(
        select(
            SegmentAssignment.customer_id,
            SegmentAssignment.method,
            SegmentAssignment.segment,
            SegmentAssignment.model_version,
            SegmentAssignment.score,
        ).order_by(SegmentAssignment.customer_id, SegmentAssignment.method)
    )
    return [(c, m, s, v, float(score)) for c, m, s, v, score in result]


@pytest.mark.parametrize("copy_from", [10_000, 1])
async def test_assignments_are_upserted_per_customer_and_method(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, copy_from: int
) -> None:
    """A second write of a method updates its rows in place; another method's rows stay;
    progress is reported after every batch. With ``copy_from`` 1, PostgreSQL writes
    through COPY and one upsert (the path of large segmentations)."""
    monkeypatch.setattr(store_segments, "WRITE_BATCH", 2)
    monkeypatch.setattr(store_segments, "COPY_CHUNK", 2)
    monkeypatch.setattr(store_segments, "COPY_FROM", copy_from)
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        ids = sorted(shop.customers.values())
        progress: list[int] = []
        written = await write_segment_assignments(
            session,
            method="kmeans",
            model_version="v1",
            customer_ids=ids,
            segments=["loyal", "browser", "at_risk"],
            scores=[0.5, 0.25, 1.0],
            now=NOW,
            on_written=progress.append,
        )
        await write_segment_assignments(
            session, method="gmm", model_version="g1", customer_ids=ids[:1],
            segments=["loyal"], scores=[0.75], now=NOW,
        )  # fmt: skip
        rewritten = await write_segment_assignments(
            session, method="kmeans", model_version="v2", customer_ids=ids[1:],
            segments=["loyal", "loyal"], scores=[0.125, 0.5], now=NOW + DAY,
        )  # fmt: skip
        rows = await assignment_rows(session)
        assigned_at = await session.scalar(
            select(SegmentAssignment.assigned_at).where(
                SegmentAssignment.customer_id == ids[2], SegmentAssignment.method == "kmeans"
            )
        )
    assert (written, rewritten) == (3, 2)
    assert progress == [2, 3]
    assert rows == [
        (ids[0], "gmm", "loyal", "g1", 0.75),
        (ids[0], "kmeans", "loyal", "v1", 0.5),
        (ids[1], "kmeans", "loyal", "v2", 0.125),
        (ids[2], "kmeans", "loyal", "v2", 0.5),
    ]
    assert assigned_at == NOW + DAY


async def test_assignments_need_one_segment_and_score_per_customer(
    sqlite_store: SqlStore,
) -> None:
    """Sequences of different lengths are refused before anything is written."""
    async with sqlite_store.sessions.begin() as session:
        with pytest.raises(ValueError, match="2 customer ids, 1 segments and 2 scores"):
            await write_segment_assignments(
                session, method="kmeans", model_version="v1", customer_ids=[1, 2],
                segments=["loyal"], scores=[0.5, 0.5], now=NOW,
            )  # fmt: skip
        assert await assignment_rows(session) == []


async def test_deleting_assignments_keeps_other_methods_and_customers(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the method's rows of the given customers go, whatever the chunk size."""
    monkeypatch.setattr(store_segments, "ID_CHUNK", 1)
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        ids = sorted(shop.customers.values())
        for method in ("kmeans", "dbscan"):
            await write_segment_assignments(
                session, method=method, model_version="v1", customer_ids=ids,
                segments=["loyal"] * 3, scores=[0.5] * 3, now=NOW,
            )  # fmt: skip
        removed = await delete_segment_assignments(session, "dbscan", [ids[0], ids[2], 999])
        nothing = await delete_segment_assignments(session, "dbscan", [])
        rows = await assignment_rows(session)
    assert (removed, nothing) == (2, 0)
    assert [(customer, method) for customer, method, *_ in rows] == [
        (ids[0], "kmeans"),
        (ids[1], "dbscan"),
        (ids[1], "kmeans"),
        (ids[2], "kmeans"),
    ]


async def test_synthetic_groups_of_the_customers_who_have_one(store: SqlStore) -> None:
    """Only customers with a known true group, each with it."""
    async with store.sessions.begin() as session:
        assert len(await read_synthetic_groups(session)) == 0
        customers = [
            Customer(customer_key="k-1", synthetic_group="loyal"),
            Customer(customer_key="k-2"),
            Customer(customer_key="k-3", synthetic_group="at_risk"),
        ]
        session.add_all(customers)
        await session.flush()
        groups = await read_synthetic_groups(session)
    assert groups.customer_ids.dtype.kind == "i"
    assert sorted(zip(groups.customer_ids.tolist(), groups.groups, strict=True)) == [
        (customers[0].id, "loyal"),
        (customers[2].id, "at_risk"),
    ]
