"""The SQL side of retention: interactions older than a cutoff, in batches, and the
profiles they leave behind.

Interactions are deleted in batches (one short transaction each, the caller's), each
answering which customers it touched, so their metrics and tags can be recomputed.
``write_profile_metrics`` rewrites the metrics of customers with interactions left;
:func:`reset_emptied_metrics` empties the metrics of those with none left, which it
would otherwise leave as they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, delete, func, select, update

from rasa_personalize.store.bulk import rowcount
from rasa_personalize.store.dialect import dialect_of, member_of
from rasa_personalize.store.models import (
    ASSISTANT_KINDS,
    AuditEntry,
    CustomerProfile,
    ExperimentExposure,
    Interaction,
    OfferExposure,
)
from rasa_personalize.store.records import ProfileMetrics, carry_derived
from rasa_personalize.store.types import Session

# Interactions deleted per transaction by default.
DEFAULT_BATCH: Final = 5_000
# As a Table, which is what Core update() is typed for.
_PROFILES: Final = CustomerProfile.metadata.tables[CustomerProfile.__tablename__]


async def count_interactions_before(session: Session, cutoff: datetime) -> int:
    """How many interactions happened before ``cutoff``."""
    return int(
        await session.scalar(
            select(func.count()).select_from(Interaction).where(Interaction.occurred_at < cutoff)
        )
        or 0
    )


async def delete_interactions_before(
    session: Session, cutoff: datetime, limit: int = DEFAULT_BATCH
) -> tuple[int, frozenset[int]]:
    """Delete up to ``limit`` interactions that happened before ``cutoff``.

    Returns:
        How many were deleted, and the store ids of their customers.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    rows = (
        await session.execute(
            select(Interaction.id, Interaction.customer_id)
            .where(Interaction.occurred_at < cutoff)
            .order_by(Interaction.id)
            .limit(limit)
        )
    ).all()
    if not rows:
        return 0, frozenset()
    ids = [int(row[0]) for row in rows]
    result = await session.execute(
        delete(Interaction).where(member_of(Interaction.id, ids, dialect_of(session)))
    )
    return rowcount(result), frozenset(int(row[1]) for row in rows)


async def reset_emptied_metrics(
    session: Session, customer_ids: Sequence[int], now: datetime
) -> int:
    """Empty the metrics of these customers when no customer interaction is left.

    Only the assistant's own events ("shown") may remain: they never count as activity.
    A profile whose metrics change gets a new version. Returns the profiles reset.
    """
    if not customer_ids:
        return 0
    dialect = dialect_of(session)
    wanted = sorted(set(customer_ids))
    active = select(Interaction.customer_id).where(
        member_of(Interaction.customer_id, wanted, dialect),
        Interaction.kind.not_in(ASSISTANT_KINDS),
    )
    remaining = {int(i) for i in (await session.scalars(active.distinct())).all()}
    emptied = [i for i in wanted if i not in remaining]
    if not emptied:
        return 0
    rows = await session.execute(
        select(_PROFILES.c.customer_id, _PROFILES.c.metrics).where(
            member_of(_PROFILES.c.customer_id, emptied, dialect)
        )
    )
    stale: list[dict[str, Any]] = []
    for customer_id, metrics in rows.all():
        # Scores of offline models stay until their next run replaces them.
        empty = carry_derived(ProfileMetrics().to_document(), metrics)
        if metrics != empty:
            stale.append({"target": int(customer_id), "emptied": empty})
    if not stale:
        return 0
    await session.execute(
        update(_PROFILES)
        .where(_PROFILES.c.customer_id == bindparam("target"))
        .values(metrics=bindparam("emptied"), version=_PROFILES.c.version + 1, updated_at=now),
        stale,
    )
    return len(stale)


def _exposure_tables() -> tuple[tuple[Any, Any], ...]:
    """Each exposure table with its time column."""
    return (
        (ExperimentExposure, ExperimentExposure.exposed_at),
        (OfferExposure, OfferExposure.shown_at),
    )


async def count_exposures_before(session: Session, cutoff: datetime) -> int:
    """How many experiment and offer exposures are older than ``cutoff``."""
    total = 0
    for model, time in _exposure_tables():
        found = await session.scalar(select(func.count()).select_from(model).where(time < cutoff))
        total += int(found or 0)
    return total


async def delete_exposures_before(session: Session, cutoff: datetime) -> int:
    """Delete experiment and offer exposures older than ``cutoff``; how many went.

    They are behaviour too (what a customer was shown), so they live no longer than the
    interactions they are measured against.
    """
    deleted = 0
    for model, time in _exposure_tables():
        deleted += rowcount(await session.execute(delete(model).where(time < cutoff)))
    return deleted


async def count_audit_entries_before(session: Session, cutoff: datetime) -> int:
    """How many audit rows are older than ``cutoff``."""
    return int(
        await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.occurred_at < cutoff)
        )
        or 0
    )
