"""SqlStore: one engine and session factory per process, and the reads the hot path needs."""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from rasa_personalize.store.catalogue import (
    ChatWrite,
    CustomerItems,
    read_customer_items,
    read_popularity_rows,
    read_products,
    store_chat_batch,
)
from rasa_personalize.store.database import (
    StoreTimeouts,
    async_database_url,
    create_store_engine,
    session_factory,
    sqlite_pragmas,
)
from rasa_personalize.store.experiments import read_arm_counts, read_exposed_arm
from rasa_personalize.store.history import CustomerHistory, HistoryQuery, read_customer_history
from rasa_personalize.store.inline import InlineReadUnavailableError, InlineSnapshotReader
from rasa_personalize.store.records import CustomerSnapshot, ProductRecord, StoreStats
from rasa_personalize.store.repository import read_customer_snapshot, store_stats
from rasa_personalize.tracing import STORE_READ_SPAN, store_read, traced

T = TypeVar("T")


class NotInline(enum.Enum):
    """The type of :data:`NOT_INLINE`."""

    MARKER = "not inline"


NOT_INLINE: Final = NotInline.MARKER
"""What :meth:`SqlStore.inline_snapshot` returns when the read must take the thread."""


def _read_customer_context(
    connection: Connection,
    customer_key: str,
    since: datetime,
    with_precomputed: bool,
    history: HistoryQuery | None = None,
) -> tuple[CustomerSnapshot | None, CustomerItems | None]:
    snapshot = read_customer_snapshot(connection, customer_key)
    if snapshot is None:
        return None, None
    items = read_customer_items(
        connection, snapshot.customer_id, since, with_precomputed=with_precomputed, history=history
    )
    return snapshot, items


def _read_customer_items(
    connection: Connection,
    customer_id: int,
    since: datetime,
    with_precomputed: bool,
    history: HistoryQuery | None = None,
) -> CustomerItems:
    return read_customer_items(
        connection, customer_id, since, with_precomputed=with_precomputed, history=history
    )


def _json_document(text: str) -> Any:
    """A stored JSON document (profile metrics, precomputed lists) as Python values.

    orjson reads them three times faster than ``json``; a document it refuses (``NaN``,
    integers past 64 bits, which ``json`` writes and reads) is read by ``json`` as before.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _select_one(connection: Connection) -> None:
    connection.execute(text("SELECT 1"))


def _read_recommendation_inputs(
    connection: Connection,
) -> tuple[list[ProductRecord], list[tuple[str, str | None, str, int]]]:
    return read_products(connection), read_popularity_rows(connection)


class SqlStore:
    """The SQL store of one process. Creating it connects to nothing.

    On SQLite the hot-path reads run on a plain sqlite3 engine inside one worker thread:
    aiosqlite hops to its thread for every cursor call, which measured about eight times
    slower per snapshot. A SQLite file in WAL mode is read inline instead, on the event
    loop's thread with a connection that never waits for a lock (see
    ``rasa_personalize.store.inline``); the thread answers when it cannot. PostgreSQL
    reads go through asyncpg.
    """

    def __init__(
        self, database_url: str, timeouts: StoreTimeouts | None = None, pool_size: int = 10
    ) -> None:
        self.engine: AsyncEngine = create_store_engine(database_url, timeouts, pool_size)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)
        self._thread_engine: Engine | None = None
        self._database_url = database_url
        # None: not tried yet (the file may not exist before the first migration).
        self._inline: InlineSnapshotReader | None = None
        self._inline_tried = False
        url = async_database_url(database_url)
        if url.get_backend_name() == "sqlite":
            busy_timeout = (timeouts or StoreTimeouts()).statement_s or 30.0
            self._thread_engine = create_engine(
                url.set(drivername="sqlite"),
                connect_args={"timeout": busy_timeout, "check_same_thread": False},
                pool_size=pool_size,
                json_deserializer=_json_document,
            )
            event.listen(self._thread_engine, "connect", sqlite_pragmas)

    async def load_snapshot(self, customer_key: str) -> CustomerSnapshot | None:
        """The customer's snapshot, or None when the key is unknown."""
        inline = self.inline_snapshot(customer_key)
        if inline is not NOT_INLINE:
            return inline
        return await self._read(read_customer_snapshot, customer_key)

    def inline_snapshot(
        self, customer_key: str
    ) -> CustomerSnapshot | Literal[NotInline.MARKER] | None:
        """The snapshot read without leaving the loop's thread, or :data:`NOT_INLINE`.

        :data:`NOT_INLINE` when this store has no inline reader (not a SQLite file in WAL
        mode) or SQLite could not answer at once; then :meth:`load_snapshot` reads it.
        """
        reader = self._inline_reader()
        if reader is None:
            return NOT_INLINE
        try:
            return reader.snapshot(customer_key)
        except InlineReadUnavailableError:
            return NOT_INLINE

    def inline_items(
        self,
        customer_id: int,
        since: datetime,
        *,
        with_precomputed: bool = True,
        history: HistoryQuery | None = None,
    ) -> CustomerItems | Literal[NotInline.MARKER]:
        """:meth:`load_customer_items` without leaving the loop's thread, or
        :data:`NOT_INLINE` (as :meth:`inline_snapshot`): no coroutine, no task, no hop."""
        reader = self._inline_reader()
        if reader is None:
            return NOT_INLINE
        try:
            return reader.items(
                customer_id, since, with_precomputed=with_precomputed, history=history
            )
        except InlineReadUnavailableError:
            return NOT_INLINE

    def _inline_reader(self) -> InlineSnapshotReader | None:
        if not self._inline_tried and self._thread_engine is not None:
            self._inline_tried = True
            self._inline = InlineSnapshotReader.open(
                self._database_url, self._thread_engine.dialect
            )
        return self._inline

    async def load_customer_context(
        self,
        customer_key: str,
        since: datetime,
        *,
        with_precomputed: bool = True,
        history: HistoryQuery | None = None,
    ) -> tuple[CustomerSnapshot | None, CustomerItems | None]:
        """Snapshot and items of one customer, in one thread hop or greenlet hop.

        ``history``: also the aggregated history when it has something new (see
        ``rasa_personalize.store.history``), in the same hop.
        """
        return await self._read(
            _read_customer_context, customer_key, since, with_precomputed, history
        )

    async def load_customer_items(
        self,
        customer_id: int,
        since: datetime,
        *,
        with_precomputed: bool = True,
        history: HistoryQuery | None = None,
    ) -> CustomerItems:
        """A known customer's items alone (the snapshot came from the profile cache, or was
        read inline: then the items are too, when SQLite answers at once)."""
        reader = self._inline_reader()
        if reader is not None:
            try:
                return reader.items(
                    customer_id, since, with_precomputed=with_precomputed, history=history
                )
            except InlineReadUnavailableError:
                pass  # the thread answers
        return await self._read(_read_customer_items, customer_id, since, with_precomputed, history)

    async def store_chat_batch(
        self, writes: Sequence[ChatWrite], default_granted: bool
    ) -> list[set[str]]:
        """Store chat-side writes in one transaction (see ``catalogue.store_chat_batch``):
        one thread hop for the whole batch on SQLite, one greenlet hop elsewhere."""
        if self._thread_engine is not None:
            return await asyncio.to_thread(self._write_in_thread, writes, default_granted)
        async with self.engine.begin() as connection:
            return await connection.run_sync(store_chat_batch, writes, default_granted)

    def _write_in_thread(
        self, writes: Sequence[ChatWrite], default_granted: bool
    ) -> list[set[str]]:
        assert self._thread_engine is not None
        with self._thread_engine.begin() as connection:
            return store_chat_batch(connection, writes, default_granted)

    async def load_customer_history(self, customer_id: int, query: HistoryQuery) -> CustomerHistory:
        """One customer's aggregated history on its own (when the items came without it)."""
        return await self._read(read_customer_history, customer_id, query)

    async def read_recommendation_inputs(
        self,
    ) -> tuple[list[ProductRecord], list[tuple[str, str | None, str, int]]]:
        """The catalogue and popularity counts, for building recommendation resources."""
        return await self._read(_read_recommendation_inputs)

    async def read_products(self) -> list[ProductRecord]:
        """The catalogue alone (popularity counts stored with a content model instead)."""
        return await self._read(read_products)

    async def exposed_arm(self, experiment: str, customer_key: str) -> str | None:
        """The arm stored with the customer's exposure to ``experiment``, if any (a
        primary-key read: inline on a SQLite file when it answers at once)."""
        reader = self._inline_reader()
        if reader is not None:
            try:
                return reader.run(read_exposed_arm, experiment, customer_key)
            except InlineReadUnavailableError:
                pass  # the thread answers
        return await self._read(read_exposed_arm, experiment, customer_key)

    async def arm_counts(
        self, experiment: str, goal: str, window: timedelta, until: datetime
    ) -> dict[str, tuple[int, int]]:
        """Arm -> (exposures, conversions) before ``until`` (``experiments.read_arm_counts``)."""
        return await self._read(read_arm_counts, experiment, goal, window, until)

    async def ping(self, timeout_s: float = 1.0) -> None:
        """Run ``SELECT 1`` (readiness probes): returns once the database has answered.

        Raises:
            TimeoutError: no answer within ``timeout_s`` (a SQLite thread may still be
                waiting on a lock after this returns; it ends at its busy timeout).
            DatabaseError: the database refused the connection or the statement.
        """
        await asyncio.wait_for(self._read(_select_one), timeout=timeout_s)

    @traced(STORE_READ_SPAN, store_read("pool"))
    async def _read(self, reader: Callable[..., T], *args: Any) -> T:
        if self._thread_engine is not None:
            return await asyncio.to_thread(self._read_in_thread_with, reader, *args)
        async with self.engine.connect() as connection:
            return await connection.run_sync(reader, *args)

    def _read_in_thread_with(self, reader: Callable[..., T], *args: Any) -> T:
        assert self._thread_engine is not None
        with self._thread_engine.connect() as connection:
            return reader(connection, *args)

    async def stats(self) -> StoreStats:
        """Row counts of the main tables."""
        async with self.sessions() as session:
            return await store_stats(session)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._thread_engine is not None:
            self._thread_engine.dispose()
