"""Many rows in one statement, skipping rows whose unique key is stored already.

:func:`insert_new_rows` is the bulk form of :func:`~rasa_personalize.store.dialect.insert_ignoring`
for hot paths that write hundreds of rows per transaction (event ingestion): it answers
which keys it really inserted, so callers tell new rows from redeliveries without a
second query.

On PostgreSQL the rows go as one array per column through ``unnest()``: one small
prepared statement whatever the batch size, where the portable executemany with
RETURNING becomes a multi-row ``VALUES`` list, a new statement text of thousands of
placeholders to parse and plan for every batch size. Other databases take that
portable form.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import Numeric, Result, String, Table, TextClause, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.expression import Executable

from rasa_personalize.store.dialect import POSTGRESQL, dialect_of, insert_ignoring
from rasa_personalize.store.types import Session

if TYPE_CHECKING:
    from typing_extensions import Unpack

T = TypeVar("T")

# Values per ``IN (...)`` list: far below every supported database's parameter limit
# (SQLite's 32,766 is the lowest), and small enough to plan quickly.
LOOKUP_CHUNK: Final = 1_000


def chunked(items: Sequence[T], size: int = LOOKUP_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rowcount(result: Any) -> int:
    """Rows a DELETE or UPDATE touched; 0 when the driver cannot tell."""
    return max(0, int(getattr(result, "rowcount", 0) or 0))


async def plain_rows(session: Session, statement: Executable) -> Result[Unpack[tuple[Any, ...]]]:
    """Run a SELECT of columns on the session's connection.

    The rows come back as they are: through the session, a statement naming mapped
    columns is executed and read by the ORM's loader, which on the event paths' lookups
    of thousands of rows cost about a third more Python for the same tuples.
    """
    connection = await session.connection()
    return await connection.execute(statement)


async def insert_new_rows(
    session: Session, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
) -> frozenset[Any]:
    """Insert ``rows``, skipping those whose unique ``key`` column exists already.

    A row that collides with one stored before, or with a concurrent transaction's
    (which it waits for), is skipped, not an error: storing is idempotent by ``key``.

    Args:
        session: A session in the caller's transaction.
        table: The target table.
        key: The column of a unique index; its values identify the rows.
        rows: Column name -> value, the same columns in every row (scalar columns:
            numbers, text, timestamps).

    Returns:
        The ``key`` values of the rows really inserted.
    """
    if not rows:
        return frozenset()
    connection = await session.connection()
    return await connection.run_sync(insert_new_rows_on, table, key, rows)


def insert_new_rows_on(
    connection: Connection, table: Table, key: str, rows: Sequence[Mapping[str, Any]]
) -> frozenset[Any]:
    """:func:`insert_new_rows` on a synchronous connection (one thread hop for a batch)."""
    if not rows:
        return frozenset()
    columns = tuple(rows[0])
    dialect = dialect_of(connection)
    if dialect == POSTGRESQL:
        arrays = {name: [row[name] for row in rows] for name in columns}
        statement = _unnest_insert(connection.dialect, table, key, columns)
        result = connection.execute(statement, arrays)
    else:
        result = connection.execute(
            insert_ignoring(dialect, table, [key]).returning(table.c[key]), rows
        )
    return frozenset(result.scalars().all())


def _array_element(dialect: Dialect, table: Table, name: str) -> str:
    """The PostgreSQL type a column's values travel as, in their array."""
    kind = table.c[name].type
    if isinstance(kind, Numeric) and not kind.asdecimal:
        # The values are Python floats; the insert converts them to the column's type as
        # it converts any float8.
        return "FLOAT8"
    if isinstance(kind, String):
        # Without the length: a cast to VARCHAR(n) would cut a longer value silently,
        # where the insert into the column refuses it.
        return "VARCHAR"
    return str(kind.compile(dialect=dialect))


@lru_cache(maxsize=32)
def _unnest_insert(
    dialect: Dialect, table: Table, key: str, columns: tuple[str, ...]
) -> TextClause:
    """``INSERT ... SELECT * FROM unnest(arrays) ON CONFLICT DO NOTHING RETURNING key``."""
    preparer = dialect.identifier_preparer
    names = ", ".join(preparer.quote(name) for name in columns)
    arrays = ", ".join(
        f"CAST(:{name} AS {_array_element(dialect, table, name)}[])" for name in columns
    )
    # Built from the table's own metadata: no outside text reaches the statement.
    return text(
        f"INSERT INTO {preparer.format_table(table)} ({names}) "  # noqa: S608
        f"SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({preparer.quote(key)}) DO NOTHING RETURNING {preparer.quote(key)}"
    )
