"""Features per customer, aggregated in SQL: RFM, engagement, price sensitivity, taste, who.

Two grouped queries of the store do the work (:mod:`rasa_personalize.store.features`),
both streamed in partitions so memory stays flat:

1. per customer (``customers`` left-joined to interaction aggregates): purchases, money
   spent, last purchase, active days, views, recommendation clicks, and the demographics;
2. per customer and category (interactions joined to products): affinity weight,
   purchases, price paid, discounted purchases.

Only one row per customer (and per customer and category) reaches Python; there is no
per-customer query. Category median prices come from a third, small query over
``products``. This module turns those sums into features with numpy.

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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.clock import utc_now
from rasa_personalize.segments.errors import FeatureMismatchError
from rasa_personalize.store.features import (
    CUSTOMER_TOTALS,
    GENDER_FEMALE,
    GENDER_MALE,
    GENDER_OTHER,
    CategoryTotals,
    category_prices,
    category_totals_from,
    count_customers,
    customer_totals_from,
    stream_category_totals,
    stream_customer_totals,
)
from rasa_personalize.store.functions import SECONDS_PER_DAY
from rasa_personalize.store.totals import Totals
from rasa_personalize.store.types import Session

ProgressCallback = Callable[[str, int, int], None]

RECENCY_CAP_DAYS: Final = 365.0
MAX_AFFINITY_CATEGORIES: Final = 24
AFFINITY_PREFIX: Final = "affinity."
OTHER_CATEGORY: Final = "other"

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
    session: Session,
    *,
    now: datetime | None = None,
    customer_ids: Collection[int] | None = None,
    progress: ProgressCallback | None = None,
    totals: Mapping[int, Totals] | None = None,
) -> CustomerFeatures:
    """Features of every customer in the store (or of ``customer_ids`` only).

    Args:
        session: an open session; only reads.
        now: when recency is measured from (default: now); timezone-aware.
        customer_ids: restrict to these store ids (unknown ids are ignored).
        progress: called as ``progress(stage, done, total)`` while rows stream in.
        totals: the running totals of exactly ``customer_ids``, up to date (a fold's):
            the sums come from them instead of aggregates over the interactions.

    Raises:
        FeatureMismatchError: ``now`` is naive.
    """
    now = now or utc_now()
    if now.tzinfo is None:
        raise FeatureMismatchError("features: now must be timezone-aware (UTC)")
    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    medians, affinity_categories, has_other = _catalogue_summary(await category_prices(session))
    wanted: list[int] | None = None
    if customer_ids is None:
        total = await count_customers(session)
    else:
        wanted = sorted({int(i) for i in customer_ids})
        total = len(wanted)

    if totals is not None:
        if wanted is None or set(wanted) != set(totals):
            raise ValueError("totals must be those of exactly the customers asked for")
        per_customer = await customer_totals_from(session, totals)
        ids = per_customer[:, 0].astype(np.int64)
        sums = _CategorySums(ids, affinity_categories, medians)
        sums.add(category_totals_from({int(i): totals[int(i)] for i in ids}))
        matrix, names = _assemble(per_customer, sums, has_other=has_other, now=now)
        return CustomerFeatures(customer_ids=ids, matrix=matrix, names=names, computed_at=now)

    width = len(CUSTOMER_TOTALS)
    customer_parts: list[NDArray[np.float64]] = []
    done = 0
    notify("features", 0, total)
    async for part in stream_customer_totals(session, wanted):
        customer_parts.append(part)
        done += len(part)
        notify("features", done, total)
    per_customer = np.concatenate(customer_parts) if customer_parts else np.zeros((0, width))
    ids = per_customer[:, 0].astype(np.int64)

    sums = _CategorySums(ids, affinity_categories, medians)
    done = 0
    notify("categories", 0, total)
    async for partition in stream_category_totals(session, wanted):
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

    def add(self, totals: CategoryTotals) -> None:
        """Add one partition of (customer, category) sums."""
        if not len(self.ids) or not len(totals):
            return
        found = totals.customer_ids
        rows = np.searchsorted(self.ids, found)
        # A customer created after the first query ran is not in ``ids``: skip it.
        keep = (rows < len(self.ids)) & (self.ids[np.minimum(rows, len(self.ids) - 1)] == found)
        rows = rows[keep]
        names = [c for c, k in zip(totals.categories, keep, strict=True) if k]
        other = len(self.categories)
        columns = np.array([self.column_of.get(c, other) for c in names], dtype=np.int64)
        median = np.array([self.medians.get(c, math.nan) for c in names], dtype=np.float64)
        has_median = median > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(has_median, totals.paid[keep] / median, 0.0)
        np.add.at(self.affinity, (rows, columns), totals.weight[keep])
        np.add.at(self.priced, rows, np.where(has_median, totals.priced[keep], 0.0))
        np.add.at(self.relative, rows, relative)
        np.add.at(self.discounted, rows, totals.discounted[keep])


def _assemble(
    per_customer: NDArray[np.float64], sums: _CategorySums, *, has_other: bool, now: datetime
) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The feature matrix from the two queries' sums (columns as in the module docstring).

    ``per_customer`` has the columns of :data:`~rasa_personalize.store.features.CUSTOMER_TOTALS`.
    """
    (_, purchases, spent, last_purchase, sessions, views, clicks, age, gender, tier) = (
        per_customer.T
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        never = last_purchase < 0
        recency = (now.timestamp() - last_purchase) / SECONDS_PER_DAY
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
        (gender == GENDER_FEMALE).astype(np.float64),
        (gender == GENDER_MALE).astype(np.float64),
        (gender == GENDER_OTHER).astype(np.float64),
        tier,
    ]
    names = [*BASE_FEATURES, *(affinity_column(c) for c in sums.categories)]
    columns += [shares[:, i] for i in range(len(sums.categories))]
    if has_other:
        names.append(affinity_column(OTHER_CATEGORY))
        columns.append(shares[:, -1])
    matrix = np.column_stack(columns) if len(per_customer) else np.zeros((0, len(names)))
    return np.ascontiguousarray(matrix, dtype=np.float64), tuple(names)


def _catalogue_summary(
    prices: Mapping[str, Sequence[float]],
) -> tuple[dict[str, float], list[str], bool]:
    """Median list price per category, the categories with an affinity column, and
    whether some categories are left over for ``affinity.other``."""
    medians = {category: float(np.median(values)) for category, values in prices.items()}
    # Most products first, then by name: a stable choice between runs on the same catalogue.
    ranked = sorted(prices, key=lambda c: (-len(prices[c]), c))
    return medians, sorted(ranked[:MAX_AFFINITY_CATEGORIES]), len(ranked) > MAX_AFFINITY_CATEGORIES
