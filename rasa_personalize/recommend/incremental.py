"""Fresh customer vectors: what a customer did since training changes their recommendations.

A trained model knows each customer as the vector ALS solved from their interactions up
to the training data cutoff (``ArtifactMetadata.trained_until``). When a customer has
done something since (or the model has never seen them), their vector is solved again
on the request path from their whole history: the same least-squares step as in
training (implicit's ``recalculate_user``), against the model's fixed item factors, with
the same confidence weights, BM25 weighting and alpha. Training ends with exactly that
step for every user, so a customer who did nothing new gets their trained vector back;
one who did gets a vector that already reflects it, seconds after the event is stored.

Nothing is written back into the model: the vector lives for one request, so every
replica gives the same answer and the next training run makes it permanent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.artifacts import AlsArtifact
from rasa_personalize.recommend.interactions import ConfidenceWeights
from rasa_personalize.store.history import (
    DEFAULT_HISTORY_EVENTS,
    DEFAULT_HISTORY_ITEMS,
    CustomerHistory,
    HistoryEntry,
    HistoryQuery,
)

# Above this many history rows the solve (and the weighting before it) costs more than
# a thread hop, so it leaves the event loop (see bench/incremental_update.py).
INLINE_HISTORY_ROWS: Final = 64


@dataclass(frozen=True, eq=False)
class FreshVector:
    """A customer vector recalculated from their history, and what it came from.

    Attributes:
        vector: float32 factors, comparable with the model's user factors.
        newest: the newest interaction that counted for the customer (for the reason).
        products: how many of the model's products the vector was solved from.
        item_rows: their rows in the model (the EASE half of a blend scores from them).
    """

    vector: NDArray[np.float32]
    newest: HistoryEntry
    products: int
    item_rows: tuple[int, ...] = ()


def counted_kinds(confidence: ConfidenceWeights) -> frozenset[str]:
    """Interaction kinds that can carry a weight: the others ("shown") never matter."""
    return frozenset(
        {kind for kind, weight in confidence.kinds.items() if weight != 0} | set(confidence.values)
    )


def history_query(
    artifact: AlsArtifact | None,
    customer_key: str,
    kinds: frozenset[str],
    *,
    limit: int = DEFAULT_HISTORY_ITEMS,
    max_events: int = DEFAULT_HISTORY_EVENTS,
) -> HistoryQuery | None:
    """The history a request for this customer needs with this model (None: no model).

    A customer in the model needs it only when they did something after the training
    data cutoff; one outside the model needs whatever history they have.
    """
    if artifact is None:
        return None
    known = artifact.model.has_user(customer_key)
    after = artifact.metadata.trained_until if known else None
    return HistoryQuery(after=after, kinds=kinds, limit=limit, max_events=max_events)


def has_news(history: CustomerHistory, query: HistoryQuery) -> bool:
    """Whether ``history`` (read for ``query`` or an older cutoff) holds anything new."""
    newest = history.newest_at
    if newest is None:
        return False
    return query.after is None or newest > query.after


def weighted_products(
    entries: Sequence[HistoryEntry], confidence: ConfidenceWeights
) -> tuple[list[str], NDArray[np.float64], HistoryEntry | None]:
    """Per-product confidence totals as training sums them, and the newest liked entry.

    Training sums every event's weight per (customer, product) and drops pairs whose total
    is zero or below (viewed, then disliked); so does this. Products come newest first.

    Raises:
        InvalidInputError: an entry's kind or value has no confidence weight.
    """
    # A history holds few distinct (kind, value) pairs: one lookup each, not one per row.
    weight_of: dict[tuple[str, float | None], float] = {}
    weights: list[float] = []
    totals: dict[str, float] = {}
    for entry in entries:
        key = (entry.kind, entry.value)
        weight = weight_of.get(key)
        if weight is None:
            weight = weight_of[key] = confidence.weight(entry.kind, entry.value)
        weights.append(weight)
        totals[entry.sku] = totals.get(entry.sku, 0.0) + weight * entry.count
    liked = [sku for sku, total in totals.items() if total > 0]
    newest = next(
        (
            entry
            for entry, weight in zip(entries, weights, strict=True)
            if weight > 0 and totals[entry.sku] > 0
        ),
        None,
    )
    return liked, np.array([totals[sku] for sku in liked], dtype=np.float64), newest


def fresh_vector(
    artifact: AlsArtifact, history: CustomerHistory, confidence: ConfidenceWeights
) -> FreshVector | None:
    """The customer's vector solved from ``history`` (CPU work: large ones go to a thread).

    Returns None when nothing in the history is usable: no product with a positive total,
    none of them in the model, or an interaction the confidence weights cannot map.
    """
    try:
        skus, totals, newest = weighted_products(history.entries, confidence)
    except InvalidInputError:
        return None
    model = artifact.model
    lookup = model.item_ids_.get
    # Products added to the catalogue after training have no factors yet: skipped.
    known = [(position, row) for position, row in enumerate(map(lookup, skus)) if row is not None]
    if newest is None or not known:
        return None
    positions = [position for position, _ in known]
    rows = [row for _, row in known]
    vector = model.user_vector_from_rows(rows, totals[positions])
    return FreshVector(vector=vector, newest=newest, products=len(known), item_rows=tuple(rows))
