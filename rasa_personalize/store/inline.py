"""Snapshot reads on the event loop's own thread, for a SQLite file in WAL mode.

Why: the snapshot is four indexed point reads that SQLite answers from the page cache in
about 30 microseconds of CPU, while handing them to a worker thread costs ten times that
(the hop, the futures and the GIL passing back and forth; figures in docs/benchmarks.md).

Why it never blocks the loop: the connection is read-only with a busy timeout of zero,
so it never waits for a lock. In WAL mode a reader does not wait for writers at all; the
rare moment when it would (a checkpoint resetting the log, recovery after a crash) raises
"database is locked" at once, and the caller takes the worker-thread path for that read.
Any other sqlite3 error does the same, so this path can only ever be faster, never wrong:
each read sees the latest committed data, as the threaded read does.

The statements are the store's own (``repository.snapshot_statements``), compiled once
for SQLite, and their values go through the same SQLAlchemy type processors.

Snapshots already read are kept (up to :data:`CACHE_SIZE`) for as long as SQLite's
``PRAGMA data_version`` stays the same: it changes whenever any other connection, in this
process or another, commits to the database, so a kept snapshot is never older than the
latest commit. Any write anywhere empties the cache; a quiet store answers from it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

from sqlalchemy import Dialect, Engine, Select, create_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from rasa_personalize.store.catalogue import (
    RECENT_READ,
    CustomerItems,
    customer_item_statements,
    customer_items_from_rows,
)
from rasa_personalize.store.database import SQLITE_CACHE_KIB
from rasa_personalize.store.history import (
    CustomerHistory,
    HistoryQuery,
    newer_in_recent,
    read_customer_history,
)
from rasa_personalize.store.models import UtcDateTime
from rasa_personalize.store.records import CustomerSnapshot
from rasa_personalize.store.repository import snapshot_from_rows, snapshot_statements
from rasa_personalize.tracing import STORE_READ_SPAN, store_read, traced

Processor = Callable[[Any], Any] | None
T = TypeVar("T")

# Snapshots kept between commits: about 2 kB each, so at most a few tens of MB.
CACHE_SIZE: Final = 10_000
_MISSING: Final = object()


class InlineReadUnavailableError(Exception):
    """This read could not be done inline (a lock, or any sqlite3 error): use the thread."""


class _Compiled:
    """One statement as SQLite text, its parameter order and its column converters."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._names = tuple(compiled.positiontup or ())
        # Literal values the statement carries itself (its LIMIT, say).
        self._defaults = {name: compiled.binds[name].value for name in self._names}
        # The converters SQLAlchemy applies to values bound (an aware datetime to SQLite's
        # text, say); None where a value goes as it is.
        self._binders: tuple[Processor, ...] = tuple(
            compiled.binds[name].type._cached_bind_processor(dialect) for name in self._names
        )
        self._binds_as_is = not any(self._binders)
        # The same converters SQLAlchemy applies (UTC datetimes, JSON documents).
        processors = [
            _utc_time_reader(column.type._cached_result_processor(dialect, None))
            if isinstance(column.type, UtcDateTime)
            else column.type._cached_result_processor(dialect, None)
            for column in statement.selected_columns
        ]
        # (column index, converter) of the columns that have one: most have none, and
        # looking at each column of each row cost more than the reads themselves.
        self._converted: tuple[tuple[int, Callable[[Any], Any]], ...] = tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        )

    def parameters(self, **values: Any) -> tuple[Any, ...]:
        found = tuple(values.get(name, self._defaults.get(name)) for name in self._names)
        if self._binds_as_is:
            return found
        return tuple(
            bind(value) if bind is not None and value is not None else value
            for bind, value in zip(self._binders, found, strict=True)
        )

    def convert(self, row: Sequence[Any]) -> tuple[Any, ...]:
        """One row with SQLAlchemy's converters applied (only to the columns that have one)."""
        converted = list(row)
        for index, process in self._converted:
            value = converted[index]
            if value is not None:
                converted[index] = process(value)
        return tuple(converted)

    def convert_all(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """:meth:`convert` of each row; rows of columns without converters stay as read."""
        if not self._converted:
            return [tuple(row) for row in rows]
        return [self.convert(row) for row in rows]


# How SQLAlchemy writes a datetime into SQLite: "2026-12-07 10:11:12.123456" (UTC).
_SQLITE_TIME_LENGTH: Final = 26


def _utc_time_reader(processor: Processor) -> Callable[[Any], Any]:
    """``UtcDateTime``'s converter, in one C call for the text SQLAlchemy writes.

    SQLAlchemy reads it with ``datetime.fromisoformat`` and then makes it aware; appending
    the zero offset gets the same aware UTC datetime at once (recent interactions and
    purchases hold one per row). Anything else goes through SQLAlchemy's own converter.
    """
    assert processor is not None  # UtcDateTime always converts
    parse = datetime.fromisoformat

    def read(value: Any) -> Any:
        if type(value) is str and len(value) == _SQLITE_TIME_LENGTH and value[10] == " ":
            try:
                return parse(value + "+00:00")
            except ValueError:
                pass  # not a time after all: SQLAlchemy's converter says what it is
        return processor(value)

    return read


class InlineSnapshotReader:
    """Reads customer snapshots synchronously from a SQLite file in WAL mode."""

    def __init__(
        self, connection: sqlite3.Connection, dialect: Dialect, path: str | None = None
    ) -> None:
        self._connection = connection
        # A second read-only connection, for readers written on SQLAlchemy Core.
        self._engine: Engine | None = (
            create_engine(
                "sqlite://", creator=lambda: _read_only_connection(path), poolclass=StaticPool
            )
            if path is not None
            else None
        )
        self._cache: dict[str, CustomerSnapshot | None] = {}
        self._data_version: int | None = None
        customer, aliased, tags, segment, consent = (
            _Compiled(statement, dialect) for statement in snapshot_statements()
        )
        self._customer, self._aliased, self._tags, self._segment = customer, aliased, tags, segment
        self._consent = consent
        self._purchased, self._recent, self._stored = (
            _Compiled(statement, dialect) for statement in customer_item_statements()
        )

    @classmethod
    def open(cls, database_url: str, dialect: Dialect) -> InlineSnapshotReader | None:
        """A reader for this database, or None if it is not a SQLite file in WAL mode.

        ``dialect`` is a SQLite dialect of SQLAlchemy (the threaded engine's).
        """
        url = make_url(database_url)
        path = url.database
        if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
            return None
        try:
            connection = _read_only_connection(path)
            mode = connection.execute("PRAGMA journal_mode").fetchone()
        except sqlite3.Error:
            return None  # not there yet, or not readable: the threaded path reports it
        if mode is None or str(mode[0]).lower() != "wal":
            # Outside WAL a reader can meet a writer's lock on every write: not worth it.
            connection.close()
            return None
        return cls(connection, dialect, path)

    @traced(
        STORE_READ_SPAN,
        {"personalize.store.path": "inline", "personalize.store.reader": "snapshot"},
    )
    def snapshot(self, key: str) -> CustomerSnapshot | None:
        """The customer's snapshot, or None when the key is unknown.

        Raises:
            InlineReadUnavailableError: SQLite could not answer at once (a lock or an
                error); read through the worker thread instead.
        """
        try:
            version = self._connection.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                # Someone committed since the cache was filled: none of it is sure now.
                self._cache.clear()
                self._data_version = version
            kept = self._cache.get(key, _MISSING)
            if kept is not _MISSING:
                return kept  # type: ignore[return-value]
            snapshot = self._read(key)
        except sqlite3.Error as error:
            raise InlineReadUnavailableError(type(error).__name__) from error
        # A commit between the version check and the read makes the next check see a new
        # version, which drops this entry with the rest: it can never outlive its data.
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = snapshot
        return snapshot

    def _read(self, key: str) -> CustomerSnapshot | None:
        execute = self._connection.execute
        # One read transaction for the three statements: they see the same commit.
        execute("BEGIN")
        try:
            row = execute(self._customer.sql, self._customer.parameters(key=key)).fetchone()
            if row is None:
                row = execute(self._aliased.sql, self._aliased.parameters(key=key)).fetchone()
                if row is None:
                    return None
            customer = self._customer.convert(row)
            customer_id = customer[0]
            tags = execute(self._tags.sql, self._tags.parameters(customer_id=customer_id))
            segment = execute(
                self._segment.sql, self._segment.parameters(customer_id=customer_id)
            ).fetchone()
            tag_rows = self._tags.convert_all(tags.fetchall())
            answers = execute(
                self._consent.sql, self._consent.parameters(key=key, customer_id=customer_id)
            ).fetchall()
            return snapshot_from_rows(
                customer,
                tag_rows,
                self._segment.convert(segment) if segment is not None else None,
                self._consent.convert_all(answers),
            )
        finally:
            execute("COMMIT")

    @traced(
        STORE_READ_SPAN,
        # The reader's name as the pool path reports it: one name per read in traces.
        {"personalize.store.path": "inline", "personalize.store.reader": "_read_customer_items"},
    )
    def items(
        self,
        customer_id: int,
        since: datetime,
        *,
        with_precomputed: bool,
        history: HistoryQuery | None,
    ) -> CustomerItems:
        """What ``catalogue.read_customer_items`` reads, from the same statements, without
        SQLAlchemy's execution layer (it cost four times SQLite's own work here).

        The aggregated history is read through the engine, and only when the recent
        interactions cannot tell that nothing is new (rarely: once per model and customer).

        Raises:
            InlineReadUnavailableError: SQLite could not answer at once; use the thread.
        """
        execute = self._connection.execute
        limit = RECENT_READ
        try:
            # One read transaction: the three statements see the same commit.
            execute("BEGIN")
            try:
                purchased, recent_read, stored_read = self._purchased, self._recent, self._stored
                purchases = purchased.convert_all(
                    execute(purchased.sql, purchased.parameters(customer_id=customer_id)).fetchall()
                )
                recent = recent_read.convert_all(
                    execute(
                        recent_read.sql,
                        recent_read.parameters(customer_id=customer_id, since=since, limit=limit),
                    ).fetchall()
                )
                stored_row = (
                    execute(
                        stored_read.sql, stored_read.parameters(customer_id=customer_id)
                    ).fetchone()
                    if with_precomputed
                    else None
                )
                stored = stored_read.convert(stored_row) if stored_row is not None else None
            finally:
                execute("COMMIT")
        except sqlite3.Error as error:
            raise InlineReadUnavailableError(type(error).__name__) from error
        found: CustomerHistory | None = None
        if history is not None:
            seen = [(row[1], row[3]) for row in recent]
            complete = len(recent) < limit
            if (
                newer_in_recent(history, seen, recent_since=since, recent_complete=complete)
                is False
            ):
                found = CustomerHistory(history)
            else:
                found = self.run(_history_reader(customer_id, history, seen, since, complete))
        return customer_items_from_rows(customer_id, purchases, recent, stored, found)

    @traced(STORE_READ_SPAN, store_read("inline"))
    def run(self, reader: Callable[..., T], *args: Any) -> T:
        """Run a synchronous reader (``reader(connection, *args)``) on this thread.

        For bounded reads only: a reader must not fetch an unbounded number of rows.

        Raises:
            InlineReadUnavailableError: SQLite could not answer at once; use the thread.
        """
        if self._engine is None:
            raise InlineReadUnavailableError("no engine")
        try:
            with self._engine.connect() as connection:
                return reader(connection, *args)
        except (sqlite3.Error, DBAPIError) as error:
            raise InlineReadUnavailableError(type(error).__name__) from error

    def close(self) -> None:
        """Close the connections."""
        self._connection.close()
        if self._engine is not None:
            self._engine.dispose()


def _history_reader(
    customer_id: int,
    query: HistoryQuery,
    recent: list[tuple[str, datetime]],
    since: datetime,
    complete: bool,
) -> Callable[[Connection], CustomerHistory]:
    def read_history(connection: Connection) -> CustomerHistory:
        return read_customer_history(
            connection, customer_id, query, recent, recent_since=since, recent_complete=complete
        )

    return read_history


def _read_only_connection(path: str | None) -> sqlite3.Connection:
    """A connection that never writes and never waits for a lock."""
    connection = sqlite3.connect(
        f"file:{path}?mode=ro",
        uri=True,
        timeout=0,
        isolation_level=None,  # transactions are begun and ended by the reader
        check_same_thread=False,
    )
    connection.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    return connection
