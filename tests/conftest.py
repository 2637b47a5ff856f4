"""Shared fixtures: migrated stores on SQLite (always), PostgreSQL and MySQL/MariaDB (when
configured)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncmy
import asyncpg
import pytest
from sanic import Sanic
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from rasa_personalize.settings import Settings
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade_connection
from rasa_personalize.store.sql_store import SqlStore

# Several tests build rasa-sdk's app, which always names itself "rasa_sdk".
Sanic.test_mode = True

POSTGRES_URL_VARIABLE = "PERSONALIZE_TEST_POSTGRES_URL"
REDIS_URL_VARIABLE = "PERSONALIZE_TEST_REDIS_URL"
MYSQL_URL_VARIABLE = "PERSONALIZE_TEST_MYSQL_URL"
RABBITMQ_URL_VARIABLE = "PERSONALIZE_TEST_AMQP_URL"
TEST_SECRET = "test-secret-key-0123456789"


def _without_callers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("PERSONALIZE_") and not name.startswith("PERSONALIZE_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _isolated_session_environment() -> Iterator[None]:
    """The same for the whole session, so that module- and session-scoped fixtures (which
    are set up before any test's own fixtures, and start servers that inherit the
    environment) do not see the caller's settings either."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _without_callers_settings(monkeypatch)
        yield


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the caller's ``PERSONALIZE_*`` settings (a shell with
    PERSONALIZE_CONTACT_KEY or a real secret set must not change results); the
    ``PERSONALIZE_TEST_*`` service URLs stay. Fixtures and tests set what they need."""
    _without_callers_settings(monkeypatch)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    base = os.environ.get(POSTGRES_URL_VARIABLE)
    if not base:
        pytest.skip(f"{POSTGRES_URL_VARIABLE} is not set: PostgreSQL suites skipped")
    name = f"personalize_test_{uuid.uuid4().hex[:10]}"

    async def admin(statement: str) -> None:
        parsed = make_url(base)
        connection = await asyncpg.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 5432,
            user=parsed.username or "postgres",
            password=parsed.password,
            database=parsed.database or "postgres",
        )
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A fresh MySQL/MariaDB database for this test session, dropped at the end."""
    base = os.environ.get(MYSQL_URL_VARIABLE)
    if not base:
        pytest.skip(f"{MYSQL_URL_VARIABLE} is not set: MySQL/MariaDB suites skipped")
    name = f"personalize_test_{uuid.uuid4().hex[:10]}"

    async def admin(statement: str) -> None:
        parsed = make_url(base)
        connection = await asyncmy.connect(
            host=parsed.host or "127.0.0.1",
            port=parsed.port or 3306,
            user=parsed.username or "root",
            password=parsed.password or "",
        )
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(statement)
        finally:
            connection.close()

    asyncio.run(admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    yield make_url(base).set(database=name).render_as_string(hide_password=False)
    asyncio.run(admin(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture
def redis_url() -> str:
    """The test Redis (a database tests share: keys are made unique per test)."""
    url = os.environ.get(REDIS_URL_VARIABLE)
    if not url:
        pytest.skip(f"{REDIS_URL_VARIABLE} is not set: Redis suites skipped")
    return url


@pytest.fixture
def rabbitmq_url() -> str:
    """The test RabbitMQ (tests use queues of their own, named uniquely)."""
    url = os.environ.get(RABBITMQ_URL_VARIABLE)
    if not url:
        pytest.skip(f"{RABBITMQ_URL_VARIABLE} is not set: RabbitMQ suites skipped")
    return url


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL on each backend: a new SQLite file, or the session's PostgreSQL or
    MySQL/MariaDB database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue(
        "postgres_url" if request.param == "postgresql" else "mysql_url"
    )
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite database file (fast unit tests)."""
    return f"sqlite:///{tmp_path / 'store.db'}"


async def migrated_store(url: str) -> SqlStore:
    """A SqlStore on ``url`` with the schema at head (PostgreSQL, MySQL: emptied first)."""
    store = SqlStore(url, StoreTimeouts(connect_s=5.0, statement_s=None))
    async with store.engine.begin() as connection:
        # The session's database is shared by tests: start every test from empty.
        if connection.dialect.name == "postgresql":
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
        elif connection.dialect.name == "mysql":
            await drop_mysql_tables(connection)
        await upgrade_connection(connection)
    return store


async def drop_mysql_tables(connection: AsyncConnection) -> None:
    """Drop every table of the connection's MySQL database (it has no schema to drop)."""
    names = (
        await connection.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
        )
    ).scalars()
    tables = ", ".join(f"`{name}`" for name in names)
    if tables:
        # One statement for all: foreign keys between them would otherwise fix an order.
        await connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
        await connection.execute(text(f"DROP TABLE {tables}"))
        await connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A migrated, empty store on each backend."""
    sql_store = await migrated_store(database_url)
    yield sql_store
    await sql_store.dispose()


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[SqlStore]:
    """A migrated, empty SQLite store."""
    sql_store = await migrated_store(sqlite_url)
    yield sql_store
    await sql_store.dispose()


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Test settings: a fixed secret and short store timeouts.

    The action budget is long: on a loaded 2-core CI machine a first read (a new
    connection, the first build of the recommendation resources) can outlast one second,
    and the action would answer defaults where the test checks the profile. Tests of the
    budget itself set a short one.
    """
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "store_connect_timeout_s": 1.0,
        "store_statement_timeout_s": 1.0,
        "action_budget_s": 10.0,
        "store_retry_after_s": 0.0,
        # The built-in rules: tests of the demo rule file load it explicitly.
        "rules_path": Path("no-such-rules-file.yml"),
        "tags_path": Path("no-such-tags-file.yml"),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]
