"""Every difference between SQLite, PostgreSQL and MySQL/MariaDB, written once.

Store modules build their statements with these functions and never branch on the
dialect themselves:

- :func:`insert_ignoring`: insert, skipping rows whose unique key exists already;
- :func:`upsert`: insert, or update chosen columns of the existing row (optionally only
  where a condition holds);
- :func:`member_of`: ``column IN values`` in the form each database plans best.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Table, bindparam, case, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import DeclarativeBase

POSTGRESQL = "postgresql"
SQLITE = "sqlite"
MYSQL = "mysql"  # SQLAlchemy names MariaDB's dialect "mysql" too

TableLike = Table | type[DeclarativeBase]


def dialect_of(bind: AsyncSession | AsyncConnection) -> str:
    """The dialect name of a session's or connection's database."""
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
    rows only. On MySQL ``INSERT IGNORE`` also turns other errors (a too-long value) into
    warnings, so validate before inserting, as every caller does.
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

    Args:
        dialect: from :func:`dialect_of`.
        target: a mapped class or a Table.
        key: the columns of the unique index the rows may collide on.
        update: the columns that take the inserted row's values.
        only_where: update only existing rows where this holds (other rows are left as
            they are); a condition on the target's columns.
    """
    statement = _insert(dialect, target)
    if dialect == MYSQL:
        table = _table(target)
        new = statement.inserted
        values: dict[str, Any] = {
            name: new[name]
            if only_where is None
            else case((only_where, new[name]), else_=table.c[name])
            for name in update
        }
        return statement.on_duplicate_key_update(values)
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: excluded[name] for name in update},
        where=only_where,
    )


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
