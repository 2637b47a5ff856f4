"""Every interaction with a product as numpy columns: the one read training needs.

``personalize train`` used to read the interactions twice as Python lists (its own read
with customer keys, and the validation data with customer ids), ten million rows each
at a million customers: 13 GB and minutes of per-row work. :func:`read_interaction_columns`
reads them once as integer columns (the store ids of customer and product, the kind as
a small code, the value) in insertion order (``interactions.id``), and the keys and skus
once per customer and product. Training and validation both derive their data from it.

On PostgreSQL the rows come through ``COPY (SELECT ...) TO STDOUT`` in the binary
format, every field of fixed width, parsed by numpy block by block (no Python object per
row); elsewhere through a streamed ``SELECT`` in batches (SQLite stores are small).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import func, select, text

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.store.collector import collector_paused
from rasa_personalize.store.dialect import POSTGRESQL, dialect_of
from rasa_personalize.store.models import INTERACTION_KINDS, Customer, Interaction, Product
from rasa_personalize.store.types import Session

# Rows fetched per round trip on the streamed path.
READ_BATCH: Final = 20_000
# Bytes of COPY output gathered before numpy parses them as rows.
_PARSE_BYTES: Final = 8 << 20
_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
# One row of the binary COPY below: a field count, then (length, value) per field; all
# integers big-endian. Every field is NOT NULL and of fixed width, so rows are too.
_ROW: Final = np.dtype(
    [
        ("fields", ">i2"),
        ("id_len", ">i4"),
        ("id", ">i8"),
        ("customer_len", ">i4"),
        ("customer", ">i8"),
        ("product_len", ">i4"),
        ("product", ">i8"),
        ("kind_len", ">i4"),
        ("kind", ">i2"),
        ("value_len", ">i4"),
        ("value", ">f8"),
    ]
)
_LENGTHS: Final = {"id_len": 8, "customer_len": 8, "product_len": 8, "kind_len": 2, "value_len": 8}
# The COPY's statement: kinds as their position in INTERACTION_KINDS (0-based; the
# table's check constraint allows no other), no value as NaN.
_COPY_QUERY: Final = (
    "SELECT id, customer_id, product_id, (array_position($1::text[], kind::text) - 1)::int2, "
    "COALESCE(value, 'NaN'::float8) FROM interactions WHERE product_id IS NOT NULL"
)


class InteractionReadError(PersonalizeError):
    """The database answered interaction rows this reader does not understand."""


@dataclass(frozen=True, eq=False)
class InteractionColumns:
    """Every interaction that names a product, in insertion order, as numpy columns.

    Attributes:
        customers: per interaction, its customer's row in ``customer_ids``.
        products: per interaction, its product's row in ``skus``.
        kinds: per interaction, its kind's index in :data:`KINDS`.
        values: per interaction, its value (stars, feedback); NaN when it has none.
        customer_ids: the store ids of the customers with such interactions, ascending.
        customer_keys: their customer keys, row for row.
        product_ids: the store ids of the products with interactions, ascending.
        skus: their skus, row for row.
        newest_at: when the newest of these interactions happened (None: there is none).
        catalogue_size: products in the store, with or without interactions.
    """

    customers: NDArray[np.intp]
    products: NDArray[np.intp]
    kinds: NDArray[np.int8]
    values: NDArray[np.float64]
    customer_ids: NDArray[np.int64]
    customer_keys: NDArray[np.str_]
    product_ids: NDArray[np.int64]
    skus: NDArray[np.str_]
    newest_at: datetime | None
    catalogue_size: int

    def __len__(self) -> int:
        return len(self.kinds)

    def kind_names(self) -> NDArray[np.str_]:
        """The kind of every interaction, as strings."""
        return KINDS[self.kinds]


# Kind codes of InteractionColumns.kinds.
KINDS: Final = np.asarray(INTERACTION_KINDS, dtype=np.str_)


async def read_interaction_columns(session: Session) -> InteractionColumns:
    """Every interaction with a product as columns, ordered by ``interactions.id``.

    Insertion order makes a seeded split the same on every run and every backend.
    Interactions without a product (a search) are left out.

    Raises:
        InteractionReadError: the database answered rows this reader does not understand.
    """
    catalogue_size = int(await session.scalar(select(func.count()).select_from(Product)) or 0)
    if dialect_of(session) == POSTGRESQL:
        ids, customer_ids, product_ids, kinds, values = await _copy_rows(session)
    else:
        ids, customer_ids, product_ids, kinds, values = await _stream_rows(session)
    if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):
        # The rows come in the table's physical order, mostly insertion order already;
        # sorting here is cheaper than an ORDER BY over every row in the database.
        order = np.argsort(ids, kind="stable")
        customer_ids, product_ids = customer_ids[order], product_ids[order]
        kinds, values = kinds[order], values[order]
    del ids
    distinct_customers, customers = np.unique(customer_ids, return_inverse=True)
    del customer_ids
    distinct_products, products = np.unique(product_ids, return_inverse=True)
    del product_ids
    keys = await _names_of(session, Customer.id, Customer.customer_key, distinct_customers)
    skus = await _names_of(session, Product.id, Product.sku, distinct_products)
    newest_at = await session.scalar(
        select(func.max(Interaction.occurred_at)).where(Interaction.product_id.is_not(None))
    )
    return InteractionColumns(
        customers=customers.ravel().astype(np.intp, copy=False),
        products=products.ravel().astype(np.intp, copy=False),
        kinds=kinds,
        values=values,
        customer_ids=distinct_customers,
        customer_keys=keys,
        product_ids=distinct_products,
        skus=skus,
        newest_at=_as_utc(newest_at),
        catalogue_size=catalogue_size,
    )


def _as_utc(value: Any) -> datetime | None:
    # UtcDateTime is not applied to aggregate results: SQLite hands back strings.
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


Columns = tuple[
    NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int8], NDArray[np.float64]
]


class _Columns:
    """Column blocks gathered as they are parsed, joined at the end."""

    def __init__(self) -> None:
        self.blocks: list[Columns] = []

    def add(self, block: Columns) -> None:
        self.blocks.append(block)

    def joined(self) -> Columns:
        if not self.blocks:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty, np.empty(0, dtype=np.int8), np.empty(0, dtype=np.float64)
        parts = list(zip(*self.blocks, strict=True))
        self.blocks = []
        return (
            np.concatenate(parts[0]),
            np.concatenate(parts[1]),
            np.concatenate(parts[2]),
            np.concatenate(parts[3]),
            np.concatenate(parts[4]),
        )


class _BinaryCopyParser:
    """Rows of a binary ``COPY ... TO STDOUT`` of :data:`_COPY_QUERY`, parsed as they come."""

    def __init__(self, columns: _Columns) -> None:
        self._columns = columns
        self._pending = bytearray()
        self._header_read = False
        self._ended = False

    async def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        if len(self._pending) >= _PARSE_BYTES:
            self._parse()

    def finish(self) -> None:
        self._parse()
        if not self._ended or self._pending:
            raise InteractionReadError("the database's COPY output ended unexpectedly")

    def _parse(self) -> None:
        pending = self._pending
        if not self._header_read:
            if len(pending) < len(_SIGNATURE) + 8:
                return
            if bytes(pending[: len(_SIGNATURE)]) != _SIGNATURE:
                raise InteractionReadError("the database's COPY output is not in the binary format")
            (extension,) = struct.unpack_from(">i", pending, len(_SIGNATURE) + 4)
            start = len(_SIGNATURE) + 8 + extension
            if len(pending) < start:
                return
            del pending[:start]
            self._header_read = True
        count = len(pending) // _ROW.itemsize
        if count:
            rows = np.frombuffer(pending, dtype=_ROW, count=count)
            self._check(rows)
            self._columns.add(
                (
                    rows["id"].astype(np.int64),
                    rows["customer"].astype(np.int64),
                    rows["product"].astype(np.int64),
                    rows["kind"].astype(np.int8),
                    rows["value"].astype(np.float64),
                )
            )
            del rows
            del pending[: count * _ROW.itemsize]
        # The trailer: a field count of -1, shorter than a row.
        if bytes(pending) == b"\xff\xff":
            del pending[:]
            self._ended = True

    @staticmethod
    def _check(rows: NDArray[Any]) -> None:
        bad = rows["fields"] != 5
        for name, length in _LENGTHS.items():
            bad |= rows[name] != length
        if bad.any() or (rows["kind"] < 0).any() or (rows["kind"] >= len(KINDS)).any():
            raise InteractionReadError("the database's COPY output has rows of an unexpected shape")


async def _copy_rows(session: Session) -> Columns:
    """The interaction columns through a binary COPY (PostgreSQL)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        raise InteractionReadError("the store's connection has no driver connection to COPY on")
    if not driver.is_in_transaction():
        # One snapshot with the reads that follow (keys, skus): SQLAlchemy's asyncpg
        # adapter opens the transaction at the first statement.
        await session.execute(text("SELECT 1"))
    columns = _Columns()
    parser = _BinaryCopyParser(columns)
    with collector_paused():
        await driver.copy_from_query(
            _COPY_QUERY, list(INTERACTION_KINDS), output=parser.feed, format="binary"
        )
        parser.finish()
    return columns.joined()


async def _stream_rows(session: Session) -> Columns:
    """The interaction columns through a streamed SELECT (SQLite, MySQL)."""
    code = {kind: number for number, kind in enumerate(INTERACTION_KINDS)}
    columns = _Columns()
    result = await session.stream(
        select(
            Interaction.id,
            Interaction.customer_id,
            Interaction.product_id,
            Interaction.kind,
            Interaction.value,
        )
        .where(Interaction.product_id.is_not(None))
        .execution_options(yield_per=READ_BATCH)
    )
    with collector_paused():
        async for partition in result.partitions():
            ids, customers, products, kinds, values = zip(*partition, strict=True)
            try:
                kind_codes = [code[kind] for kind in kinds]
            except KeyError:
                raise InteractionReadError(
                    "an interaction has a kind this reader does not know"
                ) from None
            columns.add(
                (
                    np.fromiter(ids, dtype=np.int64, count=len(ids)),
                    np.fromiter(customers, dtype=np.int64, count=len(ids)),
                    np.fromiter(products, dtype=np.int64, count=len(ids)),
                    np.asarray(kind_codes, dtype=np.int8),
                    np.fromiter(
                        (np.nan if value is None else value for value in values),
                        dtype=np.float64,
                        count=len(ids),
                    ),
                )
            )
    return columns.joined()


async def _names_of(
    session: Session, id_column: Any, name_column: Any, wanted: NDArray[np.int64]
) -> NDArray[np.str_]:
    """``name_column`` of the rows whose ``id_column`` is in ``wanted`` (ascending), in
    that order: one streamed read of the whole table, matched by binary search."""
    ids: list[int] = []
    names: list[str] = []
    result = await session.stream(
        select(id_column, name_column).execution_options(yield_per=READ_BATCH)
    )
    with collector_paused():
        async for partition in result.partitions():
            for row_id, name in partition:
                ids.append(row_id)
                names.append(name)
    id_array = np.asarray(ids, dtype=np.int64)
    order = np.argsort(id_array, kind="stable")
    id_array = id_array[order]
    rows = np.searchsorted(id_array, wanted)
    if len(wanted) and (rows.max() >= len(id_array) or (id_array[rows] != wanted).any()):
        raise InteractionReadError("an interaction names a customer or product that is not stored")
    name_array = np.asarray(names, dtype=np.str_) if names else np.empty(0, dtype="<U1")
    del names
    chosen: NDArray[np.str_] = name_array[order[rows]]
    return chosen
