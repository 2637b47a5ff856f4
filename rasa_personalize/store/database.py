"""Engine and session-factory set-up for SQLite (embedded) and PostgreSQL.

Users write plain ``sqlite:///`` and ``postgresql://`` URLs; the async driver is chosen here.
Nothing connects until the first statement, so a server starts while the store is down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from rasa_personalize.errors import ConfigurationError

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
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
            "(expected e.g. sqlite:///personalize.db or postgresql://host/db)"
        ) from None
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigurationError(
            f"PERSONALIZE_DATABASE_URL uses {parsed.drivername!r}: "
            "only sqlite and postgresql are supported"
        )
    return parsed.set(drivername=driver)


def describe_database(url: str) -> str:
    """A loggable description of a database URL: no password, no user name."""
    parsed = async_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:{parsed.database or ':memory:'}"
    return f"postgresql://{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database}"


@dataclass(frozen=True)
class StoreTimeouts:
    """Bounds on waiting for the store. ``statement_s`` None means no statement limit."""

    connect_s: float = 2.0
    statement_s: float | None = 1.0


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Connection set-up for SQLite: WAL, normal sync, foreign keys."""
    # WAL lets the action server read while a batch job writes; foreign keys are off by
    # default in SQLite and the schema relies on cascades.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_store_engine(
    url: str, timeouts: StoreTimeouts | None = None, pool_size: int = 10
) -> AsyncEngine:
    """An async engine for ``url`` with connect and statement timeouts applied."""
    timeouts = timeouts or StoreTimeouts()
    async_url = async_database_url(url)
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
    return create_async_engine(
        async_url,
        connect_args=connect_args,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=timeouts.connect_s,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The factory each unit of work opens a session from (``async with factory.begin()``)."""
    return async_sessionmaker(engine, expire_on_commit=False)
