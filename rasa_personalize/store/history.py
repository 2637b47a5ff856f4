"""A customer's interaction history aggregated per (sku, kind, value), for fresh vectors.

The hot path asks for it only when it can change an answer: the customer did something
after the serving model's training data was read (``HistoryQuery.after``), or the model
does not know the customer at all (``after`` is None). The check runs inside the same
thread or greenlet hop as the rest of the customer read and usually costs nothing: the
recent interactions read for that request already show whether anything is newer. The
history itself is one bounded statement: the newest ``max_events`` counted interactions
(an index range on ``(customer_id, occurred_at)``), reduced to the ``limit`` most
recently touched products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import Select, bindparam, desc, func, select
from sqlalchemy.engine import Connection

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.store.models import Interaction, Product

DEFAULT_HISTORY_ITEMS: Final = 500
DEFAULT_HISTORY_EVENTS: Final = 5_000


@dataclass(frozen=True)
class HistoryQuery:
    """Which history to read for a customer, and when.

    Attributes:
        after: read only if the customer has a counted interaction newer than this
            (the model's training data cutoff); None reads it whenever there is one.
        kinds: the interaction kinds that carry a confidence weight; others ("shown")
            neither count as new nor enter the history.
        limit: at most this many products, the most recently touched ones.
        max_events: at most this many of the newest interactions are aggregated, so a
            customer with a huge history costs a bounded read.
    """

    after: datetime | None
    kinds: frozenset[str]
    limit: int = DEFAULT_HISTORY_ITEMS
    max_events: int = DEFAULT_HISTORY_EVENTS

    def __post_init__(self) -> None:
        if not self.kinds:
            raise InvalidInputError("a history query needs at least one interaction kind")
        if self.limit < 1 or self.max_events < 1:
            raise InvalidInputError(
                f"limit and max_events must be >= 1, got {self.limit} and {self.max_events}"
            )
        if self.after is not None and self.after.tzinfo is None:
            raise InvalidInputError("after must be an aware datetime (UTC)")

    def covers(self, other: HistoryQuery) -> bool:
        """Whether this query's answer also answers ``other``.

        It does with the same kinds and caps and a cutoff no later than ``other``'s: an
        empty answer means nothing is newer than the earlier cutoff either, and a full
        one is the same history (the model served meanwhile may have a later cutoff).
        """
        if (self.kinds, self.limit, self.max_events) != (
            other.kinds,
            other.limit,
            other.max_events,
        ):
            return False
        if self.after is None:
            return True
        return other.after is not None and self.after <= other.after


@dataclass(frozen=True)
class HistoryEntry:
    """``count`` interactions of one kind and value with one product; the newest at ``last_at``."""

    sku: str
    kind: str
    value: float | None
    count: int
    last_at: datetime


@dataclass(frozen=True)
class CustomerHistory:
    """The answer to a ``HistoryQuery``: entries newest first, empty when nothing was read.

    Empty means: no counted interaction newer than ``query.after`` (or none at all when
    ``after`` is None), so the customer's trained vector is still up to date.
    """

    query: HistoryQuery
    entries: tuple[HistoryEntry, ...] = ()

    @property
    def newest_at(self) -> datetime | None:
        """When the newest counted interaction in the history happened."""
        return self.entries[0].last_at if self.entries else None


@lru_cache(maxsize=1)
def _history_statements() -> tuple[Select[Any], Select[Any]]:
    """The existence check and the aggregate, built once (building costs more than running)."""
    interactions, products = Interaction.__table__, Product.__table__
    counted = (
        interactions.c.customer_id == bindparam("customer_id"),
        interactions.c.product_id.is_not(None),
        interactions.c.kind.in_(bindparam("kinds", expanding=True)),
    )
    newer = (
        select(interactions.c.id)
        .where(*counted, interactions.c.occurred_at > bindparam("after"))
        .limit(1)
    )
    events = (
        select(
            interactions.c.product_id,
            interactions.c.kind,
            interactions.c.value,
            interactions.c.occurred_at,
        )
        .where(*counted)
        .order_by(interactions.c.occurred_at.desc())
        .limit(bindparam("max_events"))
        .cte("newest_events")
    )
    newest_products = (
        select(events.c.product_id, func.max(events.c.occurred_at).label("touched_at"))
        .group_by(events.c.product_id)
        .order_by(desc("touched_at"), events.c.product_id.desc())
        .limit(bindparam("limit"))
        .subquery("newest_products")
    )
    kept = events.join(newest_products, newest_products.c.product_id == events.c.product_id).join(
        products, products.c.id == events.c.product_id
    )
    last_at = func.max(events.c.occurred_at).label("last_at")
    history = (
        select(products.c.sku, events.c.kind, events.c.value, func.count().label("events"), last_at)
        .select_from(kept)
        .group_by(products.c.sku, events.c.kind, events.c.value)
        .order_by(desc("last_at"), products.c.sku, events.c.kind)
    )
    return newer, history


def has_newer_interactions(
    connection: Connection,
    customer_id: int,
    query: HistoryQuery,
    recent: Sequence[tuple[str, datetime]] = (),
    *,
    recent_since: datetime | None = None,
    recent_complete: bool = False,
) -> bool:
    """Whether the customer has a counted interaction newer than ``query.after``.

    ``recent`` are (kind, occurred_at) of the customer's product interactions since
    ``recent_since`` that the caller already read, newest first; ``recent_complete``
    says the read was not cut by its limit. When they cover everything after
    ``query.after``, they answer without a statement.

    Raises:
        InvalidInputError: ``query.after`` is None (there is nothing to compare with).
    """
    after = query.after
    if after is None:
        raise InvalidInputError("has_newer_interactions needs a query with an `after` time")
    known = newer_in_recent(
        query, recent, recent_since=recent_since, recent_complete=recent_complete
    )
    if known is not None:
        return known
    newer, _ = _history_statements()
    parameters = {"customer_id": customer_id, "kinds": sorted(query.kinds), "after": after}
    return connection.execute(newer, parameters).first() is not None


def newer_in_recent(
    query: HistoryQuery,
    recent: Sequence[tuple[str, datetime]],
    *,
    recent_since: datetime | None,
    recent_complete: bool,
) -> bool | None:
    """:func:`has_newer_interactions` answered from ``recent`` alone, or None when the
    interactions read do not reach back to ``query.after`` (a statement must tell)."""
    after = query.after
    if after is None or recent_since is None or recent_since > after:
        return None
    if recent_complete or (recent and recent[-1][1] <= after):
        return any(kind in query.kinds and at > after for kind, at in recent)
    return None


def read_history_entries(
    connection: Connection, customer_id: int, query: HistoryQuery
) -> tuple[HistoryEntry, ...]:
    """The customer's counted interactions per (sku, kind, value), newest first (one read)."""
    _, history = _history_statements()
    rows = connection.execute(
        history,
        {
            "customer_id": customer_id,
            "kinds": sorted(query.kinds),
            "max_events": query.max_events,
            "limit": query.limit,
        },
    ).all()
    return tuple(
        HistoryEntry(
            sku=row.sku,
            kind=row.kind,
            value=None if row.value is None else float(row.value),
            count=int(row.events),
            last_at=row.last_at,
        )
        for row in rows
    )


def read_customer_history(
    connection: Connection,
    customer_id: int,
    query: HistoryQuery,
    recent: Sequence[tuple[str, datetime]] = (),
    *,
    recent_since: datetime | None = None,
    recent_complete: bool = False,
) -> CustomerHistory:
    """The history ``query`` asks for: read only when there is something new (see module).

    ``recent``, ``recent_since`` and ``recent_complete`` as in ``has_newer_interactions``.
    """
    if query.after is not None and not has_newer_interactions(
        connection,
        customer_id,
        query,
        recent,
        recent_since=recent_since,
        recent_complete=recent_complete,
    ):
        return CustomerHistory(query)
    return CustomerHistory(query, read_history_entries(connection, customer_id, query))
