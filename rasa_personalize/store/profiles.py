"""Profile writes: behavioural metrics refreshed for some customers, and profile changes.

- :func:`refresh_profile_metrics`: recompute the metrics of customers with new
  interactions, holding their customer rows so that concurrent batches serialise;
- :func:`fold_profile_metrics`: the same metrics from the customers' running totals,
  with only their new interactions added (the stream worker's refresh);
- :func:`apply_profile_change`: tier, demographics and attributes of one customer (the
  profiles API), creating the customer when first seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select, update

from rasa_personalize.clock import utc_now
from rasa_personalize.store.dialect import dialect_of, insert_ignoring
from rasa_personalize.store.locks import lock_customers
from rasa_personalize.store.models import Customer, CustomerAlias, CustomerProfile
from rasa_personalize.store.repository import write_metrics_from_totals, write_profile_metrics
from rasa_personalize.store.totals import CountedKind, Totals, fold_totals
from rasa_personalize.store.types import Session

# Customers per lock-and-refresh statement group.
REFRESH_CHUNK: Final = 1_000
# The customer columns a profile change may set besides the tier.
DEMOGRAPHIC_COLUMNS: Final = frozenset({"age", "gender", "country", "city"})


@dataclass(frozen=True)
class RefreshedProfiles:
    """What :func:`refresh_profile_metrics` did."""

    # Profiles written (new, or with changed metrics).
    written: int
    # Keys of the stored customers among those asked for (for cache invalidation).
    customer_keys: frozenset[str]


@dataclass(frozen=True)
class ProfileChange:
    """What a profile update sets; what it leaves out stays as it is."""

    loyalty_tier: str | None = None
    # Only the demographics given (of DEMOGRAPHIC_COLUMNS); a None value clears one.
    demographics: Mapping[str, Any] = field(default_factory=dict)
    # Replaces the stored attributes document when given.
    attributes: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.demographics) - DEMOGRAPHIC_COLUMNS
        if unknown:
            raise ValueError(f"not demographic columns: {', '.join(sorted(unknown))}")


async def refresh_profile_metrics(
    session: Session, customer_ids: Iterable[int], now: datetime | None = None
) -> RefreshedProfiles:
    """Recompute the behavioural metrics of some customers from their interactions.

    The same metrics as ``rebuild_profile_metrics`` (a test holds them equal), for a
    subset: the aggregates run over these customers' rows only, through the
    (customer_id, occurred_at) index. Unknown ids are skipped.
    """
    now = now or utc_now()
    wanted = sorted(set(customer_ids))
    written = 0
    keys: set[str] = set()
    for start in range(0, len(wanted), REFRESH_CHUNK):
        chunk = wanted[start : start + REFRESH_CHUNK]
        keys.update((await lock_customers(session, chunk)).values())
        written += await write_profile_metrics(session, now, chunk)
    return RefreshedProfiles(written, frozenset(keys))


@dataclass(frozen=True)
class FoldedProfiles(RefreshedProfiles):
    """What :func:`fold_profile_metrics` did, with the totals the metrics came from."""

    totals: Mapping[int, Totals] = field(default_factory=dict)


async def fold_profile_metrics(
    session: Session,
    customer_ids: Iterable[int],
    now: datetime | None = None,
    *,
    counted: tuple[CountedKind, ...] = (),
) -> FoldedProfiles:
    """The metrics of some customers from their running totals, new interactions folded
    in: what :func:`refresh_profile_metrics` computes, at the cost of the interactions
    stored since the last fold rather than of each customer's whole history
    (:mod:`rasa_personalize.store.totals`). Holds the customers' rows, as that does;
    unknown ids are skipped. ``counted``: the count rules' filters the totals keep
    (:func:`~rasa_personalize.store.totals.fold_totals`).
    """
    now = now or utc_now()
    wanted = sorted(set(customer_ids))
    written = 0
    keys: set[str] = set()
    totals: dict[int, Totals] = {}
    for start in range(0, len(wanted), REFRESH_CHUNK):
        chunk = wanted[start : start + REFRESH_CHUNK]
        locked = await lock_customers(session, chunk)
        keys.update(locked.values())
        folded = await fold_totals(session, chunk, known=locked.keys(), counted=counted)
        written += await write_metrics_from_totals(session, now, folded)
        totals |= folded
    return FoldedProfiles(written, frozenset(keys), totals)


async def apply_profile_change(
    session: Session, customer_key: str, change: ProfileChange, now: datetime | None = None
) -> bool:
    """Apply ``change`` to the customer with ``customer_key``, creating them if missing.

    The key of a customer merged into another (an import's dedupe) reaches the survivor.
    Any change bumps the profile version, which guards every cached copy of the profile.

    Returns:
        True when the customer was created.
    """
    now = now or utc_now()
    aliased = await session.scalar(
        select(CustomerAlias.customer_id).where(CustomerAlias.alias_key == customer_key)
    )
    if aliased is not None:
        await _change_customer(session, int(aliased), change, now)
        return False
    created = await session.execute(
        insert_ignoring(dialect_of(session), Customer, ["customer_key"])
        .values(customer_key=customer_key, created_at=now, loyalty_tier="none")
        .returning(Customer.id)
    )
    was_created = created.scalar_one_or_none() is not None
    customer_id = await session.scalar(
        select(Customer.id).where(Customer.customer_key == customer_key)
    )
    assert customer_id is not None  # inserted above, or there already
    await _change_customer(session, customer_id, change, now)
    return was_created


async def _change_customer(
    session: Session, customer_id: int, change: ProfileChange, now: datetime
) -> None:
    fields: dict[str, Any] = dict(change.demographics)
    if change.loyalty_tier is not None:
        fields["loyalty_tier"] = change.loyalty_tier
    if fields:
        await session.execute(update(Customer).where(Customer.id == customer_id).values(fields))
    profile = await session.get(CustomerProfile, customer_id)
    if profile is None:
        session.add(
            CustomerProfile(
                customer_id=customer_id,
                attributes=dict(change.attributes or {}),
                metrics={},
                version=1,
                updated_at=now,
            )
        )
    elif change.attributes is not None or fields:
        # Tier and demographics live on the customer row, but the version guards every
        # cached copy of the profile, so any change bumps it.
        if change.attributes is not None:
            profile.attributes = dict(change.attributes)
        profile.version += 1
        profile.updated_at = now
    await session.flush()
