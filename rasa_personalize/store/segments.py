"""Segment assignment rows, and the true groups a segmentation can be scored against.

A method keeps one current ``segment_assignments`` row per customer: a run upserts on
(customer, method) and deletes the rows of customers it left unassigned. The engine reads
the latest row of any method (:func:`rasa_personalize.engine.segment_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import String, column, delete, literal, select, table, text

from rasa_personalize.store.dialect import POSTGRESQL, dialect_of, member_of, upsert
from rasa_personalize.store.models import Customer, SegmentAssignment, UtcDateTime
from rasa_personalize.store.types import Session

# Rows per executemany: a few thousand amortize the round trip on every backend.
WRITE_BATCH: Final = 2_000
# Customer ids per DELETE: both SQLite and asyncpg cap bound parameters at 32k.
ID_CHUNK: Final = 5_000
# Rows per streamed partition of the true groups.
STREAM_BATCH: Final = 20_000

# From this many rows on, PostgreSQL gets them through COPY (_copy_assignments).
COPY_FROM: Final = 10_000
# Rows per COPY call: bounded memory for the records the driver encodes.
COPY_CHUNK: Final = 100_000
_UPLOAD: Final = "segment_assignments_upload"

_KEY: Final = ("customer_id", "method")
_REFRESHED: Final = ("segment", "model_version", "score", "assigned_at")


@dataclass(frozen=True, eq=False)
class SyntheticGroups:
    """The customers whose true group is known (demo data), and that group.

    Attributes:
        customer_ids: store ids, in no particular order.
        groups: ``customers.synthetic_group`` of each.
    """

    customer_ids: NDArray[np.int64]
    groups: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass(frozen=True, eq=False)
class SegmentAssignments:
    """One run's rows of a method: a segment and a score per customer, all assigned at
    once by one model version.

    Attributes:
        method: the segmentation method (with the customer, the row's key).
        model_version: the segmentation model that assigned them.
        customer_ids, segments, scores: one entry per customer, in the same order.
        assigned_at: when they were assigned.

    Raises:
        ValueError: the three sequences differ in length.
    """

    method: str
    model_version: str
    customer_ids: Sequence[int]
    segments: Sequence[str]
    scores: Sequence[float]
    assigned_at: datetime

    def __post_init__(self) -> None:
        total = len(self.customer_ids)
        if len(self.segments) != total or len(self.scores) != total:
            raise ValueError(
                f"assignments: {total} customer ids, {len(self.segments)} segments and "
                f"{len(self.scores)} scores; expected one of each per customer"
            )

    def __len__(self) -> int:
        return len(self.customer_ids)

    def rows(self, start: int, end: int) -> list[dict[str, Any]]:
        """Customers ``start`` to ``end`` as ``segment_assignments`` rows."""
        return [
            {
                "customer_id": self.customer_ids[i],
                "segment": self.segments[i],
                "method": self.method,
                "model_version": self.model_version,
                "score": self.scores[i],
                "assigned_at": self.assigned_at,
            }
            for i in range(start, end)
        ]

    def upload_records(self, start: int, end: int) -> list[tuple[int, str, float | None]]:
        """Customers ``start`` to ``end`` as (customer id, segment, score) records for
        ``COPY``, in plain Python values: the driver does not encode numpy scalars."""
        return [
            (int(customer), str(segment), None if score is None else float(score))
            for customer, segment, score in zip(
                self.customer_ids[start:end],
                self.segments[start:end],
                self.scores[start:end],
                strict=True,
            )
        ]


async def write_segment_assignments(
    session: Session,
    *,
    method: str,
    model_version: str,
    customer_ids: Sequence[int],
    segments: Sequence[str],
    scores: Sequence[float],
    now: datetime,
    on_written: Callable[[int], None] | None = None,
) -> int:
    """Upsert one row per customer for ``method``: segment, model version, score, ``now``.

    Args:
        customer_ids, segments, scores: one entry per customer, in the same order.
        on_written: called with the number of rows written so far, after each batch.

    Returns:
        rows written.

    Raises:
        ValueError: the three sequences differ in length.
    """
    assignments = SegmentAssignments(
        method=method,
        model_version=model_version,
        customer_ids=customer_ids,
        segments=segments,
        scores=scores,
        assigned_at=now,
    )
    total = len(assignments)
    dialect = dialect_of(session)
    if dialect == POSTGRESQL and total >= COPY_FROM:
        await _copy_assignments(session, assignments, on_written)
        return total
    statement = upsert(dialect, SegmentAssignment, _KEY, _REFRESHED)
    for start in range(0, total, WRITE_BATCH):
        end = min(total, start + WRITE_BATCH)
        await session.execute(statement, assignments.rows(start, end))
        if on_written is not None:
            on_written(end)
    return total


async def _copy_assignments(
    session: Session,
    assignments: SegmentAssignments,
    on_written: Callable[[int], None] | None,
) -> None:
    """The upsert of :func:`write_segment_assignments` through ``COPY`` (PostgreSQL):
    the rows into a temporary table, then one ``INSERT ... SELECT ... ON CONFLICT``. A
    million customers' rows took 20 s of statements one row each (executemany)."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if driver is None or not hasattr(driver, "copy_records_to_table"):
        raise RuntimeError("the store's connection has no driver connection to COPY on")
    # The session's transaction holds the table: dropped at its commit.
    await session.execute(
        text(
            f"CREATE TEMPORARY TABLE {_UPLOAD} (customer_id bigint, segment varchar(32), "
            "score double precision) ON COMMIT DROP"
        )
    )
    total = len(assignments)
    for start in range(0, total, COPY_CHUNK):
        end = min(total, start + COPY_CHUNK)
        await driver.copy_records_to_table(
            _UPLOAD,
            records=assignments.upload_records(start, end),
            columns=["customer_id", "segment", "score"],
        )
        if on_written is not None:
            on_written(end)
    upload = table(_UPLOAD, column("customer_id"), column("segment"), column("score"))
    rows = select(
        upload.c.customer_id,
        upload.c.segment,
        literal(assignments.method, String()),
        literal(assignments.model_version, String()),
        upload.c.score,
        literal(assignments.assigned_at, UtcDateTime()),
    )
    columns = ["customer_id", "segment", "method", "model_version", "score", "assigned_at"]
    await session.execute(
        upsert(POSTGRESQL, SegmentAssignment, _KEY, _REFRESHED).from_select(columns, rows)
    )
    await session.execute(text(f"DROP TABLE {_UPLOAD}"))


async def delete_segment_assignments(
    session: Session, method: str, customer_ids: Sequence[int]
) -> int:
    """Delete the rows of ``method`` of these customers; returns rows deleted."""
    dialect = dialect_of(session)
    removed = 0
    for start in range(0, len(customer_ids), ID_CHUNK):
        chunk = customer_ids[start : start + ID_CHUNK]
        result = await session.execute(
            delete(SegmentAssignment).where(
                SegmentAssignment.method == method,
                member_of(SegmentAssignment.customer_id, chunk, dialect),
            )
        )
        removed += max(0, int(getattr(result, "rowcount", 0) or 0))
    return removed


async def read_synthetic_groups(session: Session) -> SyntheticGroups:
    """Every customer with a known true group (``customers.synthetic_group``), streamed."""
    ids: list[int] = []
    groups: list[str] = []
    connection = await session.connection()
    result = await connection.stream(
        select(Customer.id, Customer.synthetic_group).where(Customer.synthetic_group.is_not(None))
    )
    async for partition in result.partitions(STREAM_BATCH):
        for customer_id, group in partition:
            ids.append(int(customer_id))
            groups.append(str(group))
    return SyntheticGroups(np.array(ids, dtype=np.int64), tuple(groups))
