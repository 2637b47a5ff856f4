"""Date functions compiled per dialect: the same numbers from every backend."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Dialect, column, func, select
from sqlalchemy.dialects import mssql, mysql, postgresql, sqlite
from sqlalchemy.dialects.mysql.mariadb import MariaDBDialect
from sqlalchemy.exc import CompileError
from sqlalchemy.sql.functions import FunctionElement

from rasa_personalize.store.functions import SECONDS_PER_DAY, EpochSeconds, UtcDay
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import add_customer, add_product

UTC = timezone.utc
# A fraction of a second, the first day after the epoch, the last second of a day.
TIMES = (
    datetime(2026, 6, 1, 12, 0, 30, 500_000, tzinfo=UTC),
    datetime(1970, 1, 2, 0, 0, tzinfo=UTC),
    datetime(2026, 5, 31, 23, 59, 59, tzinfo=UTC),
    # An aware time in another zone is stored as its UTC instant.
    datetime(2026, 6, 1, 1, 30, tzinfo=timezone(timedelta(hours=3))),
)


async def test_epoch_seconds_and_utc_days_of_stored_times(store: SqlStore) -> None:
    """Seconds and whole UTC days since 1970 of stored timestamps, on every backend."""
    async with store.sessions.begin() as session:
        customer = await add_customer(session, "clock")
        product = await add_product(session, "CLOCK-1", "clocks")
        session.add_all(
            Interaction(
                event_id=f"clock-{n}",
                customer_id=customer.id,
                product_id=product.id,
                kind="view",
                occurred_at=when,
            )
            for n, when in enumerate(TIMES)
        )
        await session.flush()
        rows = (
            await session.execute(
                select(EpochSeconds(Interaction.occurred_at), UtcDay(Interaction.occurred_at))
                .where(Interaction.customer_id == customer.id)
                .order_by(Interaction.event_id)
            )
        ).all()
        never = await session.scalar(
            select(EpochSeconds(func.max(Interaction.occurred_at))).where(
                Interaction.kind == "purchase"
            )
        )
    for (seconds, day), when in zip(rows, TIMES, strict=True):
        assert isinstance(seconds, float), when
        assert seconds == pytest.approx(when.timestamp(), abs=1e-3), when
        assert day == math.floor(when.timestamp() / SECONDS_PER_DAY), when
    # The time given at +03:00 falls on the previous UTC day.
    assert [day for _, day in rows] == [20605, 1, 20604, 20604]
    assert never is None


@pytest.mark.parametrize(
    ("dialect", "epoch", "day"),
    [
        # SQLite keeps ISO text: julianday() parses it.
        (sqlite.dialect(), "julianday(t)", "CAST(julianday(t) - 2440587.5 AS INTEGER)"),
        (
            postgresql.dialect(),
            "CAST(EXTRACT(EPOCH FROM t) AS DOUBLE PRECISION)",
            "CAST(FLOOR(EXTRACT(EPOCH FROM t) / 86400.0) AS BIGINT)",
        ),
        # MySQL, and MariaDB under either of its dialect names: UTC wall time in a DATETIME.
        (
            mysql.dialect(),
            "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', t) / 1e6",
            "TIMESTAMPDIFF(DAY, '1970-01-01 00:00:00', t)",
        ),
        (
            MariaDBDialect(),
            "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', t) / 1e6",
            "TIMESTAMPDIFF(DAY, '1970-01-01 00:00:00', t)",
        ),
    ],
)
def test_each_dialect_has_its_form(dialect: Dialect, epoch: str, day: str) -> None:
    """Every supported dialect compiles both functions to its own SQL."""
    t = column("t")
    assert epoch in str(EpochSeconds(t).compile(dialect=dialect))
    assert str(UtcDay(t).compile(dialect=dialect)) == day


@pytest.mark.parametrize("function", [EpochSeconds, UtcDay])
def test_a_dialect_without_a_form_is_refused_by_name(
    function: type[FunctionElement[float]] | type[FunctionElement[int]],
) -> None:
    """No silent call to a function the database lacks: compiling says which dialect."""
    with pytest.raises(CompileError, match="no form for the 'mssql' dialect"):
        function(column("t")).compile(dialect=mssql.dialect())
