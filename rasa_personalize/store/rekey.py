"""Customers moved from a former secret's keys to the current one (secret rotation).

A customer key is HMAC-SHA256(secret, external id), and the external id is never stored:
after ``PERSONALIZE_SECRET_KEY`` changes, only a caller that sees the id again can
compute both the new key and the former ones and move the customer. Everything found by
key moves with the customer row: the row itself (interactions, tags, profile and segment
follow it by id), an alias of a merged customer, consent states and history, and an
erasure tombstone (so events from before an erasure are still dropped). Audit entries
stay as they were written: the log is append-only.

Moves are safe under concurrency: two servers moving the same customer at once both
succeed, one of them doing the work; a customer created under the new key meanwhile
wins, and the old row stays as it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final, Literal, cast

from sqlalchemy import Table, delete, func, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError

from rasa_personalize.store.bulk import chunked
from rasa_personalize.store.dialect import (
    dialect_of,
    failure_keeps_transaction,
    insert_ignoring,
    lock_for_key_update,
    member_of,
)
from rasa_personalize.store.models import (
    ConsentChange,
    ConsentState,
    Customer,
    CustomerAlias,
    ErasureTombstone,
    ExperimentExposure,
    OfferExposure,
)
from rasa_personalize.store.types import Session

# What a key is found as: a customer's key, an alias of a merged customer, a consent
# state or history row, an erasure tombstone.
KeyUse = Literal["customer", "alias", "consent", "tombstone"]
CUSTOMER_USES: Final[frozenset[KeyUse]] = frozenset({"customer", "alias"})
# Values per lookup statement (four IN lists of this many).


def _table(model: type[Any]) -> Table:
    # As a Table, which is what Core update() and delete() are typed for.
    table: Table = model.metadata.tables[model.__tablename__]
    return table


CUSTOMERS: Final = _table(Customer)
ALIASES: Final = _table(CustomerAlias)


async def keys_in_use(session: Session, keys: Collection[str]) -> dict[str, frozenset[KeyUse]]:
    """Which of these keys the store holds, and as what (:data:`KeyUse`). One statement
    per 1,000 keys; keys the store does not hold are left out."""
    dialect = dialect_of(session)
    found: defaultdict[str, set[KeyUse]] = defaultdict(set)
    for chunk in chunked(sorted(set(keys))):
        statement = union_all(
            select(Customer.customer_key, literal("customer")).where(
                member_of(Customer.customer_key, chunk, dialect)
            ),
            select(CustomerAlias.alias_key, literal("alias")).where(
                member_of(CustomerAlias.alias_key, chunk, dialect)
            ),
            select(ConsentState.customer_key, literal("consent"))
            .where(member_of(ConsentState.customer_key, chunk, dialect))
            .distinct(),
            # History without a state: an erasure leaves an "erased" row (and a tombstone).
            select(ConsentChange.customer_key, literal("consent"))
            .where(member_of(ConsentChange.customer_key, chunk, dialect))
            .distinct(),
            select(ErasureTombstone.customer_key, literal("tombstone")).where(
                member_of(ErasureTombstone.customer_key, chunk, dialect)
            ),
        )
        for key, use in (await session.execute(statement)).all():
            found[key].add(cast(KeyUse, use))
    return {key: frozenset(uses) for key, uses in found.items()}


async def rekey_customer(session: Session, old_keys: Sequence[str], new_key: str) -> bool:
    """Move the customer known by one of ``old_keys`` to ``new_key``, in the caller's
    transaction.

    The customer row (or, for a customer merged into another, the alias) moves only when
    no customer or alias has ``new_key`` yet; of several old keys in use, the first in
    ``old_keys`` wins (list the most recent former secret first). Consent states move
    unless ``new_key`` has its own answer for that purpose (the newer one), consent
    history moves, and an erasure tombstone moves unless ``new_key`` has one. When none
    of the keys is in use this costs one read and writes nothing.

    Safe when another transaction moves the same customer at the same time: its move is
    waited for and this call returns False, as it does when a customer appeared under
    ``new_key`` meanwhile (the unique key refuses the second row; the transaction goes on).

    Args:
        session: A session in the caller's transaction; nothing is committed here.
        old_keys: The customer's keys under former secrets
            (:func:`rasa_personalize.identity.previous_customer_keys`).
        new_key: The customer's key under the current secret.

    Returns:
        Whether ``new_key`` now reaches a customer that it did not reach before.
    """
    return await rekey_customers(session, {new_key: old_keys}) == 1


async def rekey_customers(session: Session, moves: Mapping[str, Sequence[str]]) -> int:
    """:func:`rekey_customer` for many customers (new key -> its old keys), with one
    lookup for all of them (per 1,000 keys); returns how many customers moved.

    Customers move in the order of their new keys, so that two batches moving some of
    the same customers take their locks in the same order.
    """
    wanted = {
        new_key: [key for key in dict.fromkeys(old_keys) if key != new_key]
        for new_key, old_keys in moves.items()
    }
    found = await keys_in_use(
        session, {key for new_key, old in wanted.items() for key in (new_key, *old)}
    )
    moved = 0
    for new_key in sorted(wanted):
        old = [key for key in wanted[new_key] if key in found]
        if not old:
            continue
        uses: set[KeyUse] = set().union(*(found[key] for key in old))
        if (
            uses & CUSTOMER_USES
            and not found.get(new_key, frozenset()) & CUSTOMER_USES
            and await _move_customer(session, old, new_key)
        ):
            moved += 1
        if "consent" in uses:
            await _move_consent(session, old, new_key)
        if "tombstone" in uses:
            await _move_tombstone(session, old, new_key)
        if uses & CUSTOMER_USES:
            # Reports join exposures to the customer's key: they follow the customer.
            await _move_exposures(session, old, new_key)
    return moved


async def _move_customer(session: Session, old: Sequence[str], new_key: str) -> bool:
    taken = union_all(
        select(Customer.id).where(Customer.customer_key == new_key),
        select(CustomerAlias.id).where(CustomerAlias.alias_key == new_key),
    )
    if (await session.execute(taken)).first() is not None:
        return False
    rank = {key: position for position, key in enumerate(old)}
    dialect = dialect_of(session)
    for table, key_column in ((CUSTOMERS, "customer_key"), (ALIASES, "alias_key")):
        column = table.c[key_column]
        # Locked, then re-read: a concurrent move that committed while we waited has
        # changed the key, so the row no longer matches and we move nothing.
        rows = (
            await session.execute(
                lock_for_key_update(
                    select(table.c.id, column).where(column.in_(old)).order_by(table.c.id),
                    dialect,
                )
            )
        ).all()
        if not rows:
            continue
        row_id, key = min(rows, key=lambda row: rank[row[1]])
        try:
            async with failure_keeps_transaction(session):
                result = await session.execute(
                    update(table)
                    .where(table.c.id == row_id, column == key)
                    .values({key_column: new_key})
                )
        except IntegrityError:
            # A customer or alias appeared under new_key after the check: it wins.
            return False
        return bool(getattr(result, "rowcount", 0))
    return False


async def _move_consent(session: Session, old: Sequence[str], new_key: str) -> None:
    rows = (
        await session.execute(
            select(
                ConsentState.purpose,
                ConsentState.granted,
                ConsentState.source,
                ConsentState.policy_version,
                ConsentState.updated_at,
            )
            .where(ConsentState.customer_key.in_(old))
            .order_by(ConsentState.updated_at)
        )
    ).all()
    # The latest answer for each purpose, should several former keys hold one.
    latest = {row.purpose: row for row in rows}
    if latest:
        await session.execute(
            insert_ignoring(dialect_of(session), ConsentState, ["customer_key", "purpose"]),
            [
                {
                    "customer_key": new_key,
                    "purpose": purpose,
                    "granted": row.granted,
                    "source": row.source,
                    "policy_version": row.policy_version,
                    "updated_at": row.updated_at,
                }
                for purpose, row in sorted(latest.items())
            ],
        )
        await session.execute(delete(ConsentState).where(ConsentState.customer_key.in_(old)))
    await session.execute(
        update(_table(ConsentChange))
        .where(_table(ConsentChange).c.customer_key.in_(old))
        .values(customer_key=new_key)
    )


async def _move_exposures(session: Session, old: Sequence[str], new_key: str) -> None:
    """Experiment and offer exposures of the old keys move to ``new_key``. A row
    ``new_key`` has already for the same experiment (or offer and day) stays; of several
    old keys' rows, the earliest moves."""
    dialect = dialect_of(session)
    for model, unique in (
        (ExperimentExposure, ["experiment", "customer_key"]),
        (OfferExposure, ["customer_key", "offer", "shown_on"]),
    ):
        table = _table(model)
        time_column = table.c.exposed_at if model is ExperimentExposure else table.c.shown_at
        rows = (
            (
                await session.execute(
                    select(table).where(table.c.customer_key.in_(old)).order_by(time_column)
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            continue
        # Earliest first: of duplicates, the insert keeps the first.
        await session.execute(
            insert_ignoring(dialect, model, unique),
            [{**row, "customer_key": new_key} for row in rows],
        )
        await session.execute(delete(table).where(table.c.customer_key.in_(old)))


async def _move_tombstone(session: Session, old: Sequence[str], new_key: str) -> None:
    erased_at = await session.scalar(
        select(func.max(ErasureTombstone.erased_at)).where(ErasureTombstone.customer_key.in_(old))
    )
    if erased_at is None:
        return
    await session.execute(
        insert_ignoring(dialect_of(session), ErasureTombstone, ["customer_key"]).values(
            customer_key=new_key, erased_at=erased_at
        )
    )
    await session.execute(delete(ErasureTombstone).where(ErasureTombstone.customer_key.in_(old)))
