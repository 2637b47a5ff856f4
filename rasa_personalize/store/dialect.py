"""Every difference between SQLite, PostgreSQL and MySQL/MariaDB, written once.

Store modules build their statements with these functions and never branch on the
dialect themselves:

- :func:`insert_ignoring`: insert, skipping rows whose unique key exists already;
- :func:`upsert`: insert, or update chosen columns of the existing row (optionally only
  where a condition holds);
- :func:`member_of`: ``column IN values`` in the form each database plans best;
- :func:`lock_for_update`: lock the selected rows until the transaction ends;
- :func:`lock_for_key_update`: the same, before changing a unique column of them;
- :func:`failure_keeps_transaction`: let one statement fail (a unique violation)
  without losing the transaction;
- :func:`count_where`: how many rows of a group meet a condition, as an integer;
- the column types and table options whose MySQL form differs (:data:`DOUBLE`,
  :data:`UTC_DATETIME`, :data:`MYSQL_TABLE_OPTIONS`), used by the models and the
  migrations alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Float,
    Table,
    bindparam,
    case,
    func,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql import visitors
from sqlalchemy.sql.selectable import GenerativeSelect

POSTGRESQL = "postgresql"
SQLITE = "sqlite"
MYSQL = "mysql"  # SQLAlchemy names MariaDB's dialect "mysql" too

TableLike = Table | type[DeclarativeBase]
LockableT = TypeVar("LockableT", bound=GenerativeSelect)

# Column types and table options whose MySQL form differs. The migrations use them too, so
# SQLite and PostgreSQL keep the DDL they always had: never change one, add a new name.
#
# MySQL's FLOAT is single precision (PostgreSQL's FLOAT and SQLite's REAL hold 8 bytes):
# weights and scores would come back as 0.30000001192092896. asdecimal=False: SQLAlchemy's
# MySQL DOUBLE hands back Decimal otherwise, where the other two give float.
DOUBLE: Final = Float().with_variant(mysql.DOUBLE(asdecimal=False), MYSQL)
# MySQL's DATETIME drops fractions of a second, which orders events of the same second
# at random; DATETIME(6) keeps microseconds as the other two do. It has no time zone:
# the store writes UTC and sessions run in UTC (store/database.py).
UTC_DATETIME: Final = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), MYSQL)
# utf8mb4 whatever the server's default (product titles and names need all of Unicode).
# Binary collation compares as PostgreSQL and SQLite do: "SKU-1" and "sku-1" are two
# products, two event ids, two tags. Like every MySQL collation but the NO PAD ones it
# ignores trailing spaces when comparing ("a " = "a"); event and import validation strip
# them before anything is stored.
MYSQL_TABLE_OPTIONS: Final = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}


def dialect_of(bind: AsyncSession | AsyncConnection | Connection) -> str:
    """The dialect name of a session's or connection's database (async or not)."""
    if isinstance(bind, AsyncSession):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def _table(target: TableLike) -> Table:
    return target if isinstance(target, Table) else target.__table__  # type: ignore[return-value]


def _insert(dialect: str, target: TableLike) -> Any:
    table = _table(target)
    if dialect == POSTGRESQL:
        return postgresql.insert(table)
    if dialect == MYSQL:
        return mysql.insert(table)
    return sqlite.insert(table)


def insert_ignoring(dialect: str, target: TableLike, key: Sequence[str]) -> Any:
    """``INSERT`` that skips rows whose unique ``key`` columns exist already.

    ``.returning(...)`` works on all three (MariaDB from 10.5) and returns the inserted
    rows only. On MySQL this is ``INSERT IGNORE``, which is not as narrow as PostgreSQL's
    and SQLite's ``ON CONFLICT DO NOTHING``: it also skips, silently, a row whose foreign
    key names a missing row, and cuts a too-long string to fit (seen on MariaDB 10.11; a
    failed CHECK still raises). Validate lengths and references before inserting.
    ``ON DUPLICATE KEY UPDATE`` with a no-op would keep those errors, but its RETURNING
    lists the duplicates too.
    """
    statement = _insert(dialect, target)
    if dialect == MYSQL:
        return statement.prefix_with("IGNORE")
    return statement.on_conflict_do_nothing(index_elements=list(key))


def upsert(
    dialect: str,
    target: TableLike,
    key: Sequence[str],
    update: Sequence[str],
    *,
    only_where: ColumnElement[bool] | None = None,
) -> Any:
    """``INSERT``, or on a conflict of ``key`` set ``update`` columns to the new values.

    Use it with ``.values(...)``, an executemany list of rows, or ``.from_select(...)``.
    The ``rowcount`` of an upsert is not portable: MySQL counts an updated row twice and
    a row left as it was once, so count rows another way where a number is reported.

    Args:
        dialect: from :func:`dialect_of`.
        target: a mapped class or a Table.
        key: the columns of the unique index the rows may collide on. MySQL has no way
            to name it: any unique index of the table may collide, so upsert only into
            tables whose other unique keys the inserted rows cannot hit (a generated id).
        update: the columns that take the inserted row's values.
        only_where: update only existing rows where this holds (other rows are left as
            they are); a condition on the target's existing columns and constant values,
            which may name at most one of the ``update`` columns.

    Raises:
        ValueError: ``only_where`` names more than one of the ``update`` columns.
    """
    table = _table(target)
    guarded = _guarded_columns(table, update, only_where)
    statement = _insert(dialect, target)
    if dialect == MYSQL:
        return statement.on_duplicate_key_update(
            _mysql_assignments(statement, table, update, guarded, only_where)
        )
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: excluded[name] for name in update},
        where=only_where,
    )


def _guarded_columns(
    table: Table, update: Sequence[str], only_where: ColumnElement[bool] | None
) -> list[str]:
    """The ``update`` columns that ``only_where`` reads, checked on every dialect."""
    if only_where is None:
        return []
    read = {
        element.name
        for element in visitors.iterate(only_where)
        if isinstance(element, Column) and element.table is table
    }
    guarded = [name for name in update if name in read]
    if len(guarded) > 1:
        # Checked everywhere, not only on MySQL, so that a caller tested on SQLite cannot
        # pass there and fail in a MySQL shop.
        raise ValueError(f"upsert: only_where may read at most one updated column, not {guarded}")
    return guarded


def _mysql_assignments(
    statement: Any,
    table: Table,
    update: Sequence[str],
    guarded: Sequence[str],
    only_where: ColumnElement[bool] | None,
) -> list[tuple[str, Any]]:
    """``ON DUPLICATE KEY UPDATE`` assignments that behave like ``DO UPDATE ... WHERE``.

    MySQL has no WHERE there: each column becomes ``CASE WHEN condition THEN new ELSE
    old END``. It assigns left to right and later assignments see earlier ones, so the
    one updated column the condition reads is assigned last, after every other column
    has seen the condition on the old row.
    """
    new = statement.inserted
    if only_where is None:
        return [(name, new[name]) for name in update]
    # The condition's constants are written into the text: the drivers' executemany
    # rewrites "INSERT ... VALUES (%s, ...)" into a multi-row VALUES list and cannot
    # place placeholders that follow it (a TypeError in asyncmy).
    condition = text(
        str(only_where.compile(dialect=mysql.dialect(), compile_kwargs={"literal_binds": True}))
    )
    ordered = [name for name in update if name not in guarded] + list(guarded)
    return [(name, case((condition, new[name]), else_=table.c[name])) for name in ordered]


def member_of(column: Any, values: Collection[Any], dialect: str) -> Any:
    """``column IN values``; on PostgreSQL ``IN (SELECT unnest($1))`` with one array.

    An IN list renders one placeholder per value, so every batch size is a new statement
    text to build and plan; the array form is one cached, prepared statement whatever
    the number of values, which matters for jobs that filter by thousands of ids. Not
    ``= ANY($1)``: once PostgreSQL switches a prepared statement to its generic plan it
    guesses the array holds ten values, picks a sequential scan, and compares every row
    with every value (seen: 8 ms became 400 ms for 1,000 keys); a semi-join against
    unnest() keeps the index or a hash whatever the plan.
    """
    if dialect == POSTGRESQL:
        element = column.type if not isinstance(column.type, BigInteger) else BigInteger()
        array = bindparam(None, list(values), type_=ARRAY(element))
        return column.in_(select(func.unnest(array)))
    return column.in_(list(values))


def lock_for_update(statement: LockableT, dialect: str) -> LockableT:
    """Lock the rows ``statement`` selects against other writers until the transaction ends.

    - PostgreSQL: ``FOR NO KEY UPDATE``, which does not conflict with the ``KEY SHARE``
      locks that inserting rows referencing these rows (foreign keys) holds.
    - SQLite: nothing to add; one transaction writes at a time already.
    - MySQL/MariaDB: ``FOR UPDATE``, InnoDB's only write lock. Inserting a row that
      references a locked row takes a shared lock on it, which conflicts: take this lock
      before inserting such rows in the same transaction, or two transactions that
      inserted first may deadlock (InnoDB then rolls one back with error 1213).
    """
    if dialect == POSTGRESQL:
        return statement.with_for_update(key_share=True)
    if dialect == MYSQL:
        return statement.with_for_update()
    return statement


def lock_for_key_update(statement: LockableT, dialect: str) -> LockableT:
    """Lock the rows ``statement`` selects before changing one of their unique columns.

    - PostgreSQL: ``FOR UPDATE``. Changing a column with a unique index (one a foreign key
      could reference) needs this stronger lock; taking :func:`lock_for_update`'s weaker
      one first and upgrading at the UPDATE can deadlock against a transaction that
      inserted referencing rows in between.
    - MySQL/MariaDB: ``FOR UPDATE``, as :func:`lock_for_update`.
    - SQLite: nothing to add.
    """
    if dialect in (POSTGRESQL, MYSQL):
        return statement.with_for_update()
    return statement


@asynccontextmanager
async def failure_keeps_transaction(session: AsyncSession) -> AsyncIterator[None]:
    """Run a statement that may fail (a unique violation) so that the transaction survives.

    PostgreSQL aborts the whole transaction on any error: there the statement runs inside
    a SAVEPOINT, rolled back to on failure. SQLite and MySQL/MariaDB undo only the failed
    statement already, and a SAVEPOINT on SQLite could even begin a transaction of its
    own (the driver starts one only before a write). The error still propagates: catch it
    outside this block.
    """
    if dialect_of(session) == POSTGRESQL:
        async with session.begin_nested():
            yield
    else:
        yield


def lock_before_referencing_insert(statement: LockableT, dialect: str) -> LockableT | None:
    """The lock to take on parent rows *before* inserting rows that reference them, if any.

    Only MySQL/MariaDB needs one: there, inserting a referencing row holds a shared lock
    on its parent, so two transactions that insert children first and then lock the same
    parents for update deadlock. On PostgreSQL the insert's ``KEY SHARE`` lock does not
    conflict with ``FOR NO KEY UPDATE``, and locking later keeps batches concurrent for
    longer; SQLite writes one transaction at a time. None: nothing to take first.
    """
    if dialect == MYSQL:
        return statement.with_for_update()
    return None


def count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows of a group meet ``condition``: an integer on every database.

    ``SUM(CASE WHEN ... THEN 1 ELSE 0 END)`` is an integer on SQLite and PostgreSQL but a
    DECIMAL on MySQL, which arrives as ``decimal.Decimal``: ``int / Decimal`` is a Decimal
    that JSON cannot encode, and ``float + Decimal`` raises. ``COUNT`` of a CASE without
    ELSE counts the rows where it holds, as a whole number everywhere.
    """
    return func.count(case((condition, 1)))
