"""Purchase propensity in SQL: history as of a moment, labels, truth, and stored scores.

:mod:`rasa_personalize.propensity.features` turns these aggregates into features; here
are only the statements. Every aggregate takes the interactions *before* ``as_of`` and
nothing after, which is what keeps the label out of the features of a time split:

- :func:`activity_vocabulary`: the most common channels and devices, so that their shares
  get a column each;
- :func:`read_customer_history`: one float64 row per customer created by ``as_of``,
  with the :data:`HISTORY_COLUMNS` (counts, spend, first and last times, hours of day,
  channel and device counts), streamed in partitions;
- :func:`stream_category_weights`: per customer and category, affinity weight and
  discounted purchases;
- :func:`purchasers_between`: the customers who bought in a window (the label);
- :func:`read_true_probabilities`: the demo generator's truth, where the store has it;
- :func:`write_propensity_scores`: one row per customer and target in
  ``propensity_scores``, and the same score in the profile's ``metrics`` document, which
  is what the hot path reads (no extra query per conversation);
- :func:`read_propensity_scores`: a customer's rows, for the data export.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    literal_column,
    select,
)
from sqlalchemy import update as update_statement

from rasa_personalize.store.dialect import DOUBLE, count_where, dialect_of, member_of, upsert
from rasa_personalize.store.functions import EpochSeconds, UtcDay, UtcHour
from rasa_personalize.store.models import (
    ASSISTANT_KINDS,
    Customer,
    CustomerProfile,
    Interaction,
    Product,
    PropensityScore,
)
from rasa_personalize.store.records import PropensityRecord
from rasa_personalize.store.totals import CATEGORY_AFFINITY_WEIGHTS, DISCOUNT_THRESHOLD
from rasa_personalize.store.types import Session

# Rows per streamed partition: big enough to amortize a fetch, small enough to stay flat.
STREAM_BATCH: Final = 20_000
# Rows per write statement group; ids per IN list (SQLite and asyncpg cap parameters).
WRITE_BATCH: Final = 2_000
# Windows of "recent" activity before ``as_of``.
RECENT_VIEWS: Final = timedelta(days=14)
RECENT_PURCHASES: Final = timedelta(days=30)
# The parts of a UTC day, as the slot ``time_of_day`` cuts a local one (hours).
DAY_PARTS: Final = (("morning", 5, 12), ("afternoon", 12, 17), ("evening", 17, 22))
NIGHT: Final = "night"  # 22 to 5: what the other parts leave
LOYALTY_ORDINAL: Final[Mapping[str, int]] = {"none": 0, "silver": 1, "gold": 2, "platinum": 3}

# The leading columns of each row of :func:`read_customer_history`, in order; the
# channel counts and then the device counts of the vocabulary follow them.
HISTORY_COLUMNS: Final = (
    "customer_id",
    "created_at",  # epoch seconds
    "loyalty_tier",  # LOYALTY_ORDINAL, 0 for unknown tiers
    "interactions",  # customer activity of any kind (the assistant's own events excluded)
    "purchases",
    "spent",  # price paid x quantity over purchases
    "last_purchase",  # epoch seconds, -1 when none
    "first_seen",  # epoch seconds, -1 when none
    "last_seen",  # epoch seconds, -1 when none
    "sessions",  # distinct UTC days with activity
    "views",
    "carts",
    "recent_views",  # views in RECENT_VIEWS before as_of
    "recent_carts",  # carts in RECENT_VIEWS before as_of
    "recent_purchases",  # purchases in RECENT_PURCHASES before as_of
    "with_channel",  # interactions that name a channel
    "with_device",  # interactions that name a device
    *(f"hour_{name}" for name, _, _ in DAY_PARTS),
    f"hour_{NIGHT}",
)


@dataclass(frozen=True)
class ActivityVocabulary:
    """The channels and devices that get a share column each, most common first."""

    channels: tuple[str, ...]
    devices: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class CategoryWeights:
    """One partition of per (customer, category) sums; arrays of equal length.

    Attributes:
        customer_ids: the customer of each row.
        categories: the product category of each row.
        weight: affinity weight (``CATEGORY_AFFINITY_WEIGHTS`` per kind).
        discounted: purchases paid below ``DISCOUNT_THRESHOLD`` x list price.
    """

    customer_ids: NDArray[np.int64]
    categories: tuple[str, ...]
    weight: NDArray[np.float64]
    discounted: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass(frozen=True, eq=False)
class TrueProbabilities:
    """The demo generator's probability of a purchase in its last week, per customer."""

    customer_ids: NDArray[np.int64]
    probabilities: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass(frozen=True)
class StoredScore:
    """One ``propensity_scores`` row of a customer."""

    target: str
    score: float
    model_version: str
    scored_at: datetime


def _before(as_of: datetime) -> ColumnElement[bool]:
    return (Interaction.occurred_at < as_of) & Interaction.kind.not_in(ASSISTANT_KINDS)


def _customer_group() -> ColumnElement[int]:
    """The customer id as a grouping key that no index serves.

    Grouped by the bare column, SQLite walks the (customer_id, occurred_at) index to get
    the groups in order and fetches every row by its rowid: random reads all over a table
    stored in time order (13 s for 2.5M rows). ``+ 0`` makes it read the rows in storage
    order and group them in a temporary b-tree instead (2 s); PostgreSQL and MySQL plan a
    hash or temporary-table aggregate either way.
    """
    # A literal, not a bound parameter: PostgreSQL must see the same expression in the
    # SELECT list and in GROUP BY.
    return Interaction.customer_id + literal_column("0")


async def activity_vocabulary(session: Session, as_of: datetime, limit: int) -> ActivityVocabulary:
    """The ``limit`` most common channels and devices of the interactions before ``as_of``."""

    async def top(column: Any) -> tuple[str, ...]:
        rows = await session.execute(
            select(column, func.count())
            .where(_before(as_of), column.is_not(None))
            .group_by(column)
            .order_by(func.count().desc(), column)
            .limit(limit)
        )
        return tuple(str(value) for value, _ in rows.all())

    return ActivityVocabulary(await top(Interaction.channel), await top(Interaction.device))


def history_width(vocabulary: ActivityVocabulary) -> int:
    """The number of columns of a :func:`read_customer_history` row."""
    return len(HISTORY_COLUMNS) + len(vocabulary.channels) + len(vocabulary.devices)


async def read_customer_history(
    session: Session,
    as_of: datetime,
    vocabulary: ActivityVocabulary,
    on_rows: Callable[[int], None] | None = None,
) -> NDArray[np.float64]:
    """Per customer created by ``as_of``, their history before it: one float64 row with
    the :data:`HISTORY_COLUMNS`, then a count per vocabulary channel and device, in
    ascending customer id order. Customers without history get zeros (-1 for the times).

    Two streamed statements, put together here rather than by a join: the customers, and
    the interaction aggregates grouped by customer (a join of a grouped subquery is
    planned as a nested loop by SQLite). ``on_rows`` is told how many aggregate rows came
    in, per partition.
    """
    connection = await session.connection()
    head: list[tuple[Any, ...]] = []
    customers = await connection.stream(
        select(
            Customer.id,
            EpochSeconds(Customer.created_at),
            case(*((Customer.loyalty_tier == t, v) for t, v in LOYALTY_ORDINAL.items()), else_=0),
        )
        .where(Customer.created_at <= as_of)
        .order_by(Customer.id)
    )
    async for partition in customers.partitions(STREAM_BATCH):
        head.extend(tuple(row) for row in partition)
    ids = np.array([row[0] for row in head], dtype=np.int64)
    history = np.zeros((len(ids), history_width(vocabulary)), dtype=np.float64)
    if len(ids):
        history[:, :3] = np.array(head, dtype=np.float64)
    for name in _TIMES:
        history[:, HISTORY_COLUMNS.index(name)] = -1.0
    totals = await connection.stream(_totals_statement(as_of, vocabulary))
    async for partition in totals.partitions(STREAM_BATCH):
        # None (no purchase yet) becomes NaN, then -1 like a customer without history.
        block = np.array([tuple(row) for row in partition], dtype=np.float64)
        block = np.where(np.isnan(block), -1.0, block)
        found = block[:, 0].astype(np.int64)
        rows = np.searchsorted(ids, found)
        # A customer created after as_of with older events is not a training customer.
        keep = (rows < len(ids)) & (ids[np.minimum(rows, max(len(ids) - 1, 0))] == found)
        history[rows[keep], 3:] = block[keep, 1:]
        if on_rows is not None:
            on_rows(len(block))
    return history


# The time columns, -1 when there is no such moment.
_TIMES: Final = ("last_purchase", "first_seen", "last_seen")


def _totals_statement(as_of: datetime, vocabulary: ActivityVocabulary) -> Select[Any]:
    """Per customer with interactions before ``as_of``: their id, then the
    :data:`HISTORY_COLUMNS` from ``interactions`` on, then the vocabulary counts."""
    i = Interaction
    is_purchase = i.kind == "purchase"
    recent_views = i.occurred_at >= as_of - RECENT_VIEWS
    hour = UtcHour(i.occurred_at)
    # BETWEEN evaluates the hour once per row where two comparisons would twice.
    hours = [
        count_where(hour.between(start, end - 1)).label(f"hour_{name}")
        for name, start, end in DAY_PARTS
    ]
    hours.append(
        count_where(~hour.between(DAY_PARTS[0][1], DAY_PARTS[-1][2] - 1)).label(f"hour_{NIGHT}")
    )
    channels = [
        count_where(i.channel == value).label(f"channel_{n}")
        for n, value in enumerate(vocabulary.channels)
    ]
    devices = [
        count_where(i.device == value).label(f"device_{n}")
        for n, value in enumerate(vocabulary.devices)
    ]
    columns: list[Any] = [
        _customer_group().label("customer_id"),
        func.count().label("interactions"),
        count_where(is_purchase).label("purchases"),
        cast(func.sum(case((is_purchase, i.price * i.quantity), else_=0)), DOUBLE).label("spent"),
        EpochSeconds(func.max(case((is_purchase, i.occurred_at)))).label("last_purchase"),
        EpochSeconds(func.min(i.occurred_at)).label("first_seen"),
        EpochSeconds(func.max(i.occurred_at)).label("last_seen"),
        func.count(UtcDay(i.occurred_at).distinct()).label("sessions"),
        count_where(i.kind == "view").label("views"),
        count_where(i.kind == "cart").label("carts"),
        count_where((i.kind == "view") & recent_views).label("recent_views"),
        count_where((i.kind == "cart") & recent_views).label("recent_carts"),
        count_where(is_purchase & (i.occurred_at >= as_of - RECENT_PURCHASES)).label(
            "recent_purchases"
        ),
        func.count(i.channel).label("with_channel"),
        func.count(i.device).label("with_device"),
        *hours,
        *channels,
        *devices,
    ]
    return select(*columns).where(_before(as_of)).group_by(_customer_group())


async def stream_category_weights(
    session: Session, as_of: datetime
) -> AsyncIterator[CategoryWeights]:
    """Per (customer, category), the affinity weight and discounted purchases of the
    interactions with a product before ``as_of``, in partitions."""
    i = Interaction
    weight = case(
        *((i.kind == kind, literal(w)) for kind, w in CATEGORY_AFFINITY_WEIGHTS.items()),
        else_=literal(0.0),
    )
    discounted = (i.kind == "purchase") & (i.price < Product.price * DISCOUNT_THRESHOLD)
    statement = (
        select(
            _customer_group(),
            Product.category,
            cast(func.sum(weight), DOUBLE),
            count_where(discounted),
        )
        .join(Product, Product.id == i.product_id)
        .where(_before(as_of))
        .group_by(_customer_group(), Product.category)
    )
    connection = await session.connection()
    result = await connection.stream(statement)
    async for partition in result.partitions(STREAM_BATCH):
        if not partition:
            continue
        customer_ids, categories, weights, discounts = zip(*partition, strict=True)
        yield CategoryWeights(
            customer_ids=np.array(customer_ids, dtype=np.int64),
            categories=tuple(str(category) for category in categories),
            weight=np.array(weights, dtype=np.float64),
            discounted=np.array(discounts, dtype=np.float64),
        )


async def count_interactions_before(session: Session, as_of: datetime) -> int:
    """Customer interactions before ``as_of``."""
    return int(
        await session.scalar(select(func.count()).select_from(Interaction).where(_before(as_of)))
        or 0
    )


async def purchasers_between(session: Session, start: datetime, end: datetime) -> NDArray[np.int64]:
    """Ids of the customers with a purchase at or after ``start`` and before ``end``, sorted."""
    rows = await session.scalars(
        select(Interaction.customer_id)
        .where(
            Interaction.kind == "purchase",
            Interaction.occurred_at >= start,
            Interaction.occurred_at < end,
        )
        .distinct()
    )
    return np.array(sorted(int(i) for i in rows.all()), dtype=np.int64)


async def read_true_probabilities(session: Session) -> TrueProbabilities:
    """Every customer with a known true purchase probability (demo data only)."""
    rows = await session.execute(
        select(Customer.id, Customer.synthetic_purchase_probability).where(
            Customer.synthetic_purchase_probability.is_not(None)
        )
    )
    pairs = [(int(customer_id), float(p)) for customer_id, p in rows.all() if p is not None]
    return TrueProbabilities(
        np.array([customer_id for customer_id, _ in pairs], dtype=np.int64),
        np.array([p for _, p in pairs], dtype=np.float64),
    )


# Looked up as a Table, which is what Core insert() and update() are typed for.
_PROFILES: Final = CustomerProfile.metadata.tables[CustomerProfile.__tablename__]
_SCORE_KEY: Final = ("customer_id", "target")
_SCORE_REFRESHED: Final = ("score", "model_version", "scored_at")


async def write_propensity_scores(
    session: Session,
    *,
    target: str,
    model_version: str,
    customer_ids: Sequence[int],
    scores: Sequence[float],
    bands: Sequence[str],
    scored_at: datetime,
    on_written: Callable[[int], None] | None = None,
) -> int:
    """Store each customer's score for ``target``: upsert its ``propensity_scores`` row and
    put it into the profile's ``metrics`` document (a profile is created for a customer
    without one). A profile whose document changes gets a new version, which outdates
    cached copies of it.

    Args:
        customer_ids, scores, bands: one entry per customer, in the same order.
        on_written: called with the number of customers written so far, per batch.

    Returns:
        customers written.

    Raises:
        ValueError: the sequences differ in length, or a score is outside 0 to 1.
    """
    total = len(customer_ids)
    if len(scores) != total or len(bands) != total:
        raise ValueError(
            f"propensity scores: {total} customer ids, {len(scores)} scores and "
            f"{len(bands)} bands; expected one of each per customer"
        )
    if any(not 0.0 <= score <= 1.0 for score in scores):
        raise ValueError("propensity scores must lie between 0 and 1")
    dialect = dialect_of(session)
    statement = upsert(dialect, PropensityScore, _SCORE_KEY, _SCORE_REFRESHED)
    for start in range(0, total, WRITE_BATCH):
        end = min(total, start + WRITE_BATCH)
        ids = [int(customer_id) for customer_id in customer_ids[start:end]]
        await session.execute(
            statement,
            [
                {
                    "customer_id": customer_id,
                    "target": target,
                    "score": float(score),
                    "model_version": model_version,
                    "scored_at": scored_at,
                }
                for customer_id, score in zip(ids, scores[start:end], strict=True)
            ],
        )
        entries = {
            customer_id: PropensityRecord(float(score), band, model_version, scored_at).to_entry()
            for customer_id, score, band in zip(
                ids, scores[start:end], bands[start:end], strict=True
            )
        }
        await _merge_into_metrics(session, target, entries, scored_at, dialect)
        if on_written is not None:
            on_written(end)
    return total


async def _merge_into_metrics(
    session: Session,
    target: str,
    entries: Mapping[int, dict[str, Any]],
    now: datetime,
    dialect: str,
) -> None:
    """Put each entry under ``metrics.propensity.<target>`` of its customer's profile."""
    existing: dict[int, Any] = dict(
        (
            await session.execute(
                select(_PROFILES.c.customer_id, _PROFILES.c.metrics).where(
                    member_of(_PROFILES.c.customer_id, list(entries), dialect)
                )
            )
        ).all()
    )
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for customer_id, entry in entries.items():
        if customer_id not in existing:
            metrics = {"propensity": {target: entry}}
            inserts.append(
                {
                    "customer_id": customer_id,
                    "attributes": {},
                    "metrics": metrics,
                    "version": 1,
                    "updated_at": now,
                }
            )
            continue
        previous = dict(existing[customer_id] or {})
        scores = dict(previous.get("propensity") or {})
        if scores.get(target) == entry:
            continue
        scores[target] = entry
        updates.append(
            {"target_id": customer_id, "new_metrics": {**previous, "propensity": scores}}
        )
    if inserts:
        await session.execute(insert(_PROFILES), inserts)
    if updates:
        await session.execute(
            update_statement(_PROFILES)
            .where(_PROFILES.c.customer_id == bindparam("target_id"))
            .values(
                metrics=bindparam("new_metrics"),
                version=_PROFILES.c.version + 1,
                updated_at=now,
            ),
            updates,
        )


async def read_propensity_scores(session: Session, customer_id: int) -> tuple[StoredScore, ...]:
    """The ``propensity_scores`` rows of one customer, by target."""
    rows = await session.execute(
        select(
            PropensityScore.target,
            PropensityScore.score,
            PropensityScore.model_version,
            PropensityScore.scored_at,
        )
        .where(PropensityScore.customer_id == customer_id)
        .order_by(PropensityScore.target)
    )
    return tuple(StoredScore(str(t), float(s), str(v), at) for t, s, v, at in rows.all())


async def count_propensity_scores(session: Session, target: str) -> int:
    """How many customers have a score for ``target``."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(PropensityScore)
            .where(PropensityScore.target == target)
        )
        or 0
    )
