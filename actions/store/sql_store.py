"""SqlStore: one engine and session factory per process, and the reads the hot path needs."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from actions.store.database import StoreTimeouts, create_store_engine, session_factory
from actions.store.records import CustomerSnapshot, StoreStats
from actions.store.repository import load_customer_snapshot, store_stats


class SqlStore:
    """The SQL store of one process. Creating it connects to nothing."""

    def __init__(
        self, database_url: str, timeouts: StoreTimeouts | None = None, pool_size: int = 10
    ) -> None:
        self.engine: AsyncEngine = create_store_engine(database_url, timeouts, pool_size)
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(self.engine)

    async def load_snapshot(self, customer_key: str) -> CustomerSnapshot | None:
        """The customer's snapshot, or None when the key is unknown."""
        async with self.sessions() as session:
            return await load_customer_snapshot(session, customer_key)

    async def stats(self) -> StoreStats:
        """Row counts of the main tables."""
        async with self.sessions() as session:
            return await store_stats(session)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
