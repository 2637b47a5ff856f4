"""Names for the store's unit-of-work objects, so code outside ``store/`` can type them.

Modules outside the store never import SQLAlchemy; they take a :data:`Session` (one unit
of work, opened and committed by the caller) or a :data:`SessionFactory` (to open their
own, as ``SqlStore.sessions`` is) and hand it to store functions.
"""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Session: TypeAlias = AsyncSession
"""One unit of work on the store; the caller owns its transaction."""

SessionFactory: TypeAlias = async_sessionmaker[AsyncSession]
"""What opens sessions: ``async with factory.begin() as session`` per unit of work."""

__all__ = ["Session", "SessionFactory"]
