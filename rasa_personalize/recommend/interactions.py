"""Interaction data for training, and the confidence weights that turn events into it.

Events (a customer viewed, carted, bought, rated or gave feedback on an item) are mapped
to confidence weights by ``ConfidenceWeights``, summed per (customer, item) pair, and
what is left above zero becomes ``InteractionData``: three parallel arrays that every
trainer in this package accepts. Negative feedback lowers a pair's total and removes the
pair when the total drops to zero or below, so a disliked item is never a positive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.ids import IdMap, as_str_array


def _frozen_values(
    values: Mapping[str, Mapping[float, float]],
) -> Mapping[str, Mapping[float, float]]:
    return MappingProxyType(
        {
            kind: MappingProxyType({float(v): float(w) for v, w in m.items()})
            for kind, m in values.items()
        }
    )


@dataclass(frozen=True)
class ConfidenceWeights:
    """Maps an interaction (kind, value) to a confidence weight.

    ``kinds`` gives the weight of each kind; for kinds listed in ``values`` the weight
    depends on the event's value instead (a rating of 5, feedback of -1). Weights may be
    negative: they lower the total of a (customer, item) pair before training.

    Attributes:
        kinds: weight per interaction kind, for kinds whose value does not matter.
        values: per kind, weight per exact event value.
    """

    kinds: Mapping[str, float]
    values: Mapping[str, Mapping[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Copies behind read-only proxies: a frozen dataclass should not change under a caller.
        object.__setattr__(
            self, "kinds", MappingProxyType({k: float(w) for k, w in self.kinds.items()})
        )
        object.__setattr__(self, "values", _frozen_values(self.values))
        for kind, weight in (
            *self.kinds.items(),
            *((kind, w) for kind, m in self.values.items() for w in m.values()),
        ):
            if not np.isfinite(weight):
                raise InvalidInputError(f"confidence weight for kind {kind!r} is not finite")

    @classmethod
    def ecommerce(cls) -> ConfidenceWeights:
        """Defaults for the shop's interaction kinds (see ``rasa_personalize.store.models``).

        A purchase says most, a cart more than a view; a search or chat click says little
        about one item. Feedback is +1 (liked the recommendation) or -1 (did not): a
        dislike outweighs a view and a cart, so it removes the pair unless it was bought.
        """
        return cls(
            kinds={
                "view": 1.0,
                "search": 0.5,
                "chat_click": 2.0,
                "cart": 4.0,
                "purchase": 8.0,
                # Being shown an item says nothing about liking it; the answer (feedback) does.
                "shown": 0.0,
                "category_asked": 0.0,
            },
            values={"feedback": {1.0: 4.0, -1.0: -8.0}},
        )

    @classmethod
    def ratings(cls, weights: Mapping[float, float], *, kind: str = "rating") -> ConfidenceWeights:
        """Weights for explicit ratings (MovieLens): ``weights[rating]`` per rating value."""
        return cls(kinds={}, values={kind: weights})

    def weight(self, kind: str, value: float | None = None) -> float:
        """The weight of one event.

        Raises:
            InvalidInputError: the kind is unknown, or its value has no weight.
        """
        by_value = self.values.get(kind)
        if by_value is not None:
            if value is None or float(value) not in by_value:
                known = sorted(by_value)
                raise InvalidInputError(
                    f"no confidence weight for kind {kind!r} with value {value!r}; "
                    f"known values: {known}"
                )
            return by_value[float(value)]
        try:
            return self.kinds[kind]
        except KeyError:
            known_kinds = sorted({*self.kinds, *self.values})
            raise InvalidInputError(
                f"no confidence weight for interaction kind {kind!r}; known kinds: {known_kinds}"
            ) from None

    def weights_for(
        self, kinds: Sequence[str] | NDArray[np.str_], values: ArrayLike | None = None
    ) -> NDArray[np.float64]:
        """Vectorised ``weight`` for parallel arrays of kinds and values (NaN = no value)."""
        kind_array = as_str_array(kinds, "kinds")
        value_array = (
            np.full(len(kind_array), np.nan)
            if values is None
            else np.asarray(values, dtype=np.float64)
        )
        if value_array.shape != kind_array.shape:
            raise InvalidInputError(
                f"kinds and values must have the same length, got {len(kind_array)} and "
                f"{value_array.size}"
            )
        weights = np.empty(len(kind_array), dtype=np.float64)
        for kind in np.unique(kind_array).tolist():
            rows = kind_array == kind
            by_value = self.values.get(kind)
            if by_value is None:
                weights[rows] = self.weight(kind)
                continue
            kind_values = value_array[rows]
            mapped = np.full(len(kind_values), np.nan)
            for value, weight in by_value.items():
                mapped[kind_values == value] = weight
            missing = np.isnan(mapped)
            if missing.any():
                self.weight(kind, float(kind_values[missing][0]))  # raises, naming the value
            weights[rows] = mapped
        return weights


@dataclass(frozen=True, eq=False)
class InteractionData:
    """Training data: parallel arrays of user ids, item ids and confidence weights.

    A (user, item) pair may appear more than once; trainers sum its weights. Weights are
    finite and >= 0 (a zero weight is allowed and ignored); there is at least one row.

    Attributes:
        user_ids: external user ids (customer keys), one per row.
        item_ids: external item ids (SKUs), one per row.
        weights: confidence per row.
    """

    user_ids: NDArray[np.str_]
    item_ids: NDArray[np.str_]
    weights: NDArray[np.float64]

    def __post_init__(self) -> None:
        users = as_str_array(self.user_ids, "user_ids")
        items = as_str_array(self.item_ids, "item_ids")
        weights = np.asarray(self.weights, dtype=np.float64)
        if weights.ndim != 1:
            raise InvalidInputError(f"weights must be 1-D, got shape {weights.shape}")
        if not len(users) == len(items) == len(weights):
            raise InvalidInputError(
                "user_ids, item_ids and weights must have the same length, got "
                f"{len(users)}, {len(items)} and {len(weights)}"
            )
        if len(weights) == 0:
            raise InvalidInputError("interactions are empty: there is nothing to train on")
        if not np.isfinite(weights).all():
            row = int(np.flatnonzero(~np.isfinite(weights))[0])
            raise InvalidInputError(f"weights must be finite; row {row} is {weights[row]}")
        if (weights < 0).any():
            row = int(np.flatnonzero(weights < 0)[0])
            raise InvalidInputError(
                f"weights must be >= 0 after mapping, row {row} has {weights[row]}; map negative "
                "feedback through ConfidenceWeights / InteractionData.from_events"
            )
        if (users == "").any() or (items == "").any():
            raise InvalidInputError("user_ids and item_ids must be non-empty strings")
        # Own read-only copies: the caller's arrays may change after construction.
        for name, array in (("user_ids", users), ("item_ids", items), ("weights", weights)):
            frozen = array.copy() if array.flags.writeable else array
            frozen.setflags(write=False)
            object.__setattr__(self, name, frozen)

    @classmethod
    def from_pairs(
        cls,
        user_ids: Iterable[str] | NDArray[np.str_],
        item_ids: Iterable[str] | NDArray[np.str_],
        weights: ArrayLike | None = None,
    ) -> InteractionData:
        """Rows from parallel ids and weights (weight 1 for every row when omitted)."""
        users = as_str_array(user_ids, "user_ids")
        items = as_str_array(item_ids, "item_ids")
        weight_array = (
            np.ones(len(users)) if weights is None else np.asarray(weights, dtype=np.float64)
        )
        return cls(users, items, weight_array)

    @classmethod
    def from_events(
        cls,
        user_ids: Iterable[str] | NDArray[np.str_],
        item_ids: Iterable[str] | NDArray[np.str_],
        kinds: Sequence[str] | NDArray[np.str_],
        values: ArrayLike | None,
        confidence: ConfidenceWeights,
    ) -> InteractionData:
        """One row per (user, item) pair with the summed weights of its events.

        Pairs whose total is zero or below (e.g. viewed, then disliked) are dropped.

        Raises:
            InvalidInputError: lengths differ, a kind or value has no weight, or no pair
                is left with a positive total.
        """
        users = as_str_array(user_ids, "user_ids")
        items = as_str_array(item_ids, "item_ids")
        weights = confidence.weights_for(kinds, values)
        if not len(users) == len(items) == len(weights):
            raise InvalidInputError(
                "user_ids, item_ids and kinds must have the same length, got "
                f"{len(users)}, {len(items)} and {len(weights)}"
            )
        if len(users) == 0:
            raise InvalidInputError("interactions are empty: there is nothing to train on")
        user_map, item_map = IdMap.from_ids(users), IdMap.from_ids(items)
        keys = np.searchsorted(user_map.ids, users).astype(np.int64) * len(item_map)
        keys += np.searchsorted(item_map.ids, items)
        pairs, inverse = np.unique(keys, return_inverse=True)
        totals = np.bincount(inverse.ravel(), weights=weights, minlength=len(pairs))
        keep = totals > 0
        if not keep.any():
            raise InvalidInputError(
                "no (user, item) pair has a positive total weight after mapping: "
                "nothing to train on"
            )
        pairs = pairs[keep]
        return cls(
            user_map.ids[pairs // len(item_map)],
            item_map.ids[pairs % len(item_map)],
            totals[keep].astype(np.float64),
        )

    def __len__(self) -> int:
        return len(self.weights)
