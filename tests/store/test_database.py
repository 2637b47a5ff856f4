"""store/database.py: URLs, drivers, timeouts and column types on every backend."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text

from rasa_personalize.errors import MissingExtraError
from rasa_personalize.store import database
from rasa_personalize.store.database import (
    StoreTimeouts,
    async_database_url,
    create_store_engine,
    describe_database,
    mysql_session_settings,
)
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.models import CustomerTag, Interaction, Product
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer, add_product


@pytest.mark.parametrize(
    "url",
    [
        "mysql://shop@db/orders",  # what users write
        "mysql+pymysql://shop@db/orders",  # copied from a synchronous tool's settings
        "mysql+aiomysql://shop@db/orders",  # another asyncio driver: ours is used instead
        "mysql+asyncmy://shop@db/orders",  # already ours
        "mariadb://shop@db/orders",  # SQLAlchemy's MariaDB-only spelling
        "mariadb+pymysql://shop@db/orders",
    ],
)
def test_mysql_urls_get_asyncmy_and_utf8mb4(url: str) -> None:
    """Every MySQL/MariaDB spelling runs on asyncmy with a 4-byte UTF-8 connection."""
    parsed = async_database_url(url)
    assert parsed.drivername == "mysql+asyncmy"
    assert parsed.query["charset"] == "utf8mb4"
    assert (parsed.host, parsed.database, parsed.username) == ("db", "orders", "shop")


def test_a_charset_in_the_url_is_kept() -> None:
    """A user's own charset wins over the default."""
    assert async_database_url("mysql://db/shop?charset=utf8").query["charset"] == "utf8"


@pytest.mark.parametrize(
    ("url", "described"),
    [
        # user and password never shown; default port filled in
        ("mysql://shop:s3cret@db/orders", "mysql://db:3306/orders"),
        # a MariaDB URL is described as the dialect it runs on
        ("mariadb://shop:s3cret@db:3307/orders", "mysql://db:3307/orders"),
    ],
)
def test_described_mysql_url_hides_credentials(url: str, described: str) -> None:
    """Logs and CLI output name the server and database only."""
    assert describe_database(url) == described
    assert "s3cret" not in describe_database(url)
    assert "shop@" not in describe_database(url)


def test_mysql_without_the_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """No asyncmy: one line naming the extra to install, not an ImportError."""
    # A None entry makes the module unimportable (and find_spec return None).
    monkeypatch.setitem(sys.modules, "asyncmy", None)
    with pytest.raises(MissingExtraError) as raised:
        create_store_engine("mysql://shop:s3cret@db/orders")
    message = str(raised.value)
    assert message == (
        "a MySQL/MariaDB store needs the 'mysql' extra: pip install 'rasa-personalize[mysql]'"
    )
    assert raised.value.extra == "mysql"


def test_mariadb_bounds_every_statement_and_mysql_its_reads() -> None:
    """MariaDB: max_statement_time in seconds; MySQL: SELECTs in ms plus lock waits."""
    mariadb = mysql_session_settings(1.5, mariadb=True)
    mysql = mysql_session_settings(1.5, mariadb=False)
    assert "SET max_statement_time = 1.500" in mariadb
    assert not any("max_execution_time" in statement for statement in mariadb)
    assert "SET max_execution_time = 1500" in mysql
    assert "SET innodb_lock_wait_timeout = 2" in mysql
    for settings in (mariadb, mysql):
        assert "SET time_zone = '+00:00'" in settings


def test_no_statement_limit_sets_none() -> None:
    """Migrations run without a statement limit: only the time zone and warnings are set."""
    settings = mysql_session_settings(None, mariadb=True)
    assert settings == ["SET time_zone = '+00:00'", "SET max_error_count = 0"]


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def server_url(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL or MySQL/MariaDB database (servers have statement limits)."""
    url: str = request.getfixturevalue(
        "postgres_url" if request.param == "postgresql" else "mysql_url"
    )
    return url


async def test_statement_limit_ends_a_long_statement(server_url: str) -> None:
    """A statement over the limit fails within it, and the pool goes on serving."""
    engine = create_store_engine(server_url, StoreTimeouts(connect_s=5.0, statement_s=0.2))
    sleep = "SELECT pg_sleep(5)" if server_url.startswith("postgresql") else "SELECT SLEEP(5)"
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseError):
            async with engine.connect() as connection:
                await connection.execute(text(sleep))
        assert time.monotonic() - started < 2.0
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize(("idle_before_ping_s", "first_use_fails"), [(0.0, False), (3600.0, True)])
async def test_a_connection_dropped_while_idle_is_replaced_once_it_waited_long_enough(
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    idle_before_ping_s: float,
    first_use_fails: bool,
) -> None:
    """Connections idle past the limit are tested before use and a dead one replaced;
    fresher ones are not tested, so a drop fails one use and the pool starts over."""
    monkeypatch.setattr(database, "PING_AFTER_IDLE_S", idle_before_ping_s)
    engine = create_store_engine(postgres_url, pool_size=1)
    admin = create_store_engine(postgres_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            backend = await connection.scalar(text("SELECT pg_backend_pid()"))
        async with admin.connect() as connection:
            await connection.execute(text(f"SELECT pg_terminate_backend({int(backend)})"))
        if first_use_fails:
            with pytest.raises(DatabaseError):
                async with engine.connect() as connection:
                    await connection.scalar(text("SELECT 1"))
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT pg_backend_pid()")) != backend
    finally:
        await engine.dispose()
        await admin.dispose()


@pytest.mark.mysql
async def test_mysql_sessions_run_in_utc(mysql_url: str) -> None:
    """NOW() on the server is UTC whatever the server's own zone."""
    engine = create_store_engine(mysql_url)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT @@session.time_zone")) == "+00:00"
            offset = await connection.scalar(
                text("SELECT TIMESTAMPDIFF(MINUTE, NOW(), UTC_TIMESTAMP())")
            )
        assert offset == 0
    finally:
        await engine.dispose()


async def test_times_keep_microseconds_and_come_back_in_utc(store: SqlStore) -> None:
    """Two events a microsecond apart stay ordered; a non-UTC input comes back as UTC."""
    berlin = timezone(timedelta(hours=2))
    first = datetime(2026, 6, 1, 14, 0, 0, 1, tzinfo=berlin)
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        session.add_all(
            [
                Interaction(event_id="b", customer_id=ana.id, kind="view", quantity=1,
                            occurred_at=first + timedelta(microseconds=1)),
                Interaction(event_id="a", customer_id=ana.id, kind="view", quantity=1,
                            occurred_at=first),
            ]
        )  # fmt: skip
    async with store.sessions() as session:
        rows = (
            await session.execute(
                select(Interaction.event_id, Interaction.occurred_at).order_by(
                    Interaction.occurred_at
                )
            )
        ).all()
    assert [event_id for event_id, _ in rows] == ["a", "b"]
    assert rows[0].occurred_at == datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=timezone.utc)
    assert rows[0].occurred_at.tzinfo == timezone.utc


async def test_floats_keep_double_precision(store: SqlStore) -> None:
    """A weight comes back as the same float (MySQL's FLOAT would round it)."""
    weight = 0.1 + 0.2
    async with store.sessions.begin() as session:
        ana = await add_customer(session, "ana")
        session.add(
            CustomerTag(customer_id=ana.id, tag="t", source="rule", weight=weight, updated_at=NOW)
        )
    async with store.sessions() as session:
        stored = await session.scalar(select(CustomerTag.weight))
    assert type(stored) is float
    assert stored == weight


async def test_skus_differ_by_case_and_keep_all_of_unicode(store: SqlStore) -> None:
    """ "SKU-1" and "sku-1" are two products (binary collation); 4-byte characters survive."""
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "running", title="Trail shoe \N{RUNNER}")
        await add_product(session, "sku-1", "running", title="Straße")
    async with store.sessions() as session:
        found = (
            await session.execute(select(Product.sku, Product.title).where(Product.sku == "sku-1"))
        ).all()
        titles = set((await session.scalars(select(Product.title))).all())
    assert found == [("sku-1", "Straße")]
    assert titles == {"Trail shoe \N{RUNNER}", "Straße"}
