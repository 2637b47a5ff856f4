"""Helpers shared by the benchmark scripts (run as ``python bench/<script>.py``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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


# What PostgreSQL's autovacuum daemon compares with its thresholds, per table of the
# current database.
_TABLE_ACTIVITY = """
SELECT s.relname, s.n_mod_since_analyze, s.n_dead_tup, s.n_ins_since_vacuum,
       greatest(c.reltuples, 0) AS tuples
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
"""
_AUTOVACUUM_SETTINGS = (
    "autovacuum_naptime",
    "autovacuum_analyze_threshold",
    "autovacuum_analyze_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_threshold",
    "autovacuum_vacuum_insert_scale_factor",
)


async def autovacuum_is_on(url: str) -> bool:
    """Whether the PostgreSQL server of ``url`` runs its autovacuum daemon."""
    connection = await admin_connection(url)
    try:
        return bool(await connection.fetchval("SELECT current_setting('autovacuum') = 'on'"))
    finally:
        await connection.close()


async def stand_in_for_autovacuum(
    url: str, stop: asyncio.Event, every_s: float | None = None
) -> dict[str, int]:
    """Until ``stop``: what PostgreSQL's autovacuum would do on ``url``'s database, for a
    server that runs without it (a CI configuration, not a production one).

    Every ``every_s`` (default: the server's ``autovacuum_naptime``) the tables past the
    server's own autovacuum thresholds get ``VACUUM`` and ``ANALYZE`` as the daemon would
    give them. Without statistics the planner keeps the plans it made while the tables
    were empty (a sequential scan of a table that has since grown a hundredfold, on
    every execution of a prepared statement), and updated rows leave dead versions
    behind: a bench on such a server measures that, not the product. Returns how many
    VACUUM and ANALYZE runs it made.
    """
    connection = await admin_connection(url)
    done = {"vacuum": 0, "analyze": 0}
    try:
        row = await connection.fetchrow(
            "SELECT " + ", ".join(f"current_setting('{name}')" for name in _AUTOVACUUM_SETTINGS)
        )
        naptime_text, *numbers = row.values()
        (analyze_base, analyze_scale, vacuum_base, vacuum_scale, insert_base, insert_scale) = (
            float(n) for n in numbers
        )
        naptime = every_s if every_s is not None else _seconds(naptime_text)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=naptime)
            if stop.is_set():
                break
            for name, modified, dead, inserted, tuples in await connection.fetch(_TABLE_ACTIVITY):
                vacuum = (
                    dead > vacuum_base + vacuum_scale * tuples
                    or inserted > insert_base + insert_scale * tuples
                )
                analyze = modified > analyze_base + analyze_scale * tuples
                if vacuum:
                    await connection.execute(f'VACUUM (ANALYZE {analyze}) "{name}"')
                    done["vacuum"] += 1
                elif analyze:
                    await connection.execute(f'ANALYZE "{name}"')
                if analyze:
                    done["analyze"] += 1
    finally:
        await connection.close()
    return done


def _seconds(setting: str) -> float:
    """A PostgreSQL time setting as ``current_setting`` prints it (``1min``, ``30s``)."""
    units = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
    number = setting.rstrip("abcdefghijklmnopqrstuvwxyz")
    return float(number) * units.get(setting[len(number) :] or "s", 1.0)
