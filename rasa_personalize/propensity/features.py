"""Features of each customer's history as of a moment, for the propensity model.

Everything is aggregated in SQL (:mod:`rasa_personalize.store.propensity`) over the
interactions strictly before ``as_of``; nothing that happened at or after it can reach a
feature, so features as of the cut-off of a time split never see the label week. The
layout (which channels, devices and categories get a column) is chosen once per training
run (:func:`feature_layout`) and used for both the training features and the scoring
features, so the model reads the same columns in both.

Definitions (every value is a float64 in :attr:`PropensityFeatures.matrix`):

``recency_days``
    Days from ``as_of`` to the last purchase, capped at :data:`DAYS_CAP` (also for
    customers who never bought: ``frequency == 0`` tells them apart).
``frequency``, ``monetary``
    Purchases, and money spent on them (price paid x quantity).
``sessions``
    Distinct UTC days with any activity.
``tenure_days``
    Days since the first interaction (0 without any).
``account_age_days``
    Days since the customer row was created.
``days_since_last_seen``
    Days since the last interaction of any kind, capped at :data:`DAYS_CAP`.
``interactions``, ``views``, ``carts``
    Counts of all activity, product views and cart events.
``views_14d``, ``carts_14d``, ``purchases_30d``
    The same in the 14 (views, carts) or 30 (purchases) days before ``as_of``.
``discount_share``
    Share of purchases paid below the store's discount line (0 without purchases).
``loyalty_tier``
    none 0, silver 1, gold 2, platinum 3 (the tier stored now: stores keep no history).
``hour.<part>``
    Share of interactions in the UTC morning (5-12), afternoon (12-17), evening (17-22)
    and night (22-5).
``channel.<name>``, ``device.<name>``
    Share of the interactions that name a channel (device) made on each of the
    :data:`MAX_VALUES` most common ones.
``affinity.<category>``
    Share of the customer's weighted interactions in the category, as in the profile
    metrics; the :data:`MAX_AFFINITY_CATEGORIES` categories with most products get a
    column each and the rest share ``affinity.other``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.propensity.errors import PropensityInputError
from rasa_personalize.store.features import category_prices
from rasa_personalize.store.functions import SECONDS_PER_DAY
from rasa_personalize.store.propensity import (
    DAY_PARTS,
    HISTORY_COLUMNS,
    NIGHT,
    ActivityVocabulary,
    CategoryWeights,
    activity_vocabulary,
    read_customer_history,
    stream_category_weights,
)
from rasa_personalize.store.types import Session

ProgressCallback = Callable[[str, int, int], None]

DAYS_CAP: Final = 365.0
MAX_VALUES: Final = 4
MAX_AFFINITY_CATEGORIES: Final = 24
OTHER_CATEGORY: Final = "other"

BASE_FEATURES: Final = (
    "recency_days",
    "frequency",
    "monetary",
    "sessions",
    "tenure_days",
    "account_age_days",
    "days_since_last_seen",
    "interactions",
    "views",
    "carts",
    "views_14d",
    "carts_14d",
    "purchases_30d",
    "discount_share",
    "loyalty_tier",
)
HOUR_FEATURES: Final = (*(f"hour.{name}" for name, _, _ in DAY_PARTS), f"hour.{NIGHT}")


@dataclass(frozen=True)
class FeatureLayout:
    """Which channels, devices and categories get a column: fixed for one model."""

    channels: tuple[str, ...]
    devices: tuple[str, ...]
    categories: tuple[str, ...]
    has_other: bool

    @property
    def vocabulary(self) -> ActivityVocabulary:
        """The channels and devices, as the store's statements take them."""
        return ActivityVocabulary(self.channels, self.devices)

    def to_json_dict(self) -> dict[str, Any]:
        """The layout as JSON-ready values (a model card keeps it beside the model)."""
        return {
            "channels": list(self.channels),
            "devices": list(self.devices),
            "categories": list(self.categories),
            "has_other": self.has_other,
        }

    @classmethod
    def from_json_dict(cls, document: Any) -> FeatureLayout:
        """The layout :meth:`to_json_dict` wrote.

        Raises:
            PropensityInputError: not such a document.
        """

        def names(key: str) -> tuple[str, ...]:
            values = document.get(key)
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise PropensityInputError(f"feature layout: {key!r} must be a list of names")
            return tuple(values)

        if not isinstance(document, Mapping):
            raise PropensityInputError("feature layout: expected an object")
        has_other = document.get("has_other")
        if not isinstance(has_other, bool):
            raise PropensityInputError("feature layout: 'has_other' must be true or false")
        return cls(names("channels"), names("devices"), names("categories"), has_other)

    def names(self) -> tuple[str, ...]:
        """Every column name, in matrix order."""
        return (
            *BASE_FEATURES,
            *HOUR_FEATURES,
            *(f"channel.{value}" for value in self.channels),
            *(f"device.{value}" for value in self.devices),
            *(f"affinity.{category}" for category in self.categories),
            *((f"affinity.{OTHER_CATEGORY}",) if self.has_other else ()),
        )


@dataclass(frozen=True, eq=False)
class PropensityFeatures:
    """Features of many customers as of one moment: a row per customer, a column per name.

    Attributes:
        customer_ids: ascending store ids, shape ``(n,)``.
        matrix: float64, shape ``(n, len(names))``, finite.
        names: column names (see the module docstring).
        as_of: the moment the history ends (exclusive).
    """

    customer_ids: NDArray[np.int64]
    matrix: NDArray[np.float64]
    names: tuple[str, ...]
    as_of: datetime

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.customer_ids), len(self.names)):
            raise PropensityInputError(
                f"features: matrix has shape {self.matrix.shape}, expected "
                f"({len(self.customer_ids)}, {len(self.names)})"
            )
        if len(self.matrix) and not np.isfinite(self.matrix).all():
            raise PropensityInputError("features: the matrix must be finite (no NaN or inf)")
        for array in (self.customer_ids, self.matrix):
            array.flags.writeable = False

    def __len__(self) -> int:
        return len(self.customer_ids)

    def column(self, name: str) -> NDArray[np.float64]:
        """One column by name, as a new array.

        Raises:
            PropensityInputError: no such column.
        """
        if name not in self.names:
            raise PropensityInputError(
                f"features: no column {name!r}; the columns are {', '.join(self.names)}"
            )
        return np.array(self.matrix[:, self.names.index(name)], dtype=np.float64)

    def take(self, rows: NDArray[np.int64] | NDArray[np.bool_]) -> PropensityFeatures:
        """The customers at these positions (or where the mask is true)."""
        return PropensityFeatures(
            customer_ids=np.array(self.customer_ids[rows], dtype=np.int64),
            matrix=np.array(self.matrix[rows], dtype=np.float64),
            names=self.names,
            as_of=self.as_of,
        )


async def feature_layout(session: Session, as_of: datetime) -> FeatureLayout:
    """The columns for a model trained on the history before ``as_of``."""
    vocabulary = await activity_vocabulary(session, as_of, MAX_VALUES)
    prices = await category_prices(session)
    # Most products first, then by name: a stable choice between runs on one catalogue.
    ranked = sorted(prices, key=lambda category: (-len(prices[category]), category))
    return FeatureLayout(
        channels=vocabulary.channels,
        devices=vocabulary.devices,
        categories=tuple(sorted(ranked[:MAX_AFFINITY_CATEGORIES])),
        has_other=len(ranked) > MAX_AFFINITY_CATEGORIES,
    )


async def compute_features(
    session: Session,
    layout: FeatureLayout,
    *,
    as_of: datetime,
    stage: str = "features",
    progress: ProgressCallback | None = None,
    expected: int = 0,
) -> PropensityFeatures:
    """Features of every customer created by ``as_of``, from their history before it.

    Args:
        session: an open session; only reads.
        layout: the columns (:func:`feature_layout`).
        as_of: where the history ends (exclusive); timezone-aware.
        stage: the progress stage's name.
        progress: called as ``progress(stage, done, total)`` while rows stream in.
        expected: the total to report progress against (customers in the store).

    Raises:
        PropensityInputError: ``as_of`` is naive.
    """
    if as_of.tzinfo is None:
        raise PropensityInputError("features: as_of must be timezone-aware (UTC)")
    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    done = 0
    notify(stage, 0, expected)

    def advance(rows: int) -> None:
        nonlocal done
        done += rows
        notify(stage, done, max(expected, done))

    history = await read_customer_history(session, as_of, layout.vocabulary, advance)
    ids = history[:, 0].astype(np.int64)
    weights = [part async for part in stream_category_weights(session, as_of)]
    notify(stage, max(expected, done), max(expected, done))
    matrix = assemble(history, weights, layout, as_of)
    return PropensityFeatures(ids, matrix, layout.names(), as_of)


def assemble(
    history: NDArray[np.float64],
    weights: Sequence[CategoryWeights],
    layout: FeatureLayout,
    as_of: datetime,
) -> NDArray[np.float64]:
    """The feature matrix from the store's history rows and category sums.

    ``history`` has the columns of :data:`~rasa_personalize.store.propensity.HISTORY_COLUMNS`
    followed by the layout's channel and device counts, ascending customer ids.
    """
    n = len(history)
    column = {name: history[:, i] for i, name in enumerate(HISTORY_COLUMNS)}
    ids = history[:, 0].astype(np.int64)
    affinity, discounted = _category_sums(ids, weights, layout)
    now = as_of.timestamp()
    purchases, interactions = column["purchases"], column["interactions"]

    def days_since(moment: NDArray[np.float64], *, missing: float) -> NDArray[np.float64]:
        days = (now - moment) / SECONDS_PER_DAY
        return np.where(moment < 0, missing, np.clip(days, 0.0, DAYS_CAP))

    def share(counts: NDArray[np.float64], total: NDArray[np.float64]) -> NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, counts / total, 0.0)

    start = len(HISTORY_COLUMNS)
    channels = history[:, start : start + len(layout.channels)]
    devices = history[:, start + len(layout.channels) :]
    mass = affinity.sum(axis=1, keepdims=True)
    shares = share(affinity, np.broadcast_to(mass, affinity.shape))
    if not layout.has_other:
        shares = shares[:, :-1]
    columns = [
        days_since(column["last_purchase"], missing=DAYS_CAP),
        purchases,
        column["spent"],
        column["sessions"],
        days_since(column["first_seen"], missing=0.0),
        np.maximum((now - column["created_at"]) / SECONDS_PER_DAY, 0.0),
        days_since(column["last_seen"], missing=DAYS_CAP),
        interactions,
        column["views"],
        column["carts"],
        column["recent_views"],
        column["recent_carts"],
        column["recent_purchases"],
        np.minimum(share(discounted, purchases), 1.0),
        column["loyalty_tier"],
        *(share(column[f"hour_{name}"], interactions) for name, _, _ in DAY_PARTS),
        share(column[f"hour_{NIGHT}"], interactions),
        *(share(channels[:, i], column["with_channel"]) for i in range(channels.shape[1])),
        *(share(devices[:, i], column["with_device"]) for i in range(devices.shape[1])),
        *(shares[:, i] for i in range(shares.shape[1])),
    ]
    if not n:
        return np.zeros((0, len(layout.names())), dtype=np.float64)
    return np.ascontiguousarray(np.column_stack(columns), dtype=np.float64)


def _category_sums(
    ids: NDArray[np.int64], weights: Sequence[CategoryWeights], layout: FeatureLayout
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per customer: affinity weight per layout category (plus a last "other" column), and
    discounted purchases."""
    column_of = {category: i for i, category in enumerate(layout.categories)}
    other = len(layout.categories)
    affinity = np.zeros((len(ids), other + 1))
    discounted = np.zeros(len(ids))
    for part in weights:
        if not len(ids) or not len(part):
            continue
        rows = np.searchsorted(ids, part.customer_ids)
        # A customer created after ``as_of`` has history rows but no feature row: skip.
        keep = (rows < len(ids)) & (ids[np.minimum(rows, len(ids) - 1)] == part.customer_ids)
        columns = np.array(
            [column_of.get(c, other) for c, k in zip(part.categories, keep, strict=True) if k],
            dtype=np.int64,
        )
        np.add.at(affinity, (rows[keep], columns), part.weight[keep])
        np.add.at(discounted, rows[keep], part.discounted[keep])
    return affinity, discounted
