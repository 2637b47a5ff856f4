"""Training and validation data from one columnar read of the store's interactions.

``personalize train`` reads the interactions once
(:func:`rasa_personalize.store.interaction_columns.read_interaction_columns`) and derives
from those integer columns what each step needs, without a Python object or a string
per interaction:

- :func:`pair_rows`: the (customer, product) pairs with their summed confidence, as
  rows of sorted id maps: what ``InteractionData.from_events`` and ``AlsRecommender.fit``
  would compute from strings, for ``AlsRecommender.fit_rows``;
- :func:`evaluation_data`: the validation data of ``demo_data.load_store_events``,
  optionally only for the customers ``demo_data.tuning_sample`` would draw (the
  parameter search and the promotion guardrail search that sample; building it for
  every customer first would hold ten million strings);
- :func:`purchase_baskets`: the purchases, per customer, for the products bought together.

Each gives what the string-based path gives on the same rows (tests compare them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.evaluation import EvaluationData
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.interactions import ConfidenceWeights
from rasa_personalize.store.interaction_columns import KINDS, InteractionColumns


@dataclass(frozen=True, eq=False)
class PairRows:
    """(customer key, sku) pairs with a positive total confidence, sorted by both.

    Attributes:
        users: the customer keys with such a pair (sorted).
        items: the skus with such a pair (sorted).
        user_rows: per pair, its customer's row in ``users``.
        item_rows: per pair, its product's row in ``items``.
        weights: per pair, the summed confidence of its interactions (> 0).
    """

    users: IdMap
    items: IdMap
    user_rows: NDArray[np.intp]
    item_rows: NDArray[np.intp]
    weights: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.weights)

    def matrix(self) -> scipy.sparse.csr_matrix:
        """The pairs as a 0/1 matrix, customers x products (EASE's input)."""
        return scipy.sparse.csr_matrix(
            (np.ones(len(self)), (self.user_rows, self.item_rows)),
            shape=(len(self.users), len(self.items)),
        )

    def seen(self) -> SeenItems:
        """Each customer's products, for excluding them from precomputed lists."""
        starts = np.searchsorted(self.user_rows, np.arange(len(self.users) + 1))
        return SeenItems(self.users, self.items.ids, self.item_rows, starts)


@dataclass(frozen=True, eq=False)
class SeenItems:
    """A customer's products (those of their pairs), looked up by customer key."""

    users: IdMap
    skus: NDArray[np.str_]
    item_rows: NDArray[np.intp]
    starts: NDArray[np.intp]

    def of(self, key: str) -> list[str]:
        """The customer's products (none when the customer has no pair)."""
        row = self.users.get(key)
        if row is None:
            return []
        items: list[str] = self.skus[
            self.item_rows[self.starts[row] : self.starts[row + 1]]
        ].tolist()
        return items


def confidence_of(
    columns: InteractionColumns, confidence: ConfidenceWeights
) -> NDArray[np.float64]:
    """Each interaction's confidence weight (``ConfidenceWeights.weights_for``, per kind).

    Raises:
        InvalidInputError: a kind or value has no weight.
    """
    weights = np.empty(len(columns), dtype=np.float64)
    for code in np.unique(columns.kinds).tolist():
        rows = np.flatnonzero(columns.kinds == code)
        kind = str(KINDS[code])
        if kind in confidence.values:
            weights[rows] = confidence.weights_for(np.full(len(rows), kind), columns.values[rows])
        else:
            weights[rows] = confidence.weight(kind)
    return weights


def _sorted_ranks(names: NDArray[np.str_]) -> tuple[NDArray[np.str_], NDArray[np.intp]]:
    """``names`` sorted, and each name's position in that order."""
    order = np.argsort(names, kind="stable")
    ranks = np.empty(len(names), dtype=np.intp)
    ranks[order] = np.arange(len(names))
    return names[order], ranks


def pair_rows(columns: InteractionColumns, confidence: ConfidenceWeights) -> PairRows:
    """The pairs ``InteractionData.from_events`` would sum, on the rows ``AlsRecommender.fit``
    would give them: each (customer key, sku) with its interactions' summed confidence,
    pairs whose total is zero or below dropped.

    Raises:
        InvalidInputError: no interactions, a kind or value without a weight, or no
            pair with a positive total.
    """
    if len(columns) == 0:
        raise InvalidInputError("interactions are empty: there is nothing to train on")
    weights = confidence_of(columns, confidence)
    keys, key_rank = _sorted_ranks(columns.customer_keys)
    skus, sku_rank = _sorted_ranks(columns.skus)
    codes = key_rank[columns.customers].astype(np.int64) * len(skus)
    codes += sku_rank[columns.products]
    pairs, inverse = np.unique(codes, return_inverse=True)
    del codes
    totals = np.bincount(inverse.ravel(), weights=weights, minlength=len(pairs))
    del inverse, weights
    keep = totals > 0
    if not keep.any():
        raise InvalidInputError(
            "no (user, item) pair has a positive total weight after mapping: nothing to train on"
        )
    pairs, totals = pairs[keep], totals[keep]
    users, user_rows = np.unique(pairs // len(skus), return_inverse=True)
    items, item_rows = np.unique(pairs % len(skus), return_inverse=True)
    return PairRows(
        users=IdMap.from_sorted(keys[users]),
        items=IdMap.from_sorted(skus[items]),
        user_rows=user_rows.ravel().astype(np.intp, copy=False),
        item_rows=item_rows.ravel().astype(np.intp, copy=False),
        weights=totals.astype(np.float64),
    )


def sample_customers(
    columns: InteractionColumns, customers: int | None, *, seed: int
) -> NDArray[np.bool_] | None:
    """Which customers (rows of ``columns.customer_ids``) ``demo_data.tuning_sample``
    draws from the evaluation data of these columns; None when it keeps them all.

    The evaluation data names customers by their store id as a string, and the sample
    draws from those strings sorted: the same order here, the same draw.
    """
    names = columns.customer_ids.astype(np.str_)
    if customers is None or len(names) <= customers:
        return None
    order = np.argsort(names, kind="stable")
    chosen = np.zeros(len(names), dtype=bool)
    chosen[order[np.random.default_rng(seed).choice(len(names), size=customers, replace=False)]] = (
        True
    )
    return chosen


def evaluation_data(
    columns: InteractionColumns,
    positives: Callable[[NDArray[np.str_], NDArray[np.float64]], NDArray[np.bool_]],
    *,
    customers: NDArray[np.bool_] | None = None,
) -> EvaluationData:
    """The rows of ``columns`` (of the chosen ``customers``; all when None) as evaluation
    data: customers named by their store id, products by sku, times the rows' positions
    among all the columns' rows (insertion order), positives by ``positives(kinds, values)``.

    Raises:
        InvalidInputError: no row is left.
    """
    rows = (
        np.arange(len(columns))
        if customers is None
        else np.flatnonzero(customers[columns.customers])
    )
    names = columns.customer_ids.astype(np.str_)
    kinds = KINDS[columns.kinds[rows]]
    values = columns.values[rows]
    return EvaluationData.from_events(
        names[columns.customers[rows]],
        columns.skus[columns.products[rows]],
        kinds,
        values,
        positives(kinds, values),
        catalogue_size=max(columns.catalogue_size, 1),
        times=rows.astype(np.float64),
    )


def purchase_baskets(columns: InteractionColumns) -> tuple[NDArray[np.str_], NDArray[np.str_]]:
    """(basket, sku) of every purchase: the basket is the customer's store id as a string
    (one basket per customer; ``ItemAssociations`` keeps nothing of its name)."""
    purchase = int(np.flatnonzero(KINDS == "purchase")[0])
    rows = np.flatnonzero(columns.kinds == purchase)
    baskets = columns.customer_ids[columns.customers[rows]].astype(np.str_)
    return baskets, columns.skus[columns.products[rows]]


PopularityRow = tuple[str, str | None, str, int]


def popularity_rows(
    columns: InteractionColumns, segment_customers: NDArray[np.int64], segments: NDArray[np.str_]
) -> list[PopularityRow]:
    """(sku, segment or None, kind, count) over the interactions of ``columns``: what
    ``store.catalogue.read_popularity_rows`` counts, with each customer's segment from
    ``read_latest_segments`` (``segment_customers``: store ids), sorted."""
    if not len(columns):
        return []
    names, segment_codes = np.unique(segments, return_inverse=True)
    # Each customer's segment code + 1; 0: no segment.
    of_customer = np.zeros(len(columns.customer_ids), dtype=np.int64)
    rows = np.searchsorted(columns.customer_ids, segment_customers)
    found = rows < len(columns.customer_ids)
    found[found] = columns.customer_ids[rows[found]] == segment_customers[found]
    of_customer[rows[found]] = segment_codes.ravel()[found] + 1
    kinds = len(KINDS)
    codes = columns.products.astype(np.int64) * (len(names) + 1) + of_customer[columns.customers]
    codes = codes * kinds + columns.kinds
    groups, counts = np.unique(codes, return_counts=True)
    kind_of, rest = groups % kinds, groups // kinds
    segment_of, product_of = rest % (len(names) + 1), rest // (len(names) + 1)
    return [
        (sku, None if segment == 0 else str(names[segment - 1]), str(KINDS[kind]), count)
        for sku, segment, kind, count in zip(
            columns.skus[product_of].tolist(),
            segment_of.tolist(),
            kind_of.tolist(),
            counts.tolist(),
            strict=True,
        )
    ]
