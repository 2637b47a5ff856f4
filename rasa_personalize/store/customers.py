"""Customer rows for imports: contact columns, exact-match lookups, merges and aliases.

Contacts arrive here already encrypted and leave encrypted: this module never sees a
plaintext name, e-mail address or phone number (``rasa_personalize.imports.contacts`` does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, Table, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from rasa_personalize.store.bulk import chunked
from rasa_personalize.store.models import (
    Customer,
    CustomerAlias,
    CustomerProfile,
    CustomerRunningTotals,
    CustomerTag,
    Interaction,
    InteractionInbox,
    PrecomputedRecommendations,
    SegmentAssignment,
)
from rasa_personalize.store.repository import aliased_customer_ids, write_profile_metrics

# Values per IN (...) list: well under SQLite's and asyncpg's parameter limits.


@dataclass(frozen=True)
class CustomerColumns:
    """What an import reads and writes on a customer row (contacts encrypted)."""

    created_at: datetime
    age: int | None
    gender: str | None
    country: str | None
    city: str | None
    loyalty_tier: str
    name_encrypted: str | None
    email_encrypted: str | None
    phone_encrypted: str | None
    email_index: str | None
    phone_index: str | None


@dataclass(frozen=True)
class StoredCustomer:
    """A stored customer as an import sees it."""

    id: int
    customer_key: str
    columns: CustomerColumns


@dataclass(frozen=True)
class CustomerMerge:
    """Fold customer ``duplicate_id`` into ``survivor_id``; ``match`` says how it was found."""

    duplicate_id: int
    survivor_id: int
    match: str


_COLUMN_NAMES: Final = tuple(CustomerColumns.__dataclass_fields__)


def _table(model: type[Any]) -> Table:
    # Looked up as a Table, which is what Core insert() and update() are typed for.
    table: Table = model.metadata.tables[model.__tablename__]
    return table


def _select_customers() -> Select[Any]:
    return select(
        Customer.id, Customer.customer_key, *(getattr(Customer, name) for name in _COLUMN_NAMES)
    )


def _stored(row: Any) -> StoredCustomer:
    values = row._mapping  # SQLAlchemy's public name for a row as a mapping
    return StoredCustomer(
        id=int(values["id"]),
        customer_key=values["customer_key"],
        columns=CustomerColumns(**{name: values[name] for name in _COLUMN_NAMES}),
    )


async def resolve_keys(session: AsyncSession, keys: Sequence[str]) -> dict[str, tuple[int, bool]]:
    """customer_key -> (customer id, whether the key is an alias) for the known keys."""
    found: dict[str, tuple[int, bool]] = {}
    for chunk in chunked(keys):
        rows = await session.execute(
            select(Customer.customer_key, Customer.id).where(Customer.customer_key.in_(chunk))
        )
        found.update({key: (int(customer_id), False) for key, customer_id in rows.all()})
    unknown = [key for key in keys if key not in found]
    for key, customer_id in (await aliased_customer_ids(session, unknown)).items():
        found[key] = (customer_id, True)
    return found


async def keys_of_person(session: AsyncSession, customer_key: str) -> frozenset[str]:
    """``customer_key`` and every other key of the customer it names: the customer's own
    key and the alias keys of the customers merged into it (see :func:`merge_customers`).

    The keys under which one person's cached profile and consent may be found.
    """
    found = await resolve_keys(session, [customer_key])
    if customer_key not in found:
        return frozenset({customer_key})
    customer_id = found[customer_key][0]
    own = select(Customer.customer_key).where(Customer.id == customer_id)
    merged = select(CustomerAlias.alias_key).where(CustomerAlias.customer_id == customer_id)
    keys = {customer_key, *(await session.scalars(own)).all()}
    keys.update((await session.scalars(merged)).all())
    return frozenset(str(key) for key in keys)


async def customers_by_ids(session: AsyncSession, ids: Iterable[int]) -> list[StoredCustomer]:
    """The customers with these ids, by id."""
    found: list[StoredCustomer] = []
    for chunk in chunked(sorted(set(ids))):
        rows = await session.execute(_select_customers().where(Customer.id.in_(chunk)))
        found.extend(_stored(row) for row in rows)
    return sorted(found, key=lambda customer: customer.id)


async def customer_ids_by_contact_index(
    session: AsyncSession, email_indexes: Iterable[str], phone_indexes: Iterable[str]
) -> set[int]:
    """Ids of the customers whose e-mail or phone blind index is one of these."""
    found: set[int] = set()
    for column, indexes in (
        (Customer.email_index, sorted(set(email_indexes))),
        (Customer.phone_index, sorted(set(phone_indexes))),
    ):
        for chunk in chunked(indexes):
            rows = await session.execute(select(Customer.id).where(column.in_(chunk)))
            found.update(int(customer_id) for customer_id in rows.scalars())
    return found


async def customers_with_contacts(
    session: AsyncSession, batch_size: int = 5_000
) -> AsyncIterator[list[StoredCustomer]]:
    """Every customer with an e-mail or phone, in batches of ``batch_size`` (streamed)."""
    result = await session.stream(
        _select_customers()
        .where(or_(Customer.email_encrypted.is_not(None), Customer.phone_encrypted.is_not(None)))
        .order_by(Customer.id)
        .execution_options(yield_per=batch_size)
    )
    async for partition in result.partitions(batch_size):
        yield [_stored(row) for row in partition]


def _row(columns: CustomerColumns) -> dict[str, Any]:
    return {name: getattr(columns, name) for name in _COLUMN_NAMES}


async def insert_customers(
    session: AsyncSession, customers: Sequence[tuple[str, CustomerColumns]]
) -> dict[str, int]:
    """Insert new customers (key, columns); returns customer_key -> id."""
    if not customers:
        return {}
    await session.execute(
        insert(_table(Customer)),
        [{"customer_key": key, **_row(columns)} for key, columns in customers],
    )
    return {key: customer_id for key, (customer_id, _) in
            (await resolve_keys(session, [key for key, _ in customers])).items()}  # fmt: skip


async def update_customers(
    session: AsyncSession, changes: Sequence[tuple[int, CustomerColumns]], now: datetime
) -> None:
    """Overwrite the import's columns of these customers, and bump their profile version.

    The profile version guards every cached copy of a profile (tier and demographics are
    part of the snapshot), so a changed row must change it.
    """
    if not changes:
        return
    table = _table(Customer)
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("target"))
        .values({name: bindparam(f"new_{name}") for name in _COLUMN_NAMES}),
        [
            {"target": customer_id, **{f"new_{k}": v for k, v in _row(columns).items()}}
            for customer_id, columns in changes
        ],
    )
    await _bump_profile_versions(session, [customer_id for customer_id, _ in changes], now)


async def _bump_profile_versions(session: AsyncSession, ids: Sequence[int], now: datetime) -> None:
    profiles = _table(CustomerProfile)
    for chunk in chunked(sorted(set(ids))):
        await session.execute(
            update(profiles)
            .where(profiles.c.customer_id.in_(chunk))
            .values(version=profiles.c.version + 1, updated_at=now)
        )


async def add_aliases(
    session: AsyncSession, aliases: Sequence[tuple[str, int, str]], now: datetime
) -> None:
    """Record (alias key, customer id, match) rows: the key now reaches that customer."""
    if aliases:
        await session.execute(
            insert(_table(CustomerAlias)),
            [
                {"alias_key": key, "customer_id": customer_id, "match": match, "merged_at": now}
                for key, customer_id, match in aliases
            ],
        )


async def merge_customers(
    session: AsyncSession, merges: Sequence[CustomerMerge], now: datetime
) -> None:
    """Fold each duplicate into its survivor, keeping the duplicate's history.

    Interactions move to the survivor (event ids stay unique, so nothing collides);
    tags move unless the survivor has the same tag (the survivor's weight and source
    win); profile attributes are merged with the survivor's values winning; aliases
    that pointed at the duplicate point at the survivor, and the duplicate's own key
    becomes one. Segment assignments and precomputed recommendations of the duplicate
    are dropped: they are derived, and the next ``segment`` / ``train`` recomputes them
    for the merged history. Then the duplicate row goes and the survivor's metrics and
    profile version are refreshed.
    """
    if not merges:
        return
    pairs = [{"dup": m.duplicate_id, "survivor": m.survivor_id} for m in merges]
    duplicate_ids = [m.duplicate_id for m in merges]
    survivor_ids = sorted({m.survivor_id for m in merges})
    interactions, tags = _table(Interaction), _table(CustomerTag)
    aliases = _table(CustomerAlias)
    await session.execute(
        update(interactions)
        .where(interactions.c.customer_id == bindparam("dup"))
        .values(customer_id=bindparam("survivor")),
        pairs,
    )
    theirs = aliased(CustomerTag)
    await session.execute(
        update(tags)
        .where(
            tags.c.customer_id == bindparam("dup"),
            ~exists().where(theirs.customer_id == bindparam("survivor"), theirs.tag == tags.c.tag),
        )
        .values(customer_id=bindparam("survivor")),
        pairs,
    )
    await session.execute(
        update(aliases)
        .where(aliases.c.customer_id == bindparam("dup"))
        .values(customer_id=bindparam("survivor")),
        pairs,
    )
    await _merge_profile_attributes(session, merges, now)
    keys = dict(
        (
            await session.execute(
                select(Customer.id, Customer.customer_key).where(Customer.id.in_(duplicate_ids))
            )
        ).all()
    )
    await add_aliases(
        session, [(keys[m.duplicate_id], m.survivor_id, m.match) for m in merges], now
    )
    for chunk in chunked(duplicate_ids):
        # Children first: SQLite enforces the cascades only with foreign keys switched on.
        for model in (
            PrecomputedRecommendations,
            SegmentAssignment,
            CustomerTag,
            CustomerProfile,
            # Their interactions are the survivor's now, whose totals start over below.
            InteractionInbox,
            CustomerRunningTotals,
        ):
            await session.execute(delete(model).where(model.customer_id.in_(chunk)))
        await session.execute(delete(Customer).where(Customer.id.in_(chunk)))
    await _bump_profile_versions(session, survivor_ids, now)
    await write_profile_metrics(session, now, survivor_ids)


async def _merge_profile_attributes(
    session: AsyncSession, merges: Sequence[CustomerMerge], now: datetime
) -> None:
    ids = sorted({m.duplicate_id for m in merges} | {m.survivor_id for m in merges})
    attributes: dict[int, dict[str, Any]] = {}
    for chunk in chunked(ids):
        rows = await session.execute(
            select(CustomerProfile.customer_id, CustomerProfile.attributes).where(
                CustomerProfile.customer_id.in_(chunk)
            )
        )
        attributes.update({int(cid): dict(doc or {}) for cid, doc in rows.all()})
    merged: dict[int, dict[str, Any]] = {}
    for merge in merges:
        inherited = attributes.get(merge.duplicate_id)
        if not inherited:
            continue
        target = merged.setdefault(merge.survivor_id, dict(attributes.get(merge.survivor_id, {})))
        for name, value in inherited.items():
            target.setdefault(name, value)
    profiles = _table(CustomerProfile)
    for survivor_id, document in sorted(merged.items()):
        if survivor_id in attributes:
            await session.execute(
                update(profiles)
                .where(profiles.c.customer_id == survivor_id)
                .values(attributes=document)
            )
        else:
            await session.execute(
                insert(profiles).values(
                    customer_id=survivor_id,
                    attributes=document,
                    metrics={},
                    version=1,
                    updated_at=now,
                )
            )
