"""Per-customer aggregates for segmentation features, computed in SQL and streamed.

:mod:`rasa_personalize.segments.features` turns these sums into features; here are only
the statements, so that one row per customer (and per customer and category) reaches
Python and there is no per-customer query:

- :func:`stream_customer_totals`: ``customers`` left-joined to their interaction
  aggregates (purchases, spent, last purchase, active days, views, chat clicks) and the
  demographics, encoded as numbers (:data:`CUSTOMER_TOTALS` names the columns);
- :func:`stream_category_totals`: per customer and category, affinity weight, priced
  purchases, price paid and discounted purchases (:class:`CategoryTotals`);
- :func:`category_prices`: the list prices of the catalogue by category.

Results stream in partitions of :data:`STREAM_BATCH` rows, so memory stays flat, and the
core statements run on the session's connection: the ORM's row processing would cost
more than the aggregates themselves. Dates go through :mod:`rasa_personalize.store.functions`,
so the same statements run on every backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Select, case, cast, func, literal, select

from rasa_personalize.store.dialect import DOUBLE, dialect_of, member_of
from rasa_personalize.store.functions import EpochSeconds, UtcDay
from rasa_personalize.store.models import ASSISTANT_KINDS, Customer, Interaction, Product
from rasa_personalize.store.totals import CATEGORY_AFFINITY_WEIGHTS, DISCOUNT_THRESHOLD, Totals
from rasa_personalize.store.types import Session

# Rows per streamed partition: big enough to amortize a fetch, small enough to stay flat.
STREAM_BATCH: Final = 20_000
# Customer ids per statement when only some customers are wanted; both SQLite and asyncpg
# cap bound parameters at 32k (PostgreSQL gets them as one array anyway, see member_of).
ID_CHUNK: Final = 5_000

LOYALTY_ORDINAL: Final[Mapping[str, int]] = {"none": 0, "silver": 1, "gold": 2, "platinum": 3}
# Gender as a number, compared case-insensitively: unknown (NULL or empty) 0, female 1,
# male 2, any other stated value 3.
GENDER_UNKNOWN: Final = 0
GENDER_FEMALE: Final = 1
GENDER_MALE: Final = 2
GENDER_OTHER: Final = 3

# The columns of each row of :func:`stream_customer_totals`, in order.
CUSTOMER_TOTALS: Final = (
    "customer_id",
    "purchases",  # purchase events
    "spent",  # sum of price paid x quantity over purchases
    "last_purchase",  # epoch seconds of the latest purchase, -1 when none
    "sessions",  # distinct UTC days with any customer activity
    "views",
    "clicks",  # chat clicks
    "age",  # -1 when unknown
    "gender",  # GENDER_* code
    "loyalty_tier",  # LOYALTY_ORDINAL, 0 for unknown tiers
)


@dataclass(frozen=True, eq=False)
class CategoryTotals:
    """One partition of per (customer, category) sums; arrays of equal length.

    Attributes:
        customer_ids: the customer of each row.
        categories: the product category of each row.
        weight: affinity weight of the customer's interactions in the category
            (``CATEGORY_AFFINITY_WEIGHTS`` per kind).
        priced: purchases with a price.
        paid: sum of the prices paid over those.
        discounted: purchases paid below ``DISCOUNT_THRESHOLD`` x list price.
    """

    customer_ids: NDArray[np.int64]
    categories: tuple[str, ...]
    weight: NDArray[np.float64]
    priced: NDArray[np.float64]
    paid: NDArray[np.float64]
    discounted: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.customer_ids)


async def count_customers(session: Session) -> int:
    """Number of customers in the store."""
    return int(await session.scalar(select(func.count()).select_from(Customer)) or 0)


async def category_prices(session: Session) -> dict[str, list[float]]:
    """The list price of every product, grouped by category (streamed, not ordered)."""
    prices: dict[str, list[float]] = {}
    connection = await session.connection()
    result = await connection.stream(select(Product.category, Product.price))
    async for partition in result.partitions(STREAM_BATCH):
        for category, price in partition:
            prices.setdefault(category, []).append(float(price))
    return prices


async def stream_customer_totals(
    session: Session, customer_ids: Collection[int] | None = None
) -> AsyncIterator[NDArray[np.float64]]:
    """Per-customer totals, one float64 row per customer with the :data:`CUSTOMER_TOTALS`
    columns, in partitions; ascending ids within each chunk of ``customer_ids``.

    Args:
        session: an open session; only reads.
        customer_ids: only these customers, ascending (unknown ids are skipped); None:
            every customer, in ascending id order.
    """
    connection = await session.connection()
    dialect = dialect_of(session)
    width = len(CUSTOMER_TOTALS)
    for chunk in _scopes(customer_ids):
        result = await connection.stream(_customer_statement(chunk, dialect))
        async for partition in result.partitions(STREAM_BATCH):
            # Plain tuples: numpy probes a Row for array protocols, key by key.
            rows = [tuple(row) for row in partition]
            yield np.array(rows, dtype=np.float64).reshape(-1, width)


async def stream_category_totals(
    session: Session, customer_ids: Collection[int] | None = None
) -> AsyncIterator[CategoryTotals]:
    """Per (customer, category) sums of interactions with a product, in partitions.

    Args:
        session: an open session; only reads.
        customer_ids: only these customers (unknown ids are skipped); None: everyone.
    """
    connection = await session.connection()
    dialect = dialect_of(session)
    for chunk in _scopes(customer_ids):
        result = await connection.stream(_category_statement(chunk, dialect))
        async for partition in result.partitions(STREAM_BATCH):
            if not partition:
                continue
            cid, category, weight, priced, paid, discounted = zip(*partition, strict=True)
            yield CategoryTotals(
                customer_ids=np.array(cid, dtype=np.int64),
                categories=tuple(category),
                weight=np.array(weight, dtype=np.float64),
                priced=np.array(priced, dtype=np.float64),
                paid=np.array(paid, dtype=np.float64),
                discounted=np.array(discounted, dtype=np.float64),
            )


async def customer_totals_from(
    session: Session, totals: Mapping[int, Totals]
) -> NDArray[np.float64]:
    """The rows :func:`stream_customer_totals` gives, from running totals: one read of
    the customers' demographics instead of aggregates over their interactions. Customers
    the store does not know are left out, as there; ascending ids."""
    connection = await session.connection()
    dialect = dialect_of(session)
    rows: list[tuple[float, ...]] = []
    for chunk in _scopes(sorted(totals)):
        assert chunk is not None  # ids were given
        result = await connection.execute(_demographics_statement(chunk, dialect))
        for customer_id, age, gender, tier in result:
            each = totals[int(customer_id)]
            last_purchase = (
                each.last_purchase_us / 1e6 if each.last_purchase_us is not None else -1.0
            )
            rows.append(
                (customer_id, each.purchases, each.spent_cents / 100, last_purchase,
                 len(each.days), each.views, each.chat_clicks, age, gender, tier)
            )  # fmt: skip
    return np.array(rows, dtype=np.float64).reshape(-1, len(CUSTOMER_TOTALS))


def category_totals_from(totals: Mapping[int, Totals]) -> CategoryTotals:
    """The rows :func:`stream_category_totals` gives, from running totals."""
    ids: list[int] = []
    categories: list[str] = []
    sums: list[tuple[float, float, float, float]] = []
    for customer_id in sorted(totals):
        for category, each in totals[customer_id].categories.items():
            ids.append(customer_id)
            categories.append(category)
            sums.append((each.weight, each.priced, each.paid_cents / 100, each.discounted))
    columns = np.array(sums, dtype=np.float64).reshape(-1, 4)
    return CategoryTotals(
        customer_ids=np.array(ids, dtype=np.int64),
        categories=tuple(categories),
        weight=columns[:, 0].copy(),
        priced=columns[:, 1].copy(),
        paid=columns[:, 2].copy(),
        discounted=columns[:, 3].copy(),
    )


def _scopes(customer_ids: Collection[int] | None) -> Iterator[Sequence[int] | None]:
    """None (everyone) once, or the ids in chunks of :data:`ID_CHUNK`, in the given order."""
    if customer_ids is None:
        yield None
        return
    ids = list(customer_ids)
    for start in range(0, len(ids), ID_CHUNK):
        yield ids[start : start + ID_CHUNK]


def _customer_statement(chunk: Sequence[int] | None, dialect: str) -> Select[Any]:
    """Per customer, the :data:`CUSTOMER_TOTALS` columns."""
    i = Interaction
    is_purchase = i.kind == "purchase"
    totals = (
        select(
            i.customer_id.label("customer_id"),
            func.count(case((is_purchase, 1))).label("purchases"),
            cast(func.sum(case((is_purchase, i.price * i.quantity), else_=0)), DOUBLE).label(
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
        totals = totals.where(member_of(i.customer_id, chunk, dialect))
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
            *_demographics(gender),
        )
        .outerjoin(sub, sub.c.customer_id == Customer.id)
        .order_by(Customer.id)
    )
    if chunk is not None:
        statement = statement.where(member_of(Customer.id, chunk, dialect))
    return statement


def _demographics(gender: Any) -> list[Any]:
    """Age (-1 unknown), the gender code and the tier ordinal, as numbers."""
    return [
        func.coalesce(Customer.age, -1),
        case(
            (gender == "female", GENDER_FEMALE),
            (gender == "male", GENDER_MALE),
            (func.coalesce(gender, "") == "", GENDER_UNKNOWN),
            else_=GENDER_OTHER,
        ),
        case(*((Customer.loyalty_tier == t, v) for t, v in LOYALTY_ORDINAL.items()), else_=0),
    ]


def _demographics_statement(chunk: Sequence[int], dialect: str) -> Select[Any]:
    columns: list[Any] = [Customer.id, *_demographics(func.lower(Customer.gender))]
    return select(*columns).where(member_of(Customer.id, chunk, dialect)).order_by(Customer.id)


def _category_statement(chunk: Sequence[int] | None, dialect: str) -> Select[Any]:
    """Per customer and category: affinity weight, priced purchases, price paid, discounted."""
    i = Interaction
    is_purchase = i.kind == "purchase"
    priced = is_purchase & i.price.is_not(None)
    weight = case(
        *((i.kind == kind, literal(w)) for kind, w in CATEGORY_AFFINITY_WEIGHTS.items()),
        else_=literal(0.0),
    )
    columns: list[Any] = [
        i.customer_id,
        Product.category,
        cast(func.sum(weight), DOUBLE),
        func.count(case((priced, 1))),
        cast(func.sum(case((priced, i.price), else_=0)), DOUBLE),
        func.count(case((is_purchase & (i.price < Product.price * DISCOUNT_THRESHOLD), 1))),
    ]
    statement = (
        select(*columns)
        .join(Product, Product.id == i.product_id)
        .group_by(i.customer_id, Product.category)
    )
    if chunk is not None:
        statement = statement.where(member_of(i.customer_id, chunk, dialect))
    return statement
