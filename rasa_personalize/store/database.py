"""Engine and session-factory set-up for SQLite (embedded), PostgreSQL and MySQL/MariaDB.

Users write plain ``sqlite:///``, ``postgresql://`` and ``mysql://`` URLs; the async driver
is chosen here. Nothing connects until the first statement, so a server starts while the
store is down.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from rasa_personalize.errors import ConfigurationError, MissingExtraError

# asyncmy: an asyncio driver written for MySQL and MariaDB alike, supported by SQLAlchemy 2,
# installed by the "mysql" extra. Every MySQL spelling a user may copy from another tool
# maps to it, as postgresql+psycopg2 maps to asyncpg.
MYSQL_DRIVER = "mysql+asyncmy"
# A pooled connection idle this long is tested before use (see ping_idle_connections).
PING_AFTER_IDLE_S: Final = 10.0
_IDLE_SINCE: Final = "rasa_personalize_idle_since"
_MYSQL_DRIVER_MODULE = "asyncmy"

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    # SQLAlchemy's "mariadb" names a dialect of its own; "mysql" serves both servers and
    # tells them apart by the server's version, so the rest of the store sees one name.
    "mysql": MYSQL_DRIVER,
    "mysql+asyncmy": MYSQL_DRIVER,
    "mysql+aiomysql": MYSQL_DRIVER,
    "mysql+pymysql": MYSQL_DRIVER,
    "mysql+mysqldb": MYSQL_DRIVER,
    "mariadb": MYSQL_DRIVER,
    "mariadb+asyncmy": MYSQL_DRIVER,
    "mariadb+aiomysql": MYSQL_DRIVER,
    "mariadb+pymysql": MYSQL_DRIVER,
    "mariadb+mysqldb": MYSQL_DRIVER,
}


def async_database_url(url: str) -> URL:
    """Turn a user's database URL into one with an async driver.

    Raises:
        ConfigurationError: not a URL, or a database this plugin does not support.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "PERSONALIZE_DATABASE_URL is not a database URL "
            "(expected e.g. sqlite:///personalize.db, postgresql://host/db or mysql://host/db)"
        ) from None
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(
            f"PERSONALIZE_DATABASE_URL uses {parsed.drivername!r}: "
            "only sqlite, postgresql and mysql (MariaDB too) are supported"
        )
    parsed = parsed.set(drivername=driver)
    if driver == MYSQL_DRIVER and "charset" not in parsed.query:
        # The server's default may be latin1 or 3-byte utf8: product titles and names
        # need all of Unicode.
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def describe_database(url: str) -> str:
    """A loggable description of a database URL: no password, no user name."""
    parsed = async_database_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return f"sqlite:{parsed.database or ':memory:'}"
    port = parsed.port or (3306 if backend == "mysql" else 5432)
    return f"{backend}://{parsed.host or 'localhost'}:{port}/{parsed.database}"


def require_driver(url: URL) -> None:
    """Check that the async driver of ``url`` (from :func:`async_database_url`) is installed.

    Raises:
        MissingExtraError: a MySQL/MariaDB URL without the "mysql" extra.
    """
    # SQLite's and PostgreSQL's drivers are plain dependencies; MySQL's is an extra.
    if url.drivername == MYSQL_DRIVER and importlib.util.find_spec(_MYSQL_DRIVER_MODULE) is None:
        raise MissingExtraError("a MySQL/MariaDB store", "mysql")


@dataclass(frozen=True)
class StoreTimeouts:
    """Bounds on waiting for the store. ``statement_s`` None means no statement limit."""

    connect_s: float = 2.0
    statement_s: float | None = 1.0


# Each SQLite connection's page cache, in KiB (SQLite's default is 2,000). The hot path's
# point reads land on pages spread over the file (a customer's interactions were written
# among everyone else's); with the default cache the demo store (16 MB) no longer fits, and
# every missed page is a read from the OS: 5-10x the CPU of the statements themselves
# (docs/benchmarks.md). Pages are allocated as they are read, so a small store costs
# only its size; a large one costs at most this much per connection.
SQLITE_CACHE_KIB: Final = 65_536


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Connection set-up for SQLite: WAL, normal sync, foreign keys, a larger page cache."""
    # WAL lets the action server read while a batch job writes; foreign keys are off by
    # default in SQLite and the schema relies on cascades.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def mysql_session_settings(statement_s: float | None, *, mariadb: bool) -> list[str]:
    """``SET`` statements that start every MySQL/MariaDB connection.

    MariaDB's ``max_statement_time`` (seconds) bounds every statement, reads and writes
    alike, as PostgreSQL's ``statement_timeout`` does. MySQL has no such setting: its
    ``max_execution_time`` (milliseconds) bounds read-only SELECTs only, so there writes
    are bounded by ``innodb_lock_wait_timeout`` (whole seconds) while waiting for a lock.
    """
    settings = [
        # UTC sessions: NOW() and any TIMESTAMP column agree with the UTC the store writes.
        "SET time_zone = '+00:00'",
        # Keep no warning texts: INSERT IGNORE warns once per skipped row, quoting its key,
        # and the driver logs every warning it is given (a key or an event id per line).
        "SET max_error_count = 0",
    ]
    if statement_s is None:
        return settings
    if mariadb:
        # 0 would mean "no limit": the smallest limit MariaDB keeps is a millisecond.
        settings.append(f"SET max_statement_time = {max(statement_s, 0.001):.3f}")
    else:
        settings.append(f"SET max_execution_time = {max(1, round(statement_s * 1000))}")
        settings.append(f"SET innodb_lock_wait_timeout = {max(1, math.ceil(statement_s))}")
    return settings


# A CHECK constraint that fails: MariaDB's error 4025 and MySQL's 3819. The drivers file
# them as OperationalError, where PostgreSQL and SQLite raise IntegrityError, which is
# what callers catch for a row the schema refuses.
_MYSQL_CHECK_VIOLATIONS = frozenset({3819, 4025})


def _check_violation_as_integrity_error(context: ExceptionContext) -> BaseException | None:
    error = context.original_exception
    code = error.args[0] if error.args else None
    if code in _MYSQL_CHECK_VIOLATIONS and context.sqlalchemy_exception is not None:
        return IntegrityError(context.statement, context.parameters, error)
    return None


def ping_idle_connections(engine: AsyncEngine) -> None:
    """Test a pooled connection before use only when it has been idle a while.

    A connection can go stale while it sits in the pool (the server restarted, a proxy
    dropped it). SQLAlchemy's ``pool_pre_ping`` tests every checkout, which on asyncpg
    is three round trips (begin, a ping, rollback) before every transaction: about a
    tenth of the events API's CPU under load. Here only connections idle for
    :data:`PING_AFTER_IDLE_S` are tested; a stale one is replaced before use, as with
    pre-ping. One in use within that time that the server drops fails its statement,
    and the pool then replaces every connection made before the failure.
    """
    pool = engine.sync_engine.pool

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return  # new, or back in the pool a moment ago
        try:
            engine.sync_engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another.
            raise DisconnectionError(type(error).__name__) from None

    event.listen(pool, "checkin", on_checkin)
    event.listen(pool, "checkout", on_checkout)


def _create_mysql_engine(url: URL, timeouts: StoreTimeouts, pool_size: int) -> AsyncEngine:
    connect_args: dict[str, Any] = {"connect_timeout": timeouts.connect_s}
    if timeouts.statement_s is not None:
        # A client-side bound for a server that stops answering; later than the server's
        # own limit, which ends the statement cleanly and keeps the connection.
        connect_args["read_timeout"] = timeouts.statement_s + 1.0
    engine = create_async_engine(
        url,
        connect_args=connect_args,
        # PostgreSQL's default, which the store's statements are written for: each
        # statement sees what others committed before it. Under InnoDB's default
        # (REPEATABLE READ) a transaction keeps the snapshot of its first read, so a
        # row that INSERT IGNORE skipped because another batch had just committed it
        # stays invisible to the same transaction's next SELECT.
        isolation_level="READ COMMITTED",
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeouts.connect_s,
        # Below the server's wait_timeout (8 hours by default, often minutes on hosting).
        pool_recycle=1800,
    )
    ping_idle_connections(engine)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The dialect has read the server's version by now (its own listener runs first),
        # so MariaDB and MySQL are told apart here.
        statements = mysql_session_settings(
            timeouts.statement_s, mariadb=bool(getattr(engine.dialect, "is_mariadb", False))
        )
        cursor = dbapi_connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        cursor.close()

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "handle_error", _check_violation_as_integrity_error)
    return engine


def create_store_engine(
    url: str, timeouts: StoreTimeouts | None = None, pool_size: int = 10
) -> AsyncEngine:
    """An async engine for ``url`` with connect and statement timeouts applied.

    Raises:
        ConfigurationError: ``url`` is no database URL this plugin supports.
        MissingExtraError: a MySQL/MariaDB URL without the "mysql" extra installed.
    """
    timeouts = timeouts or StoreTimeouts()
    async_url = async_database_url(url)
    require_driver(async_url)
    if async_url.get_backend_name() == "mysql":
        return _create_mysql_engine(async_url, timeouts, pool_size)
    if async_url.get_backend_name() == "sqlite":
        # sqlite3's timeout is how long a statement waits for a lock held by a writer.
        busy_timeout = timeouts.statement_s or 30.0
        # No pre-ping: a local file cannot drop the connection, and the ping costs a
        # round trip per checkout.
        engine = create_async_engine(async_url, connect_args={"timeout": busy_timeout})
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {
        "timeout": timeouts.connect_s,
        "server_settings": {"application_name": "rasa-personalize"},
    }
    if timeouts.statement_s is not None:
        connect_args["command_timeout"] = timeouts.statement_s
        connect_args["server_settings"]["statement_timeout"] = str(int(timeouts.statement_s * 1000))
    engine = create_async_engine(
        async_url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeouts.connect_s,
        pool_recycle=1800,
        # JSON documents (profiles, running totals) through orjson: a worker's refresh
        # reads and writes thousands of them, where the standard library's codec cost
        # more than the statements.
        json_serializer=json_text,
        json_deserializer=orjson.loads,
    )
    ping_idle_connections(engine)
    return engine


def json_text(value: Any) -> str:
    """``value`` as JSON text, as ``json.dumps`` gives it (keys that are not strings,
    such as numbers, become strings)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The factory each unit of work opens a session from (``async with factory.begin()``)."""
    return async_sessionmaker(engine, expire_on_commit=False)
