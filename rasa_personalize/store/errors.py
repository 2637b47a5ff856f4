"""What the store's database layer raises, named here so no module outside ``store/``
needs SQLAlchemy to catch it.

``DatabaseError`` is any failure of the database driver or of SQLAlchemy (connection
refused, statement timeout, constraint violation). Its message may quote SQL
parameters, so log its class name only. :func:`is_outage` tells a store that cannot
answer anyone from a statement that failed on one request's data.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

DatabaseError = SQLAlchemyError

# Failures of the connection or the server, not of a statement's values: a connection
# refused or lost, a pool with no free connection, a statement timeout (PostgreSQL's
# canceling-statement error and MySQL's max_execution_time both arrive as operational).
_OUTAGES = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeoutError,
    asyncio.TimeoutError,
    TimeoutError,
    OSError,
)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the store is unavailable, rather than one request was bad.

    True for timeouts, connection and server failures: every request would fail the
    same way, so callers stop asking for a while. False for a data error, a constraint
    violation or a statement the database refused (``DataError``, ``IntegrityError``,
    ``ProgrammingError``): that request is answered without the store, and the next one
    asks again.
    """
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _OUTAGES)


__all__ = ["DatabaseError", "is_outage"]
