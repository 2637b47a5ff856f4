"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py``)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import make_url

from rasa_personalize.segments.errors import TagRulesError
from rasa_personalize.segments.tag_rules import TagRules, load_tag_rules

T = TypeVar("T")


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated between samples (q in 1..99)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def summary(values: list[float]) -> dict[str, float]:
    """Median and p99 of latencies already in milliseconds."""
    return {"p50_ms": statistics.median(values), "p99_ms": percentile(values, 99)}


async def admin_connection(url: str, database: str | None = None) -> asyncpg.Connection:
    """A plain asyncpg connection to the server of ``url`` (a SQLAlchemy URL), to
    ``database``, else the one ``url`` names, else ``postgres``: for administration
    (creating and dropping databases, reading ``pg_stat_activity``). Close it."""
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database=database or parsed.database or "postgres",
    )


async def _admin(server_url: str, statement: str) -> None:
    connection = await admin_connection(server_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _scratch_name(url: str) -> tuple[str, str]:
    """A new database name on ``url``'s server, and the URL of that database."""
    name = f"personalize_bench_{uuid.uuid4().hex[:10]}"
    return name, make_url(url).set(database=name).render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[str]:
    """A new empty database on ``url``'s PostgreSQL server, dropped afterwards.

    Benchmarks write hundreds of thousands of rows, so they never touch the database the URL
    names; any other URL (SQLite) is yielded unchanged.
    """
    if make_url(url).get_backend_name() != "postgresql":
        yield url
        return
    name, scratch_url = _scratch_name(url)
    await _admin(url, f'CREATE DATABASE "{name}"')
    try:
        yield scratch_url
    finally:
        await _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_postgres(url: str) -> Iterator[str]:
    """:func:`scratch_database` for code without an event loop: a new empty database on
    ``url``'s PostgreSQL server, dropped afterwards."""
    name, scratch_url = _scratch_name(url)
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    try:
        yield scratch_url
    finally:
        asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_on_scratch(url: str | None, job: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(job(database_url))`` on a scratch database of ``url``'s server, or on a
    temporary SQLite file when ``url`` is None."""

    async def scoped(server_url: str) -> T:
        async with scratch_database(server_url) as database_url:
            return await job(database_url)

    if url is not None:
        return asyncio.run(scoped(url))
    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(scoped(f"sqlite:///{Path(directory) / 'bench.db'}"))


def add_database_url_option(parser: argparse.ArgumentParser) -> None:
    """``--database-url``: a PostgreSQL server for :func:`run_on_scratch`, or SQLite."""
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to measure on (a scratch database is created and dropped); "
        "default: a temporary SQLite file",
    )


def tag_rules_or_exit(path: str) -> TagRules:
    """The tag rules at ``path``; a missing or broken file ends the bench with its problems."""
    try:
        return load_tag_rules(path)
    except TagRulesError as error:
        raise SystemExit(f"error: {error}") from None
