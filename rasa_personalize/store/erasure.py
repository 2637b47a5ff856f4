"""The SQL side of erasing a customer: every row held about them, by customer key.

A customer is reached by their key or by the key of a customer merged into them (an
alias); either way the whole merged customer goes, aliases included. The work is split
so that a big customer never holds one long transaction (see
``rasa_personalize.privacy.erasure`` for the order the caller runs these in):

1. :func:`find_erasure_targets` and :func:`write_tombstones`, committed first: from then
   on ingestion drops the customer's events dated before the erasure;
2. :func:`delete_interaction_batch`, one transaction per batch, until none are left;
3. :func:`delete_customer_rows`: the customer rows locked, whatever the batches missed
   (events stored meanwhile) deleted with every other row, consent included, and one
   consent-history row left per key with decision "erased".

Tombstones and the "erased" consent markers keep the keyed hash only, never a raw id.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import delete, func, insert, select

from rasa_personalize.store.bulk import rowcount
from rasa_personalize.store.dialect import dialect_of, member_of, upsert
from rasa_personalize.store.models import (
    ConsentChange,
    ConsentState,
    Customer,
    CustomerAlias,
    CustomerProfile,
    CustomerRunningTotals,
    CustomerTag,
    ErasureTombstone,
    ExperimentExposure,
    Interaction,
    InteractionInbox,
    OfferExposure,
    PrecomputedRecommendations,
    PropensityScore,
    SegmentAssignment,
)
from rasa_personalize.store.types import Session

# Interactions deleted per transaction by default (see bench/erasure.py).
DEFAULT_BATCH: Final = 5_000
ERASED_DECISION: Final = "erased"
# Tables an erasure deletes from, in the order the receipt lists them.
ERASED_TABLES: Final = (
    "customers",
    "customer_aliases",
    "customer_profiles",
    "customer_totals",
    "interactions",
    "customer_tags",
    "segment_assignments",
    "precomputed_recommendations",
    "propensity_scores",
    "consent_states",
    "consent_history",
    "experiment_exposures",
    "offer_exposures",
)
# Children of a customer row, deleted before it (SQLite enforces cascades only with
# foreign keys on, and explicit deletes give the counts the receipt reports).
_CHILDREN: Final = (
    (CustomerTag, "customer_tags"),
    (SegmentAssignment, "segment_assignments"),
    (PrecomputedRecommendations, "precomputed_recommendations"),
    (PropensityScore, "propensity_scores"),
    (CustomerProfile, "customer_profiles"),
    (CustomerRunningTotals, "customer_totals"),
    (CustomerAlias, "customer_aliases"),
)


@dataclass(frozen=True)
class ErasureTargets:
    """Who an erasure reaches: the store ids of the customers, and every key involved.

    Attributes:
        customer_ids: The customer rows (the one the key names, or the one its alias
            points to); empty when the store has no such customer.
        keys: The key asked for, the customers' own keys and their aliases' keys, sorted.
        has_rows: Whether any row is held under these (a customer, or consent answers
            of a visitor the store does not know as a customer).
    """

    customer_ids: tuple[int, ...]
    keys: tuple[str, ...]
    has_rows: bool


async def _targets(session: Session, customer_key: str, *, lock: bool) -> ErasureTargets:
    dialect = dialect_of(session)
    direct = select(Customer.id).where(Customer.customer_key == customer_key)
    via_alias = select(CustomerAlias.customer_id).where(CustomerAlias.alias_key == customer_key)
    ids = {int(i) for i in (await session.scalars(direct)).all()}
    ids.update(int(i) for i in (await session.scalars(via_alias)).all())
    keys = {customer_key}
    if ids:
        wanted = sorted(ids)
        customers = select(Customer.id, Customer.customer_key).where(
            member_of(Customer.id, wanted, dialect)
        )
        if lock:
            # FOR UPDATE, not the store's NO KEY UPDATE: it waits for transactions that
            # are inserting interactions of this customer (their foreign keys hold KEY
            # SHARE locks) and makes later ones wait for this one, so every event stored
            # before the commit is seen and deleted, and none after it can reference
            # the deleted row.
            customers = customers.order_by(Customer.id).with_for_update()
        rows = (await session.execute(customers)).all()
        ids = {int(row[0]) for row in rows}
        keys.update(str(row[1]) for row in rows)
        if ids:
            aliases = select(CustomerAlias.alias_key).where(
                member_of(CustomerAlias.customer_id, sorted(ids), dialect)
            )
            keys.update(str(key) for key in (await session.scalars(aliases)).all())
    ordered = sorted(keys)
    consent = await session.scalar(
        select(func.count())
        .select_from(ConsentState)
        .where(member_of(ConsentState.customer_key, ordered, dialect))
    )
    history = await session.scalar(
        select(func.count())
        .select_from(ConsentChange)
        .where(
            member_of(ConsentChange.customer_key, ordered, dialect),
            ConsentChange.decision != ERASED_DECISION,
        )
    )
    has_rows = bool(ids) or bool(consent) or bool(history)
    return ErasureTargets(tuple(sorted(ids)), tuple(ordered), has_rows)


async def find_erasure_targets(session: Session, customer_key: str) -> ErasureTargets:
    """The customers and keys an erasure of ``customer_key`` reaches (nothing is locked)."""
    return await _targets(session, customer_key, lock=False)


async def write_tombstones(
    session: Session, keys: Collection[str], erased_at: datetime, *, renew: bool
) -> int:
    """Record that ``keys`` were erased at ``erased_at``; returns the tombstones written.

    A missing tombstone is always written. An existing one is moved to ``erased_at``
    only with ``renew`` (there was something to erase again: a customer who came back
    after an earlier erasure); otherwise it is kept, so that erasing again is a no-op.
    """
    wanted = sorted(set(keys))
    if not wanted:
        return 0
    dialect = dialect_of(session)
    existing = set(
        (
            await session.scalars(
                select(ErasureTombstone.customer_key).where(
                    member_of(ErasureTombstone.customer_key, wanted, dialect)
                )
            )
        ).all()
    )
    rows = [
        {"customer_key": key, "erased_at": erased_at}
        for key in wanted
        if renew or key not in existing
    ]
    if not rows:
        return 0
    await session.execute(
        upsert(dialect, ErasureTombstone, ["customer_key"], ["erased_at"]),
        rows,
    )
    return len(rows)


async def erasure_tombstones(session: Session, keys: Collection[str]) -> dict[str, datetime]:
    """customer key -> when it was erased, for the keys that have a tombstone."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await session.execute(
        select(ErasureTombstone.customer_key, ErasureTombstone.erased_at).where(
            member_of(ErasureTombstone.customer_key, wanted, dialect_of(session))
        )
    )
    return {str(key): erased_at for key, erased_at in rows.all()}


async def delete_interaction_batch(
    session: Session, customer_ids: Sequence[int], limit: int = DEFAULT_BATCH
) -> int:
    """Delete up to ``limit`` interactions of these customers; returns how many went.

    Two statements (ids, then the delete) rather than ``DELETE ... LIMIT`` or a limited
    subquery, which MySQL and MariaDB refuse.
    """
    if not customer_ids:
        return 0
    if limit < 1:
        raise ValueError("limit must be at least 1")
    dialect = dialect_of(session)
    ids = list(
        (
            await session.scalars(
                select(Interaction.id)
                .where(member_of(Interaction.customer_id, list(customer_ids), dialect))
                .limit(limit)
            )
        ).all()
    )
    if not ids:
        return 0
    result = await session.execute(
        delete(Interaction).where(member_of(Interaction.id, ids, dialect))
    )
    return rowcount(result)


async def delete_customer_rows(
    session: Session, customer_key: str, erased_at: datetime
) -> tuple[ErasureTargets, dict[str, int]]:
    """Delete every remaining row of the customer ``customer_key`` reaches.

    The customer rows are locked first and the targets found again under the lock (an
    alias merged in meanwhile is included, and its key gets a tombstone too). Consent
    states and history of every key involved go; each key keeps (or gets) one
    consent-history row with decision "erased" and no purpose, source or policy, when
    anything was held under them (a key the store never knew gets none).

    Returns:
        The targets found under the lock, and rows deleted per table
        (:data:`ERASED_TABLES`; the "erased" markers are not counted).
    """
    targets = await _targets(session, customer_key, lock=True)
    dialect = dialect_of(session)
    counts = dict.fromkeys(ERASED_TABLES, 0)
    ids = list(targets.customer_ids)
    keys = list(targets.keys)
    if ids:
        while True:
            # Events stored between the batches and the lock (normally none).
            deleted = await delete_interaction_batch(session, ids)
            counts["interactions"] += deleted
            if deleted == 0:
                break
        # Not in the receipt: the inbox only points at interactions, deleted above.
        await session.execute(
            delete(InteractionInbox).where(member_of(InteractionInbox.customer_id, ids, dialect))
        )
        for model, table in _CHILDREN:
            result = await session.execute(
                delete(model).where(member_of(model.customer_id, ids, dialect))
            )
            counts[table] += rowcount(result)
        result = await session.execute(delete(Customer).where(member_of(Customer.id, ids, dialect)))
        counts["customers"] += rowcount(result)
        await write_tombstones(session, keys, erased_at, renew=False)
    result = await session.execute(
        delete(ConsentState).where(member_of(ConsentState.customer_key, keys, dialect))
    )
    counts["consent_states"] += rowcount(result)
    result = await session.execute(
        delete(ExperimentExposure).where(member_of(ExperimentExposure.customer_key, keys, dialect))
    )
    counts["experiment_exposures"] += rowcount(result)
    result = await session.execute(
        delete(OfferExposure).where(member_of(OfferExposure.customer_key, keys, dialect))
    )
    counts["offer_exposures"] += rowcount(result)
    result = await session.execute(
        delete(ConsentChange).where(
            member_of(ConsentChange.customer_key, keys, dialect),
            ConsentChange.decision != ERASED_DECISION,
        )
    )
    counts["consent_history"] += rowcount(result)
    marked = set(
        (
            await session.scalars(
                select(ConsentChange.customer_key).where(
                    member_of(ConsentChange.customer_key, keys, dialect),
                    ConsentChange.decision == ERASED_DECISION,
                )
            )
        ).all()
    )
    markers = [
        {
            "customer_key": key,
            "purpose": None,
            "decision": ERASED_DECISION,
            "source": None,
            "policy_version": None,
            "recorded_at": erased_at,
        }
        for key in keys
        if key not in marked and targets.has_rows
    ]
    if markers:
        await session.execute(insert(ConsentChange), markers)
    return targets, counts
