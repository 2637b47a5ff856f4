"""The list a shopper sees: relevance first, then the strategy, their taste, variety, no repeats.

The fallback chain (:mod:`rasa_personalize.recommend.service`) ranks a pool of candidates
by relevance, best first (``pool_depth(n)`` deep). :func:`arrange` turns that pool into
the ``n`` products shown:

1. Every candidate gets a score: its relevance from its rank in the pool,
   ``1 - rank / depth`` (1 for the best, falling by ``1 / depth`` per place), plus
   ``STRATEGY_WEIGHT`` times the strategy's term, a percentile within the pool from 0 to
   1: ``cheapest_first`` the cheaper the higher, ``premium`` the dearer the higher,
   ``new_arrivals`` the newer the higher (first seen in the shop's data; never seen
   counts as newest). ``default`` and ``bought_together`` add nothing.

   A strategy therefore re-orders within relevance: the cheapest product of the pool
   overtakes a better ranked one only when it is fewer than ``STRATEGY_WEIGHT * depth``
   places behind it (fewer still against a middling price), never the whole catalogue.
2. Candidates are then taken best score first, except that some wait behind the others,
   in this order:

   - a candidate whose category already has ``max_per_category`` products in the list
     (unless the customer asked for a category);
   - a candidate above the decision rules' price cap (``max_price``): the cap, too, acts
     on the relevant candidates rather than on the whole catalogue, so that when the pool
     holds fewer than ``n`` products within it the list goes on with relevant ones above
     it, not with cheap products of no interest;
   - a substitute of a recent purchase (:func:`substitute_keys`), last of all.

The weights were chosen with ``bench/strategy_cost.py`` and ``bench/relevance.py`` (see
``docs/recommendations.md``). Everything here is plain Python over a pool of a few dozen
candidates: tens of microseconds per request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.settings import Settings
from rasa_personalize.store.records import ProductRecord

# The pool the chain ranks for a list of n: deep enough for the strategy, the category cap
# and the substitutes to have somewhere to go.
MIN_POOL_DEPTH: Final = 30
POOL_FACTOR: Final = 3
STRATEGY_WEIGHT: Final = 0.2
DEFAULT_MAX_PER_CATEGORY: Final = 2
DEFAULT_SUBSTITUTE_DAYS: Final = 14
# Last words that name a pack, not a product: the word before them is kept too, so that
# a candle set and a bed linen set are different types.
_PACK_WORDS: Final = frozenset({"set", "pack", "kit", "bundle", "pair", "collection", "box"})
_PARENTHESES: Final = re.compile(r"\([^)]*\)")
_EDGE_PUNCTUATION: Final = ".,;:!?\"'"

# A substitute key: (category, product type).
SubstituteKey = tuple[str, str]


def pool_depth(n: int) -> int:
    """How many candidates the chain ranks for a list of ``n``."""
    return max(MIN_POOL_DEPTH, POOL_FACTOR * n)


def product_type(title: str) -> str:
    """A product's type from its title, for telling substitutes apart (a documented rule).

    The last word of the title that has no digit, lowercased, words in parentheses
    ignored ("Series 2"), with a plural "s" dropped: "Trail Running Shoes" and "Road
    Running Shoes" are both "shoe", "Hiking Backpack 40L" is "backpack". A pack word
    (set, pack, kit, ...) keeps the word before it: "Scented Candle Set" is "candle set",
    "Bed Linen Set" is "linen set".
    """
    words = [
        word.strip(_EDGE_PUNCTUATION)
        for word in _PARENTHESES.sub(" ", title).lower().split()
        if not any(character.isdigit() for character in word)
    ]
    words = [word for word in words if word]
    if not words:
        return title.strip().lower()
    kept = words[-2:] if words[-1] in _PACK_WORDS and len(words) > 1 else words[-1:]
    return " ".join(_singular(word) for word in kept)


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def substitute_key(product: ProductRecord) -> SubstituteKey:
    """Products with the same key substitute each other: same category, same type."""
    return (product.category, product_type(product.title))


@dataclass(frozen=True)
class ListPolicy:
    """What a shown list must respect besides the request's filters.

    Attributes:
        max_per_category: at most this many products of one category in a list, unless
            the customer asked for a category.
        substitute_days: for this many days after a purchase, products of the same
            category and type are demoted (0: never).
        repeat_after_days: consumable categories: a product bought there may be
            recommended again this many days after its latest purchase, and its
            substitutes are demoted for this many days instead of ``substitute_days``.
    """

    max_per_category: int = DEFAULT_MAX_PER_CATEGORY
    substitute_days: float = DEFAULT_SUBSTITUTE_DAYS
    repeat_after_days: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_per_category, bool)
            or not isinstance(self.max_per_category, int)
            or self.max_per_category < 1
        ):
            raise InvalidInputError(
                f"max_per_category must be an int >= 1, got {self.max_per_category!r}"
            )
        if not self.substitute_days >= 0:
            raise InvalidInputError(f"substitute_days must be >= 0, got {self.substitute_days!r}")
        for category, days in self.repeat_after_days.items():
            if not isinstance(category, str) or not category.strip():
                raise InvalidInputError("repeat_after_days: a category must be a name")
            if isinstance(days, bool) or not days >= 0:
                raise InvalidInputError(
                    f"repeat_after_days: days must be >= 0, got {days!r} for {category!r}"
                )
        object.__setattr__(
            self, "repeat_after_days", MappingProxyType(dict(self.repeat_after_days))
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ListPolicy:
        """The policy of ``PERSONALIZE_RECOMMEND_MAX_PER_CATEGORY``, ``..._SUBSTITUTE_DAYS``
        and ``..._REPEAT_AFTER_DAYS``."""
        return cls(
            max_per_category=settings.recommend_max_per_category,
            substitute_days=settings.recommend_substitute_days,
            repeat_after_days=settings.recommend_repeat_after_days,
        )

    def substitute_window(self, category: str) -> timedelta:
        """How long after a purchase in ``category`` its substitutes are demoted."""
        return timedelta(days=self.repeat_after_days.get(category, self.substitute_days))


def substitute_keys(
    purchases: Iterable[tuple[str, datetime]],
    now: datetime,
    products: Mapping[str, ProductRecord],
    policy: ListPolicy,
    types: Mapping[str, SubstituteKey] | None = None,
) -> frozenset[SubstituteKey]:
    """The keys of products bought inside their category's substitute window.

    Args:
        purchases: (sku, when) of the customer's purchases, newest first (as the store
            reads them): the walk stops at the first one older than every window.
        now: the time of the request.
        products: the catalogue (products no longer in it are skipped).
        policy: the windows.
        types: sku -> substitute key, precomputed per catalogue (computed when missing).
    """
    longest = max(
        [policy.substitute_window(""), *map(policy.substitute_window, policy.repeat_after_days)]
    )
    keys: set[SubstituteKey] = set()
    for sku, bought_at in purchases:
        age = now - bought_at
        if age >= longest:
            break
        product = products.get(sku)
        if product is not None and age < policy.substitute_window(product.category):
            key = types.get(sku) if types is not None else None
            keys.add(key or substitute_key(product))
    return frozenset(keys)


def repeatable(
    purchases: Iterable[tuple[str, datetime]],
    now: datetime,
    products: Mapping[str, ProductRecord],
    policy: ListPolicy,
) -> frozenset[str]:
    """Purchased skus of consumable categories whose latest purchase is old enough to repeat."""
    if not policy.repeat_after_days:
        return frozenset()
    latest: dict[str, datetime] = {}
    for sku, bought_at in purchases:
        if sku not in latest or bought_at > latest[sku]:
            latest[sku] = bought_at
    allowed = set()
    for sku, bought_at in latest.items():
        product = products.get(sku)
        if product is None:
            continue
        days = policy.repeat_after_days.get(product.category)
        if days is not None and now - bought_at >= timedelta(days=days):
            allowed.add(sku)
    return frozenset(allowed)


@dataclass(frozen=True)
class ArrangeRequest:
    """What :func:`arrange` needs to know about the customer and the request.

    Attributes:
        strategy: a rules strategy (one without a term here adds nothing, like default).
        avoid: substitute keys of recent purchases (:func:`substitute_keys`).
        max_per_category: the category cap; None when the customer asked for a category.
        max_price: the decision rules' price cap, if any.
    """

    strategy: str = "default"
    avoid: frozenset[SubstituteKey] = frozenset()
    max_per_category: int | None = DEFAULT_MAX_PER_CATEGORY
    max_price: float | None = None


def arrange(
    pool: Sequence[str],
    n: int,
    products: Mapping[str, ProductRecord],
    request: ArrangeRequest,
    *,
    depth: int | None = None,
    types: Mapping[str, SubstituteKey] | None = None,
    arrivals: Mapping[str, float] | None = None,
) -> list[str]:
    """The ``n`` skus to show from a relevance-ordered pool (see the module docstring).

    Args:
        pool: candidate skus, best first, each once; skus missing from ``products`` are
            dropped.
        n: at most this many.
        products: the catalogue.
        request: strategy, substitutes to avoid, the category and price caps.
        depth: the rank that relevance counts down to (default ``pool_depth(n)``).
        types: sku -> substitute key, precomputed per catalogue (computed when missing).
        arrivals: sku -> when it was first seen (larger is newer), for ``new_arrivals``.
    """
    candidates = [sku for sku in pool if sku in products]
    if n <= 0 or not candidates:
        return []
    reference = max(depth or pool_depth(n), len(candidates))
    term = _strategy_terms(candidates, products, request.strategy, arrivals or {})
    scores = {
        sku: 1.0 - rank / reference + STRATEGY_WEIGHT * term.get(sku, 0.0)
        for rank, sku in enumerate(candidates)
    }
    ordered = sorted(candidates, key=lambda sku: -scores[sku])  # stable: ties keep rank
    chosen: list[str] = []
    over_cap: list[str] = []
    over_price: list[str] = []
    substitutes: list[str] = []
    per_category: dict[str, int] = {}
    cap, max_price = request.max_per_category, request.max_price
    for sku in ordered:
        product = products[sku]
        key = types.get(sku) if types is not None else None
        if request.avoid and (key or substitute_key(product)) in request.avoid:
            substitutes.append(sku)
        elif max_price is not None and product.price > max_price:
            over_price.append(sku)
        elif cap is not None and per_category.get(product.category, 0) >= cap:
            over_cap.append(sku)
        else:
            chosen.append(sku)
            per_category[product.category] = per_category.get(product.category, 0) + 1
            if len(chosen) == n:
                return chosen
    return (chosen + over_cap + over_price + substitutes)[:n]


def _strategy_terms(
    candidates: Sequence[str],
    products: Mapping[str, ProductRecord],
    strategy: str,
    arrivals: Mapping[str, float],
) -> dict[str, float]:
    """The strategy's term per candidate: a percentile within the pool, 0 to 1."""
    if strategy == "cheapest_first":
        return _percentiles({sku: -products[sku].price for sku in candidates})
    if strategy == "premium":
        return _percentiles({sku: products[sku].price for sku in candidates})
    if strategy == "new_arrivals":
        # Never seen in the data the model was trained on: the newest there is.
        newest = float("inf")
        return _percentiles({sku: arrivals.get(sku, newest) for sku in candidates})
    return {}


def _percentiles(values: Mapping[str, float]) -> dict[str, float]:
    """0 for the lowest value, 1 for the highest; ties share their mean percentile."""
    if len(values) < 2:
        return dict.fromkeys(values, 0.5)
    ordered = sorted(values.items(), key=lambda item: item[1])
    last = len(ordered) - 1
    result: dict[str, float] = {}
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1][1] == ordered[start][1]:
            end += 1
        percentile = (start + end) / 2 / last
        for sku, _ in ordered[start : end + 1]:
            result[sku] = percentile
        start = end + 1
    return result
