"""Features per customer, aggregated in SQL: RFM, engagement, price sensitivity, taste, who.

Two grouped queries do the work, both streamed in partitions so memory stays flat:

1. per customer (``customers`` left-joined to interaction aggregates): purchases, money
   spent, last purchase, active days, views, recommendation clicks, and the demographics;
2. per customer and category (interactions joined to products): affinity weight,
   purchases, price paid, discounted purchases.

Only one row per customer (and per customer and category) reaches Python; there is no
per-customer query. Category median prices come from a third, small query over
``products``. The same SQL runs on SQLite and PostgreSQL: the two date expressions that
differ are compiled per dialect (:class:`EpochSeconds`, :class:`UtcDay`).

Definitions (every value is a float64 in :attr:`CustomerFeatures.matrix`):

``recency_days``
    Days from ``now`` to the last purchase, capped at :data:`RECENCY_CAP_DAYS`. A customer
    who never bought gets the cap: "no purchase for a year" and "never" call for the same
    treatment, a finite value keeps every estimator usable, and ``frequency == 0`` still
    tells them apart.
``frequency``
    Number of purchase events.
``monetary``
    Total spent: sum of price paid x quantity over purchases.
``sessions``
    Distinct UTC calendar days with any interaction. A day, not a 30-minute gap rule:
    it is one ``COUNT(DISTINCT ...)`` per customer instead of a window function over
    every interaction, and shoppers rarely have two separate visits in one day.
``views_per_session``
    Product views / sessions (0 without sessions).
``click_through``
    Recommendation click-through: chat clicks / (views + chat clicks). The store keeps
    no impression log of what the assistant showed, so the denominator is the product
    pages the customer reached by any route; adding the clicks keeps the share in [0, 1].
``discount_share``
    Share of purchases paid below ``DISCOUNT_THRESHOLD`` x list price (0 without purchases),
    the same test as the profile metrics.
``relative_price``
    Mean over priced purchases of price paid / the median list price of the product's
    category; 1.0 (the typical price) for customers without such purchases.
``age``
    Age in years; unknown ages get the median of the known ones in this computation.
``gender_female``, ``gender_male``, ``gender_other``
    One-hot; unknown gender is all zeros.
``loyalty_tier``
    Ordinal: none 0, silver 1, gold 2, platinum 3.
``affinity.<category>``
    Share of the customer's weighted interactions in the category (weights as in the
    profile metrics). The :data:`MAX_AFFINITY_CATEGORIES` categories with most products
    get a column each; the rest share ``affinity.other``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Float, Select, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from rasa_personalize.clock import utc_now
from rasa_personalize.segments.errors import FeatureMismatchError
from rasa_personalize.store.dialect import member_of
from rasa_personalize.store.models import ASSISTANT_KINDS, Customer, Interaction, Product
from rasa_personalize.store.repository import CATEGORY_AFFINITY_WEIGHTS, DISCOUNT_THRESHOLD

ProgressCallback = Callable[[str, int, int], None]

RECENCY_CAP_DAYS: Final = 365.0
MAX_AFFINITY_CATEGORIES: Final = 24
AFFINITY_PREFIX: Final = "affinity."
OTHER_CATEGORY: Final = "other"
LOYALTY_ORDINAL: Final[Mapping[str, int]] = {"none": 0, "silver": 1, "gold": 2, "platinum": 3}

BASE_FEATURES: Final = (
    "recency_days",
    "frequency",
    "monetary",
    "sessions",
    "views_per_session",
    "click_through",
    "discount_share",
    "relative_price",
    "age",
    "gender_female",
    "gender_male",
    "gender_other",
    "loyalty_tier",
)

# Rows per streamed partition: big enough to amortize a fetch, small enough to stay flat.
STREAM_BATCH: Final = 20_000
# Customer ids per IN (...) list when only some customers are wanted; both SQLite and
# asyncpg cap bound parameters at 32k.
ID_CHUNK: Final = 5_000
_SECONDS_PER_DAY: Final = 86_400.0
# julianday() of 1970-01-01T00:00Z.
_UNIX_EPOCH_JULIAN_DAY: Final = 2440587.5


class EpochSeconds(FunctionElement[float]):
    """Seconds since 1970-01-01 UTC of a stored timestamp, as a float, on every backend."""

    type = Float()
    name = "epoch_seconds"
    inherit_cache = True


class UtcDay(FunctionElement[int]):
    """Whole UTC days since 1970-01-01 of a stored timestamp (the day a session falls on)."""

    name = "utc_day"
    inherit_cache = True


@compiles(EpochSeconds, "sqlite")
def _epoch_seconds_sqlite(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps timestamps as ISO text in UTC; julianday() parses it.
    argument = compiler.process(element.clauses, **kw)
    return f"((julianday({argument}) - {_UNIX_EPOCH_JULIAN_DAY}) * {_SECONDS_PER_DAY})"


@compiles(EpochSeconds, "postgresql")
def _epoch_seconds_postgresql(element: EpochSeconds, compiler: SQLCompiler, **kw: Any) -> str:
    # EXTRACT gives numeric on PostgreSQL 14+, which asyncpg hands back as Decimal.
    argument = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {argument}) AS DOUBLE PRECISION)"


@compiles(UtcDay, "sqlite")
def _utc_day_sqlite(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    argument = compiler.process(element.clauses, **kw)
    return f"CAST(julianday({argument}) - {_UNIX_EPOCH_JULIAN_DAY} AS INTEGER)"


@compiles(UtcDay, "postgresql")
def _utc_day_postgresql(element: UtcDay, compiler: SQLCompiler, **kw: Any) -> str:
    argument = compiler.process(element.clauses, **kw)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {argument}) / {_SECONDS_PER_DAY}) AS BIGINT)"


@dataclass(frozen=True, eq=False)
class CustomerFeatures:
    """Features of many customers: one row per customer id, one column per name.

    The arrays are read-only; :meth:`take` and :meth:`columns` return new arrays.

    Attributes:
        customer_ids: ascending store ids, shape ``(n,)``.
        matrix: float64, shape ``(n, len(names))``, finite.
        names: column names, see the module docstring.
        computed_at: the ``now`` that recency was measured from.
    """

    customer_ids: NDArray[np.int64]
    matrix: NDArray[np.float64]
    names: tuple[str, ...]
    computed_at: datetime

    def __post_init__(self) -> None:
        n = len(self.customer_ids)
        if self.matrix.shape != (n, len(self.names)):
            raise FeatureMismatchError(
                f"features: matrix has shape {self.matrix.shape}, expected "
                f"({n}, {len(self.names)}) for {n} customers and {len(self.names)} names"
            )
        if len(set(self.names)) != len(self.names):
            raise FeatureMismatchError("features: column names must be unique")
        if n and not np.isfinite(self.matrix).all():
            raise FeatureMismatchError("features: the matrix must be finite (no NaN or inf)")
        for array in (self.customer_ids, self.matrix):
            array.flags.writeable = False

    def __len__(self) -> int:
        return len(self.customer_ids)

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories with an affinity column, in column order."""
        return tuple(n[len(AFFINITY_PREFIX) :] for n in self.names if n.startswith(AFFINITY_PREFIX))

    def column(self, name: str) -> NDArray[np.float64]:
        """One column by name.

        Raises:
            FeatureMismatchError: no such column (the message suggests the closest).
        """
        return self.columns([name])[:, 0]

    def columns(self, names: Sequence[str]) -> NDArray[np.float64]:
        """The named columns, in the order given, as a new ``(n, len(names))`` array.

        Raises:
            FeatureMismatchError: a name is not a column (the message lists the missing).
        """
        index = {name: i for i, name in enumerate(self.names)}
        missing = [name for name in names if name not in index]
        if missing:
            raise FeatureMismatchError(
                f"features: no column {', '.join(map(repr, missing))}; "
                f"the columns are {', '.join(self.names)}"
            )
        return np.array(self.matrix[:, [index[name] for name in names]], dtype=np.float64)

    def take(self, rows: NDArray[np.int64] | NDArray[np.bool_]) -> CustomerFeatures:
        """The customers at these positions (or where the mask is true)."""
        return CustomerFeatures(
            customer_ids=np.array(self.customer_ids[rows], dtype=np.int64),
            matrix=np.array(self.matrix[rows], dtype=np.float64),
            names=self.names,
            computed_at=self.computed_at,
        )


def affinity_column(category: str) -> str:
    """The column name of a category's affinity."""
    return f"{AFFINITY_PREFIX}{category}"


async def compute_features(
    session: AsyncSession,
    *,
    now: datetime | None = None,
    customer_ids: Collection[int] | None = None,
    progress: ProgressCallback | None = None,
) -> CustomerFeatures:
    """Features of every customer in the store (or of ``customer_ids`` only).

    Args:
        session: an open session; only reads.
        now: when recency is measured from (default: now); timezone-aware.
        customer_ids: restrict to these store ids (unknown ids are ignored).
        progress: called as ``progress(stage, done, total)`` while rows stream in.

    Raises:
        FeatureMismatchError: ``now`` is naive.
    """
    now = now or utc_now()
    if now.tzinfo is None:
        raise FeatureMismatchError("features: now must be timezone-aware (UTC)")
    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    medians, affinity_categories, has_other = await _catalogue_summary(session)
    chunks: list[list[int] | None]
    if customer_ids is None:
        total = int(await session.scalar(select(func.count()).select_from(Customer)) or 0)
        chunks = [None]
    else:
        wanted = sorted({int(i) for i in customer_ids})
        total = len(wanted)
        chunks = [wanted[i : i + ID_CHUNK] for i in range(0, len(wanted), ID_CHUNK)]

    # Core statements on the session's connection: the ORM's row processing would cost
    # more than the aggregates themselves.
    connection = await session.connection()
    dialect = connection.dialect.name
    customer_parts: list[NDArray[np.float64]] = []
    done = 0
    notify("features", 0, total)
    for chunk in chunks:
        result = await connection.stream(_customer_statement(chunk, dialect))
        async for partition in result.partitions(STREAM_BATCH):
            # Plain tuples: numpy probes a Row for array protocols, key by key.
            rows = [tuple(row) for row in partition]
            customer_parts.append(np.array(rows, dtype=np.float64).reshape(-1, 10))
            done += len(partition)
            notify("features", done, total)
    per_customer = np.concatenate(customer_parts) if customer_parts else np.zeros((0, 10))
    ids = per_customer[:, 0].astype(np.int64)

    sums = _CategorySums(ids, affinity_categories, medians)
    done = 0
    notify("categories", 0, total)
    for chunk in chunks:
        result = await connection.stream(_category_statement(chunk, dialect))
        async for partition in result.partitions(STREAM_BATCH):
            sums.add(partition)
            done = min(total, done + len(partition))
            notify("categories", done, total)
    notify("categories", total, total)
    matrix, names = _assemble(per_customer, sums, has_other=has_other, now=now)
    return CustomerFeatures(customer_ids=ids, matrix=matrix, names=names, computed_at=now)


class _CategorySums:
    """Per-customer sums over the (customer, category) rows, filled partition by partition."""

    def __init__(
        self, ids: NDArray[np.int64], categories: Sequence[str], medians: Mapping[str, float]
    ) -> None:
        self.ids = ids
        self.categories = tuple(categories)
        self.medians = medians
        self.column_of = {category: i for i, category in enumerate(categories)}
        # One more column for categories without their own: ``affinity.other``.
        self.affinity = np.zeros((len(ids), len(categories) + 1))
        self.priced = np.zeros(len(ids))
        self.relative = np.zeros(len(ids))
        self.discounted = np.zeros(len(ids))

    def add(self, partition: Sequence[Sequence[Any]]) -> None:
        """Add rows of (customer id, category, weight, priced, paid, discounted)."""
        if not len(self.ids) or not partition:
            return
        cid, category, weight, n_priced, paid, n_discounted = zip(*partition, strict=True)
        found = np.array(cid, dtype=np.int64)
        rows = np.searchsorted(self.ids, found)
        # A customer created after the first query ran is not in ``ids``: skip it.
        keep = (rows < len(self.ids)) & (self.ids[np.minimum(rows, len(self.ids) - 1)] == found)
        rows = rows[keep]
        names = [c for c, k in zip(category, keep, strict=True) if k]
        other = len(self.categories)
        columns = np.array([self.column_of.get(c, other) for c in names], dtype=np.int64)
        median = np.array([self.medians.get(c, math.nan) for c in names], dtype=np.float64)
        has_median = median > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(has_median, np.array(paid, dtype=np.float64)[keep] / median, 0.0)
        np.add.at(self.affinity, (rows, columns), np.array(weight, dtype=np.float64)[keep])
        np.add.at(self.priced, rows, np.where(has_median, np.array(n_priced)[keep], 0.0))
        np.add.at(self.relative, rows, relative)
        np.add.at(self.discounted, rows, np.array(n_discounted, dtype=np.float64)[keep])


def _assemble(
    per_customer: NDArray[np.float64], sums: _CategorySums, *, has_other: bool, now: datetime
) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The feature matrix from the two queries' sums (columns as in the module docstring)."""
    (_, purchases, spent, last_purchase, sessions, views, clicks, age, gender, tier) = (
        per_customer.T
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        never = last_purchase < 0
        recency = (now.timestamp() - last_purchase) / _SECONDS_PER_DAY
        recency = np.where(never, RECENCY_CAP_DAYS, np.clip(recency, 0.0, RECENCY_CAP_DAYS))
        views_per_session = np.where(sessions > 0, views / sessions, 0.0)
        click_through = np.where(views + clicks > 0, clicks / (views + clicks), 0.0)
        discount_share = np.where(purchases > 0, np.minimum(sums.discounted / purchases, 1.0), 0.0)
        relative_price = np.where(sums.priced > 0, sums.relative / sums.priced, 1.0)
        mass = sums.affinity.sum(axis=1, keepdims=True)
        shares = np.where(mass > 0, sums.affinity / mass, 0.0)
    known_age = age >= 0
    age = np.where(known_age, age, float(np.median(age[known_age])) if known_age.any() else 0.0)
    columns = [
        recency,
        purchases,
        spent,
        sessions,
        views_per_session,
        click_through,
        discount_share,
        relative_price,
        age,
        (gender == 1).astype(np.float64),
        # Gender codes from the SQL CASE: 1 female, 2 male, 3 another known value.
        (gender == 2).astype(np.float64),
        (gender == 3).astype(np.float64),
        tier,
    ]
    names = [*BASE_FEATURES, *(affinity_column(c) for c in sums.categories)]
    columns += [shares[:, i] for i in range(len(sums.categories))]
    if has_other:
        names.append(affinity_column(OTHER_CATEGORY))
        columns.append(shares[:, -1])
    matrix = np.column_stack(columns) if len(per_customer) else np.zeros((0, len(names)))
    return np.ascontiguousarray(matrix, dtype=np.float64), tuple(names)


async def _catalogue_summary(
    session: AsyncSession,
) -> tuple[dict[str, float], list[str], bool]:
    """Median list price per category, the categories with an affinity column, and
    whether some categories are left over for ``affinity.other``."""
    prices: dict[str, list[float]] = {}
    connection = await session.connection()
    result = await connection.stream(select(Product.category, Product.price))
    async for partition in result.partitions(STREAM_BATCH):
        for category, price in partition:
            prices.setdefault(category, []).append(float(price))
    medians = {category: float(np.median(values)) for category, values in prices.items()}
    # Most products first, then by name: a stable choice between runs on the same catalogue.
    ranked = sorted(prices, key=lambda c: (-len(prices[c]), c))
    return medians, sorted(ranked[:MAX_AFFINITY_CATEGORIES]), len(ranked) > MAX_AFFINITY_CATEGORIES


def _customer_statement(chunk: Iterable[int] | None, dialect: str) -> Select[Any]:
    """Per customer: id, purchases, spent, last purchase (epoch s, -1 none), sessions,
    views, chat clicks, age (-1 unknown), gender code (0 unknown), loyalty ordinal."""
    i = Interaction
    is_purchase = i.kind == "purchase"
    totals = (
        select(
            i.customer_id.label("customer_id"),
            func.count(case((is_purchase, 1))).label("purchases"),
            cast(func.sum(case((is_purchase, i.price * i.quantity), else_=0)), Float).label(
                "spent"
            ),
            EpochSeconds(func.max(case((is_purchase, i.occurred_at)))).label("last_purchase"),
            func.count(UtcDay(i.occurred_at).distinct()).label("sessions"),
            func.count(case((i.kind == "view", 1))).label("views"),
            func.count(case((i.kind == "chat_click", 1))).label("clicks"),
        )
        .where(i.kind.not_in(ASSISTANT_KINDS))
        .group_by(i.customer_id)
    )
    if chunk is not None:
        totals = totals.where(member_of(i.customer_id, list(chunk), dialect))
    sub = totals.subquery()
    gender = func.lower(Customer.gender)
    statement = (
        select(
            Customer.id,
            func.coalesce(sub.c.purchases, 0),
            func.coalesce(sub.c.spent, 0.0),
            func.coalesce(sub.c.last_purchase, -1.0),
            func.coalesce(sub.c.sessions, 0),
            func.coalesce(sub.c.views, 0),
            func.coalesce(sub.c.clicks, 0),
            func.coalesce(Customer.age, -1),
            case(
                (gender == "female", 1),
                (gender == "male", 2),
                (func.coalesce(gender, "") == "", 0),
                else_=3,
            ),
            case(*((Customer.loyalty_tier == t, v) for t, v in LOYALTY_ORDINAL.items()), else_=0),
        )
        .outerjoin(sub, sub.c.customer_id == Customer.id)
        .order_by(Customer.id)
    )
    if chunk is not None:
        statement = statement.where(member_of(Customer.id, list(chunk), dialect))
    return statement


def _category_statement(chunk: Iterable[int] | None, dialect: str) -> Select[Any]:
    """Per customer and category: affinity weight, priced purchases, price paid, discounted."""
    i = Interaction
    is_purchase = i.kind == "purchase"
    priced = is_purchase & i.price.is_not(None)
    weight = case(
        *((i.kind == kind, literal(w)) for kind, w in CATEGORY_AFFINITY_WEIGHTS.items()),
        else_=literal(0.0),
    )
    statement = (
        select(
            i.customer_id,
            Product.category,
            cast(func.sum(weight), Float),
            func.count(case((priced, 1))),
            cast(func.sum(case((priced, i.price), else_=0)), Float),
            func.count(case((is_purchase & (i.price < Product.price * DISCOUNT_THRESHOLD), 1))),
        )
        .join(Product, Product.id == i.product_id)
        .group_by(i.customer_id, Product.category)
    )
    if chunk is not None:
        statement = statement.where(member_of(i.customer_id, list(chunk), dialect))
    return statement
