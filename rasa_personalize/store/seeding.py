"""Bulk loading of whole datasets: the synthetic demo shop and public datasets (MovieLens).

Rows come in as typed dictionaries (:class:`ProductRow`, :class:`CustomerRow`, ...)
because they go to the driver as they are: one ``executemany`` per chunk, with no
per-row object or conversion. Two ways to write them:

- ``bulk_insert_*``: plain inserts into tables known to hold none of these rows (the
  demo generator checks that the store is empty first); the fastest path.
- ``insert_new_*``: inserts that skip rows whose unique key is stored already and count
  the rows really inserted, for imports that may be rerun or run concurrently.
- :func:`load_rows` and :func:`load_records`: like ``bulk_insert_*``, but through
  PostgreSQL's ``COPY`` (binary, through asyncpg) when the store is PostgreSQL, several
  times faster than executemany there; other databases take ``bulk_insert_*``'s path.

Nothing here commits: every function works inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypedDict

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import QueryableAttribute

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store.dialect import POSTGRESQL, dialect_of, insert_ignoring, member_of
from rasa_personalize.store.models import (
    Base,
    Customer,
    CustomerProfile,
    CustomerTag,
    Interaction,
    Product,
)
from rasa_personalize.store.types import Session

# Rows per executemany: large enough to amortise the round trip, small enough to keep
# the driver's buffers and SQLite's parameter count modest.
INSERT_CHUNK: Final = 5_000
# Values per lookup statement (well under SQLite's 32,766 parameters per statement).
LOOKUP_CHUNK: Final = 5_000
# Rows per COPY statement: one progress step, and a bound on the records built at once.
COPY_CHUNK: Final = 50_000

# Told (rows written so far, rows in all): once before the first chunk, then per chunk.
ChunkProgress = Callable[[int, int], None]


class ProductRow(TypedDict):
    """A product to insert."""

    sku: str
    title: str
    description: str
    category: str
    brand: str | None
    price: float
    in_stock: bool
    attributes: dict[str, Any]


class _CustomerColumns(TypedDict):
    """The columns every customer row gives (see :class:`CustomerRow`)."""

    customer_key: str
    created_at: datetime
    age: int | None
    gender: str | None
    country: str | None
    city: str | None
    loyalty_tier: str
    # The behaviour group of a synthetic customer (demo shop only, else None).
    synthetic_group: str | None


class CustomerRow(_CustomerColumns, total=False):
    """A customer to insert; ``customer_key`` is already the keyed hash of the external id."""

    # Their true probability of a purchase in the last week (demo shop only).
    synthetic_purchase_probability: float | None


class ProfileRow(TypedDict):
    """A customer's profile document to insert."""

    customer_id: int
    attributes: dict[str, Any]
    metrics: dict[str, Any]
    version: int
    updated_at: datetime


class InteractionRow(TypedDict):
    """An interaction to insert; ``product_id`` None for product-less kinds (a search)."""

    event_id: str
    customer_id: int
    product_id: int | None
    kind: str
    value: float | None
    quantity: int
    price: float | None
    channel: str | None
    device: str | None
    occurred_at: datetime


class TagRow(TypedDict):
    """A tag of a customer to insert."""

    customer_id: int
    tag: str
    source: str
    weight: float
    updated_at: datetime


def _table(model: type[Base]) -> Table:
    # Looked up as a Table, which is what Core insert() is typed for.
    table: Table = model.metadata.tables[model.__tablename__]
    return table


async def count_customers(session: Session) -> int:
    """Customers in the store."""
    return int(await session.scalar(select(func.count()).select_from(Customer)) or 0)


async def count_products(session: Session) -> int:
    """Products in the store."""
    return int(await session.scalar(select(func.count()).select_from(Product)) or 0)


# -- plain bulk inserts --------------------------------------------------------------------


async def _bulk_insert(
    session: Session,
    model: type[Base],
    rows: Sequence[Any],
    progress: ChunkProgress | None,
) -> None:
    # ORM bulk INSERT of plain dicts: one executemany per chunk, where ORM objects would
    # take minutes. render_nulls keeps the None columns in every row; otherwise the ORM
    # splits the batch whenever the set of non-None columns changes (an execute per run).
    statement = insert(model).execution_options(render_nulls=True)
    total = len(rows)
    if progress is not None:
        progress(0, total)
    for start in range(0, total, INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        await session.execute(statement, chunk)
        if progress is not None:
            progress(start + len(chunk), total)


async def bulk_insert_products(
    session: Session, rows: Sequence[ProductRow], progress: ChunkProgress | None = None
) -> None:
    """Insert products in chunks; a sku stored already fails the statement."""
    await _bulk_insert(session, Product, rows, progress)


async def bulk_insert_customers(
    session: Session, rows: Sequence[CustomerRow], progress: ChunkProgress | None = None
) -> None:
    """Insert customers in chunks; a customer key stored already fails the statement."""
    await _bulk_insert(session, Customer, rows, progress)


async def bulk_insert_interactions(
    session: Session, rows: Sequence[InteractionRow], progress: ChunkProgress | None = None
) -> None:
    """Insert interactions in chunks; an event id stored already fails the statement."""
    await _bulk_insert(session, Interaction, rows, progress)


async def bulk_insert_tags(
    session: Session, rows: Sequence[TagRow], progress: ChunkProgress | None = None
) -> None:
    """Insert customer tags in chunks; a (customer, tag) stored already fails the statement."""
    await _bulk_insert(session, CustomerTag, rows, progress)


# -- COPY on PostgreSQL, executemany elsewhere -----------------------------------------------

# The tables the loaders below write, by name (callers outside the store name them so).
_LOADABLE: Final[Mapping[str, type[Base]]] = {
    "customers": Customer,
    "interactions": Interaction,
    "customer_tags": CustomerTag,
}


def copies_rows(session: Session) -> bool:
    """Whether :func:`load_rows` and :func:`load_records` write with ``COPY`` here."""
    return dialect_of(session) == POSTGRESQL


async def load_rows(
    session: Session,
    table: str,
    rows: Sequence[Mapping[str, Any]],
    progress: ChunkProgress | None = None,
) -> None:
    """Insert rows (column name -> value, the same columns in each) into a table known to
    hold none of them: ``COPY`` on PostgreSQL, the ``bulk_insert_*`` path elsewhere.

    Raises:
        InvalidInputError: ``table`` is not one of customers, interactions, customer_tags.
    """
    model = _loadable(table)
    if not copies_rows(session):
        await _bulk_insert(session, model, rows, progress)
        return
    columns = tuple(rows[0]) if rows else ()
    records = [tuple(row[column] for column in columns) for row in rows]
    await load_records(session, table, columns, records, progress)


async def load_records(
    session: Session,
    table: str,
    columns: Sequence[str],
    records: Sequence[tuple[Any, ...]],
    progress: ChunkProgress | None = None,
) -> None:
    """Insert records (tuples of ``columns``' values) into a table known to hold none of
    them: ``COPY`` on PostgreSQL, executemany elsewhere. Explicit ids (an ``id`` column)
    must come from :func:`reserve_ids`.

    Raises:
        InvalidInputError: an unknown table or column.
    """
    model = _loadable(table)
    unknown = sorted(set(columns) - set(_table(model).c.keys()))
    if unknown:
        raise InvalidInputError(f"table {table!r} has no column(s) {', '.join(unknown)}")
    if not copies_rows(session):
        rows = [dict(zip(columns, record, strict=True)) for record in records]
        await _bulk_insert(session, model, rows, progress)
        return
    driver = await _copying_connection(session)
    total = len(records)
    if progress is not None:
        progress(0, total)
    for start in range(0, total, COPY_CHUNK):
        chunk = records[start : start + COPY_CHUNK]
        await driver.copy_records_to_table(table, records=chunk, columns=list(columns))
        if progress is not None:
            progress(start + len(chunk), total)


async def reserve_ids(session: Session, table: str, count: int) -> int:
    """The first of ``count`` consecutive ids of ``table`` that no row holds and the
    table's own numbering will not hand out: rows loaded with explicit ids need no
    lookup of the ids the database gave them afterwards.

    On PostgreSQL the id sequence moves past the block in one statement; elsewhere the
    block starts after the highest id stored (MySQL's and SQLite's numbering continue
    after the highest id inserted). Meant for loading a store nobody else writes to.

    Raises:
        InvalidInputError: an unknown table, or a count below 1.
    """
    model = _loadable(table)
    if count < 1:
        raise InvalidInputError(f"reserve at least one id (got {count})")
    if dialect_of(session) == POSTGRESQL:
        # nextval() is the first id of the block; setval() makes its last one "used".
        last = await session.scalar(
            text(
                "SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                "nextval(pg_get_serial_sequence(:table, 'id')) + :count - 1)"
            ),
            {"table": model.__tablename__, "count": count},
        )
        return int(last or 0) - count + 1
    highest = await session.scalar(select(func.max(_table(model).c.id)))
    return int(highest or 0) + 1


async def refresh_statistics(session: Session) -> None:
    """Have PostgreSQL's planner see what was just loaded (``ANALYZE`` of the tables the
    loaders fill); elsewhere nothing. After millions of rows, statements planned on the
    empty tables' statistics (until autovacuum, if it runs, catches up) choose nested
    loops that take minutes where a hash join takes a second."""
    if dialect_of(session) != POSTGRESQL:
        return
    models: list[type[Base]] = [Product, *_LOADABLE.values()]
    for model in models:
        # Table names from the models, not from callers.
        await session.execute(text(f"ANALYZE {model.__tablename__}"))


def _loadable(table: str) -> type[Base]:
    model = _LOADABLE.get(table)
    if model is None:
        raise InvalidInputError(
            f"cannot bulk load table {table!r}: only {', '.join(sorted(_LOADABLE))}"
        )
    return model


async def _copying_connection(session: Session) -> Any:
    """The asyncpg connection under ``session``, inside the session's transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise InvalidInputError("the store's connection has no driver connection to COPY on")
    if not driver.is_in_transaction():
        # SQLAlchemy's asyncpg adapter opens the transaction at the first statement;
        # without one, COPY would commit on its own.
        await session.execute(text("SELECT 1"))
    return driver


# -- inserts that skip what is stored ------------------------------------------------------


async def _insert_new(
    session: Session,
    model: type[Base],
    rows: Sequence[Any],
    unique_column: str,
    progress: ChunkProgress | None,
) -> int:
    """Insert ``rows`` in chunks, skipping those whose ``unique_column`` is already stored.

    Insert-ignoring rather than a read-then-insert: also safe when another import runs
    at the same time. ``RETURNING`` lists only the rows really inserted.
    """
    # Core insert on the model's table: rows go in as they are, without the ORM's
    # per-object bookkeeping.
    table = _table(model)
    statement = insert_ignoring(dialect_of(session), table, [unique_column]).returning(
        table.c[unique_column]
    )
    total = len(rows)
    if progress is not None:
        progress(0, total)
    inserted = 0
    for start in range(0, total, INSERT_CHUNK):
        chunk = rows[start : start + INSERT_CHUNK]
        result = await session.execute(statement, chunk)
        inserted += len(result.all())
        if progress is not None:
            progress(start + len(chunk), total)
    return inserted


async def insert_new_customers(
    session: Session, rows: Sequence[CustomerRow], progress: ChunkProgress | None = None
) -> int:
    """Insert the customers whose key is not stored yet; returns how many were inserted."""
    return await _insert_new(session, Customer, rows, "customer_key", progress)


async def insert_new_profiles(
    session: Session, rows: Sequence[ProfileRow], progress: ChunkProgress | None = None
) -> int:
    """Insert the profiles of customers that have none yet (a stored profile is kept as it
    is); returns how many were inserted."""
    return await _insert_new(session, CustomerProfile, rows, "customer_id", progress)


async def insert_new_products(
    session: Session, rows: Sequence[ProductRow], progress: ChunkProgress | None = None
) -> int:
    """Insert the products whose sku is not stored yet; returns how many were inserted."""
    return await _insert_new(session, Product, rows, "sku", progress)


async def insert_new_interactions(
    session: Session, rows: Sequence[InteractionRow], progress: ChunkProgress | None = None
) -> int:
    """Insert the interactions whose event id is not stored yet; returns how many were
    inserted."""
    return await _insert_new(session, Interaction, rows, "event_id", progress)


# -- ids of what was written ---------------------------------------------------------------


async def _ids_by(
    session: Session,
    key_column: QueryableAttribute[str],
    id_column: QueryableAttribute[int],
    keys: Iterable[str] | None,
) -> dict[str, int]:
    if keys is None:
        rows = await session.execute(select(key_column, id_column))
        return {str(key): int(row_id) for key, row_id in rows.all()}
    wanted = list(keys)
    dialect = dialect_of(session)
    found: dict[str, int] = {}
    for start in range(0, len(wanted), LOOKUP_CHUNK):
        chunk = wanted[start : start + LOOKUP_CHUNK]
        rows = await session.execute(
            select(key_column, id_column).where(member_of(key_column, chunk, dialect))
        )
        found.update({str(key): int(row_id) for key, row_id in rows.all()})
    return found


async def product_ids(session: Session, skus: Iterable[str] | None = None) -> dict[str, int]:
    """sku -> row id of the stored products among ``skus`` (None: of every product)."""
    return await _ids_by(session, Product.sku, Product.id, skus)


async def customer_ids(session: Session, keys: Iterable[str] | None = None) -> dict[str, int]:
    """customer key -> row id of the stored customers among ``keys`` (None: of every
    customer). Aliases of merged customers are not followed: loaders ask for the keys
    they have just inserted."""
    return await _ids_by(session, Customer.customer_key, Customer.id, keys)
