"""Which store errors are outages (open the breaker) and which are one request's fault."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import exc

from rasa_personalize.store.errors import is_outage


def _wrapped(kind: type[exc.DBAPIError], *, invalidated: bool = False) -> exc.DBAPIError:
    return kind("SELECT 1", {}, Exception("driver"), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        # connection refused or lost, statement timeout (PostgreSQL, MySQL)
        (_wrapped(exc.OperationalError), True),
        (_wrapped(exc.InterfaceError), True),
        # no free connection in the pool in time
        (exc.TimeoutError("pool"), True),
        (exc.DisconnectionError("gone"), True),
        (asyncio.TimeoutError(), True),
        (ConnectionRefusedError(), True),
        # a value the database refuses (NUL, too long), a duplicate, a bad statement
        (_wrapped(exc.DataError), False),
        (_wrapped(exc.IntegrityError), False),
        (_wrapped(exc.ProgrammingError), False),
        # ... unless the driver lost the connection on the way
        (_wrapped(exc.DataError, invalidated=True), True),
    ],
)
def test_is_outage(error: BaseException, outage: bool) -> None:
    """Only failures every request would meet count as an outage."""
    assert is_outage(error) is outage
