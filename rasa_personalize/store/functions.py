"""SQL functions that every backend spells its own way, compiled per dialect.

Stored timestamps are UTC on every backend, but each keeps them differently: SQLite as
ISO text, PostgreSQL as ``timestamptz``, MySQL/MariaDB as a ``DATETIME`` holding UTC wall
time. These elements give the same numbers from all three, so aggregates that measure
time (recency, active days) are one statement for every store:

- :class:`EpochSeconds`: seconds since 1970-01-01 UTC, as a float;
- :class:`UtcDay`: whole UTC days since 1970-01-01 (the calendar day an event falls on);
- :class:`UtcHour`: the UTC hour of the day, 0 to 23.

A dialect without a form here is refused when the statement compiles, by name, rather
than sent as a call to a function the database does not have.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Float, Integer
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

SECONDS_PER_DAY: Final = 86_400.0
# julianday() of 1970-01-01T00:00Z.
_UNIX_EPOCH_JULIAN_DAY: Final = 2440587.5
# MySQL's TIMESTAMPDIFF counts from a DATETIME literal; UNIX_TIMESTAMP() would read the
# stored wall time in the session's time zone instead of as UTC.
_MYSQL_EPOCH: Final = "'1970-01-01 00:00:00'"
# SQLAlchemy calls MariaDB "mysql" when reached through a mysql:// URL, "mariadb" otherwise.
_MYSQL_DIALECTS: Final = ("mysql", "mariadb")


class EpochSeconds(FunctionElement[float]):
    """Seconds since 1970-01-01 UTC of a stored timestamp, as a float, on every backend.

    NULL stays NULL (e.g. the latest purchase of a customer who never bought).
    """

    type = Float()
    name = "epoch_seconds"
    inherit_cache = True


class UtcDay(FunctionElement[int]):
    """Whole UTC days since 1970-01-01 of a stored timestamp (the day a session falls on)."""

    type = Integer()
    name = "utc_day"
    inherit_cache = True


class UtcHour(FunctionElement[int]):
    """The hour of the day (0-23, UTC) of a stored timestamp."""

    type = Integer()
    name = "utc_hour"
    inherit_cache = True


def _argument(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(EpochSeconds)
@compiles(UtcDay)
@compiles(UtcHour)
def _no_form(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"{element.name}() has no form for the {compiler.dialect.name!r} dialect "
        "(rasa_personalize.store.functions covers sqlite, postgresql and mysql/mariadb)"
    )


@compiles(EpochSeconds, "sqlite")
def _epoch_seconds_sqlite(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps timestamps as ISO text in UTC; julianday() parses it.
    argument = _argument(element, compiler, **kw)
    return f"((julianday({argument}) - {_UNIX_EPOCH_JULIAN_DAY}) * {SECONDS_PER_DAY})"


@compiles(EpochSeconds, "postgresql")
def _epoch_seconds_postgresql(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # EXTRACT gives numeric on PostgreSQL 14+, which asyncpg hands back as Decimal.
    argument = _argument(element, compiler, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {argument}) AS DOUBLE PRECISION)"


def _epoch_seconds_mysql(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # Microseconds keep fractional DATETIME(6) values; dividing by a float literal makes
    # the result a DOUBLE (an integer divisor would give a DECIMAL, read as Decimal).
    argument = _argument(element, compiler, **kw)
    return f"(TIMESTAMPDIFF(MICROSECOND, {_MYSQL_EPOCH}, {argument}) / 1e6)"


@compiles(UtcDay, "sqlite")
def _utc_day_sqlite(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    argument = _argument(element, compiler, **kw)
    return f"CAST(julianday({argument}) - {_UNIX_EPOCH_JULIAN_DAY} AS INTEGER)"


@compiles(UtcDay, "postgresql")
def _utc_day_postgresql(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    argument = _argument(element, compiler, **kw)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {argument}) / {SECONDS_PER_DAY}) AS BIGINT)"


def _utc_day_mysql(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    argument = _argument(element, compiler, **kw)
    return f"TIMESTAMPDIFF(DAY, {_MYSQL_EPOCH}, {argument})"


@compiles(UtcHour, "sqlite")
def _utc_hour_sqlite(element: UtcHour, compiler: SQLCompiler, **kw: Any) -> str:
    # "YYYY-MM-DD HH:..." (or with a "T"): the hour is the 12th and 13th character, which
    # costs a fraction of parsing the time (strftime, julianday).
    argument = _argument(element, compiler, **kw)
    return f"CAST(substr({argument}, 12, 2) AS INTEGER)"


@compiles(UtcHour, "postgresql")
def _utc_hour_postgresql(element: UtcHour, compiler: SQLCompiler, **kw: Any) -> str:
    argument = _argument(element, compiler, **kw)
    return f"CAST(EXTRACT(HOUR FROM {argument} AT TIME ZONE 'UTC') AS INTEGER)"


def _utc_hour_mysql(element: UtcHour, compiler: SQLCompiler, **kw: Any) -> str:
    # The stored DATETIME is the UTC wall time.
    return f"HOUR({_argument(element, compiler, **kw)})"


for _dialect in _MYSQL_DIALECTS:
    compiles(EpochSeconds, _dialect)(_epoch_seconds_mysql)
    compiles(UtcDay, _dialect)(_utc_day_mysql)
    compiles(UtcHour, _dialect)(_utc_hour_mysql)

__all__ = ["SECONDS_PER_DAY", "EpochSeconds", "UtcDay", "UtcHour"]
