"""Plans of the chunked demo shop: what every customer will do, decided up front.

Part of :mod:`rasa_personalize.demo.chunked`. The behaviour groups of the small shop
(``_BEHAVIOURS``) as arrays, the samplers that draw products by category and
complements by product type for many customers at once, and :class:`Planner`, which
draws every customer's plan (preferred categories, tier, purchases, discounts, funnels,
browsing) from addressed draws, a block of customers at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum, auto
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.demo.draws import Draws, pick_rows
from rasa_personalize.demo.generator import (
    _BEHAVIOURS,
    _CARTED_PURCHASE_SHARE,
    _DAY,
    _PERSONAS,
    _PREFERENCE_SPLIT,
    _QUIET_GROUPS,
    COMPLEMENTS,
    DEMO_CUSTOMERS,
    GROUP_SHARES,
    _Catalogue,
)
from rasa_personalize.errors import InvalidInputError

GROUPS: Final = tuple(GROUP_SHARES)
TIERS: Final = ("none", "silver", "gold", "platinum")  # index = the tier's ordinal
BROWSE_KINDS: Final = ("view", "search", "cart", "chat_click", "feedback")
# When funnels thin out, this share of the interactions is still left for browsing.
_BROWSING_FLOOR: Final = 0.1
# Customers per vectorised step while planning (a few arrays of this many purchases).
_PLAN_BLOCK: Final = 100_000


class Draw(IntEnum):
    """What a draw is for: each purpose is an independent stream of draws."""

    PREFERRED_COUNT = auto()
    PREFERRED = auto()
    TIER = auto()
    PURCHASES = auto()
    DISCOUNT = auto()
    ACTIVITY = auto()
    RECENT_VIEWS = auto()
    FUNNEL_VIEW = auto()
    FUNNEL_CART = auto()
    JOINED = auto()
    PURCHASE_CATEGORY = auto()
    PURCHASE_PRODUCT = auto()
    PURCHASE_AGE = auto()
    RECENT_PURCHASE = auto()
    PAIR_ORDER = auto()
    COMPLEMENT = auto()
    COMPLEMENT_PRODUCT = auto()
    COMPLEMENT_LAG = auto()
    DISCOUNT_PRICE = auto()
    QUANTITY = auto()
    VIEW_LEAD = auto()
    CART_AT = auto()
    RECENT_PRODUCT = auto()
    RECENT_AGE = auto()
    BROWSE_KIND = auto()
    BROWSE_AGE = auto()
    BROWSE_CATEGORY = auto()
    BROWSE_PRODUCT = auto()
    BLIND_SEARCH = auto()
    FEEDBACK_VALUE = auto()
    FEEDBACK_ON_PURCHASE = auto()
    FEEDBACK_WHICH = auto()
    FEEDBACK_LAG = auto()
    CHANNEL = auto()
    PRIMARY_DEVICE = auto()
    DEVICE_SWITCH = auto()
    OTHER_DEVICE = auto()
    SIGNED_UP_NEW = auto()
    SIGNED_UP_BEFORE = auto()
    AGE = auto()
    GENDER = auto()
    COUNTRY = auto()
    CITY = auto()
    WEEK_BUY = auto()
    WEEK_CATEGORY = auto()
    WEEK_PRODUCT = auto()
    WEEK_AT = auto()
    WEEK_VIEW = auto()
    WEEK_PRICE = auto()
    WEEK_CHANNEL = auto()


def cumulative(weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cumulative shares along the last axis, ending at exactly 1."""
    total = np.cumsum(weights, axis=-1)
    total = total / total[..., -1:]
    total[..., -1] = 1.0
    return np.asarray(total, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class GroupTable:
    """Each group's behaviour (``_BEHAVIOURS``) as arrays indexed by group code."""

    tier_cdf: NDArray[np.float64]  # (groups, tiers)
    purchases_low: NDArray[np.int64]
    purchases_high: NDArray[np.int64]
    discount_rate: NDArray[np.float64]
    discount_least: NDArray[np.float64]
    discount_most: NDArray[np.float64]
    bias: NDArray[np.int64]  # index into ``biases``
    biases: tuple[float, ...]
    activity: NDArray[np.float64]
    recent_low: NDArray[np.int64]
    recent_high: NDArray[np.int64]
    kind_cdf: NDArray[np.float64]  # (groups, browse kinds)
    positive_feedback: NDArray[np.float64]
    lapsed: NDArray[np.bool_]
    quiet: NDArray[np.bool_]
    tenure_s: NDArray[np.float64]  # mean time from signing up to the first event

    @classmethod
    def build(cls) -> GroupTable:
        behaviours = [_BEHAVIOURS[name] for name in GROUPS]
        biases = tuple(sorted({b.price_bias for b in behaviours}))
        tiers = np.array([[b.tiers.get(tier, 0.0) for tier in TIERS] for b in behaviours])
        kinds = np.array([[b.kind_mix.get(kind, 0.0) for kind in BROWSE_KINDS] for b in behaviours])
        return cls(
            tier_cdf=cumulative(tiers),
            purchases_low=np.array([b.purchases[0] for b in behaviours], dtype=np.int64),
            purchases_high=np.array([b.purchases[1] for b in behaviours], dtype=np.int64),
            discount_rate=np.array([b.discount_rate for b in behaviours]),
            discount_least=np.array([b.discount_share[0] for b in behaviours]),
            discount_most=np.array([b.discount_share[1] for b in behaviours]),
            bias=np.array([biases.index(b.price_bias) for b in behaviours], dtype=np.int64),
            biases=biases,
            activity=np.array([b.activity for b in behaviours]),
            recent_low=np.array([b.recent_views[0] for b in behaviours], dtype=np.int64),
            recent_high=np.array([b.recent_views[1] for b in behaviours], dtype=np.int64),
            kind_cdf=cumulative(kinds),
            positive_feedback=np.array([b.positive_feedback for b in behaviours]),
            lapsed=np.array([b.lapsed for b in behaviours]),
            quiet=np.array([name in _QUIET_GROUPS for name in GROUPS]),
            tenure_s=np.array(
                [(400 if name == "loyal" else 120) * _DAY for name in GROUPS], dtype=np.float64
            ),
        )


@dataclass(frozen=True, eq=False)
class _SegmentedSampler:
    """Draws an item of a segment (a category, a product type) by weight, for many
    draws at once: one cumulative table over the items sorted by segment, segment ``s``
    spanning (s, s + 1], so ``s + uniform`` finds the item by binary search."""

    items: NDArray[np.int64]  # product index at each sorted position
    starts: NDArray[np.int64]  # per segment, its first sorted position
    stops: NDArray[np.int64]
    cumulative: NDArray[np.float64]  # (biases, items)

    @classmethod
    def build(
        cls, members: list[NDArray[np.int64]], weights: list[NDArray[np.float64]]
    ) -> _SegmentedSampler:
        """``members[s]``: the products of segment ``s``; ``weights[b]``: per product,
        its weight under price bias ``b``."""
        sizes = np.array([len(m) for m in members], dtype=np.int64)
        stops = np.cumsum(sizes)
        items = np.concatenate(members) if members else np.empty(0, dtype=np.int64)
        tables = []
        for weight in weights:
            table = np.empty(len(items))
            for s, member in enumerate(members):
                table[stops[s] - sizes[s] : stops[s]] = s + cumulative(weight[member])
            tables.append(table)
        return cls(items.astype(np.int64), stops - sizes, stops, np.array(tables))

    def draw(
        self, bias: NDArray[np.int64], segment: NDArray[np.int64], uniform: NDArray[np.float64]
    ) -> NDArray[np.int64]:
        """One item per draw, of ``segment``, weighted by price bias ``bias``."""
        position = np.empty(len(segment), dtype=np.int64)
        for b in range(len(self.cumulative)):
            mine = bias == b
            if mine.any():
                position[mine] = np.searchsorted(
                    self.cumulative[b], segment[mine] + uniform[mine], side="right"
                )
        # ``s + uniform`` may round up to s + 1: stay inside the segment.
        position = np.clip(position, self.starts[segment], self.stops[segment] - 1)
        return self.items[position]


@dataclass(frozen=True, eq=False)
class Shopping:
    """The catalogue's samplers: products by category, complements by product type."""

    category_cdf: NDArray[np.float64]
    split_cdf: NDArray[np.float64]  # (4, 3): row n, the preferred categories' split for n
    products: _SegmentedSampler  # segments: categories
    complements: _SegmentedSampler  # segments: product types that have complements
    complement_of: NDArray[np.int64]  # per product: its type's segment, -1 without any

    @classmethod
    def build(cls, catalogue: _Catalogue, biases: tuple[float, ...]) -> Shopping:
        within = [catalogue.within_category(bias) for bias in biases]
        by_category = [
            np.flatnonzero(catalogue.category_of == k).astype(np.int64)
            for k in range(len(catalogue.categories))
        ]
        types = sorted(
            {(int(k), str(n)) for k, n in zip(catalogue.category_of, catalogue.nouns, strict=True)}
        )
        complement_of = np.full(len(catalogue.prices), -1, dtype=np.int64)
        partners: list[NDArray[np.int64]] = []
        for category, noun in types:
            wanted = COMPLEMENTS.get(noun, ())
            same = catalogue.category_of == category
            found = np.flatnonzero(same & np.isin(catalogue.nouns, wanted)).astype(np.int64)
            if wanted and len(found):
                complement_of[same & (catalogue.nouns == noun)] = len(partners)
                partners.append(found)
        split = np.zeros((4, 3))
        for count in range(1, 4):
            split[count, :count] = cumulative(np.array(_PREFERENCE_SPLIT[:count]))
            split[count, count:] = 1.0
        return cls(
            category_cdf=cumulative(catalogue.category_weights),
            split_cdf=split,
            products=_SegmentedSampler.build(by_category, within),
            complements=_SegmentedSampler.build(partners, within),
            complement_of=complement_of,
        )


@dataclass(frozen=True, eq=False)
class Plans:
    """What every customer will do, decided before any event is drawn (whole shop)."""

    group: NDArray[np.int8]
    preferred: NDArray[np.int8]  # (customers, 3): category indices, -1 past the count
    preferred_count: NDArray[np.int8]
    tier: NDArray[np.int8]  # index into TIERS
    purchases: NDArray[np.int16]
    discounted: NDArray[np.int16]
    activity: NDArray[np.float64]
    recent_views: NDArray[np.int16]
    funnel_views: NDArray[np.int16]  # purchases that come with their view
    funnel_carts: NDArray[np.int16]  # ... and with a cart event too
    browsing: NDArray[np.int64]
    funnel_share: float


def spread(counts: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(owner, index) of each of ``counts[i]`` items of owner ``i``, in owner order."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) - starts[owner]


def rank_within(owner: NDArray[np.int64], key: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each item's rank by ``key`` among the items of its owner (owners ascending)."""
    order = np.lexsort((key, owner))
    counts = np.bincount(owner, minlength=int(owner.max()) + 1 if len(owner) else 0)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(owner), dtype=np.int64)
    rank[order] = np.arange(len(owner)) - starts[owner[order]]
    return rank


class Planner:
    """Draws the plans of all customers (see :class:`Plans`)."""

    def __init__(
        self, draws: Draws, table: GroupTable, catalogue: _Catalogue, groups: NDArray[np.int8]
    ) -> None:
        self.draws = draws
        self.table = table
        self.catalogue = catalogue
        self.groups = groups

    def plan(self, interactions: int) -> Plans:
        n = len(self.groups)
        fields: dict[str, list[NDArray[Any]]] = {}
        full_carts = 0
        for start in range(0, n, _PLAN_BLOCK):
            block, carts = self._block(start, min(n, start + _PLAN_BLOCK))
            full_carts += carts
            for name, values in block.items():
                fields.setdefault(name, []).append(values)
        merged = {name: np.concatenate(parts) for name, parts in fields.items()}
        purchases = int(merged["purchases"].sum())
        recent = int(merged["recent_views"].sum())
        full = 2 * purchases + full_carts + recent
        if interactions >= full:
            share = 1.0
        else:
            share = ((1 - _BROWSING_FLOOR) * interactions - purchases - recent) / (
                purchases + full_carts
            )
            if share <= 0:
                needed = math.ceil((purchases + recent) / (1 - _BROWSING_FLOOR))
                raise InvalidInputError(
                    f"demo shop config: interactions={interactions} is too few for {n} "
                    f"customers; their behaviour groups need at least {needed}"
                )
        views = np.zeros(n, dtype=np.int16)
        carts_kept = np.zeros(n, dtype=np.int16)
        for start in range(0, n, _PLAN_BLOCK):
            stop = min(n, start + _PLAN_BLOCK)
            kept_views, kept_carts = self._funnels(start, merged["purchases"][start:stop], share)
            views[start:stop] = kept_views
            carts_kept[start:stop] = kept_carts
        needed = purchases + int(views.sum()) + int(carts_kept.sum()) + recent
        browsing = _allocate(interactions - needed, merged["activity"], n, needed)
        return Plans(
            group=self.groups,
            preferred=merged["preferred"],
            preferred_count=merged["preferred_count"],
            tier=merged["tier"],
            purchases=merged["purchases"],
            discounted=merged["discounted"],
            activity=merged["activity"],
            recent_views=merged["recent_views"],
            funnel_views=views,
            funnel_carts=carts_kept,
            browsing=browsing,
            funnel_share=share,
        )

    def _block(self, start: int, stop: int) -> tuple[dict[str, NDArray[Any]], int]:
        draws, table = self.draws, self.table
        customers = np.arange(start, stop, dtype=np.int64)
        group = self.groups[start:stop].astype(np.int64)
        n_categories = len(self.catalogue.categories)
        count = draws.integers(Draw.PREFERRED_COUNT, customers, 0, 1, 3)
        # Gumbel top-k: categories ordered by weight-scaled noise is a draw without
        # replacement by weight, as the small shop's rng.choice(replace=False, p=...).
        noise = -np.log(
            -np.log(draws.open_uniform(Draw.PREFERRED, customers[:, None], np.arange(n_categories)))
        )
        keys = np.log(self.catalogue.category_weights)[None, :] + noise
        order = np.argsort(-keys, axis=1, kind="stable")[:, :3]
        preferred = np.where(np.arange(3)[None, :] < count[:, None], order, -1)
        tier = pick_rows(table.tier_cdf[group], draws.uniform(Draw.TIER, customers))
        purchases = draws.integers(
            Draw.PURCHASES, customers, 0, table.purchases_low[group], table.purchases_high[group]
        )
        activity = table.activity[group] * np.exp(0.5 * draws.normal(Draw.ACTIVITY, customers))
        recent = draws.integers(
            Draw.RECENT_VIEWS, customers, 0, table.recent_low[group], table.recent_high[group]
        )
        # The named customers are fixed where a demo depends on them.
        for name, persona in _PERSONAS.items():
            at = list(DEMO_CUSTOMERS).index(name) - start
            if not 0 <= at < len(customers):
                continue
            chosen = [self.catalogue.categories.index(c) for c in persona.categories]
            preferred[at] = chosen + [-1] * (3 - len(chosen))
            count[at] = len(chosen)
            tier[at] = TIERS.index(persona.tier)
            purchases[at] = persona.purchases
            activity[at] = persona.activity
            recent[at] = persona.recent_views
        owner, index = spread(purchases)
        who = customers[owner]
        rate = table.discount_rate[group][owner]
        drawn = np.bincount(
            owner,
            weights=draws.uniform(Draw.DISCOUNT, who, index) < rate,
            minlength=len(customers),
        ).astype(np.int64)
        least = np.ceil(table.discount_least[group] * purchases - 1e-9).astype(np.int64)
        most = np.floor(table.discount_most[group] * purchases + 1e-9).astype(np.int64)
        discounted = np.minimum(np.maximum(drawn, least), most)
        for name, persona in _PERSONAS.items():
            at = list(DEMO_CUSTOMERS).index(name) - start
            if 0 <= at < len(customers):
                discounted[at] = persona.discounted
        carts = int((draws.uniform(Draw.FUNNEL_CART, who, index) < _CARTED_PURCHASE_SHARE).sum())
        return {
            "preferred": preferred.astype(np.int8),
            "preferred_count": count.astype(np.int8),
            "tier": tier.astype(np.int8),
            "purchases": purchases.astype(np.int16),
            "discounted": discounted.astype(np.int16),
            "activity": activity,
            "recent_views": recent.astype(np.int16),
        }, carts

    def _funnels(
        self, start: int, purchases: NDArray[np.int16], share: float
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        owner, index = spread(purchases.astype(np.int64))
        who = owner + start
        view = self.draws.uniform(Draw.FUNNEL_VIEW, who, index) < share
        cart = view & (self.draws.uniform(Draw.FUNNEL_CART, who, index) < _CARTED_PURCHASE_SHARE)
        n = len(purchases)
        return (
            np.bincount(owner, weights=view, minlength=n).astype(np.int64),
            np.bincount(owner, weights=cart, minlength=n).astype(np.int64),
        )


def _allocate(
    spare: int, activity: NDArray[np.float64], customers: int, needed: int
) -> NDArray[np.int64]:
    """Browsing events per customer by activity, adding up to ``spare`` exactly."""
    if spare < 0:
        raise InvalidInputError(
            f"demo shop config: interactions={needed + spare} is too few for {customers} "
            f"customers; their behaviour groups need at least {needed}"
        )
    exact = spare * activity / activity.sum()
    browsing = np.floor(exact).astype(np.int64)
    # Largest remainder, ties to the earlier customer, as in the small shop.
    short = spare - int(browsing.sum())
    browsing[np.argsort(-(exact - browsing), kind="stable")[:short]] += 1
    return np.asarray(browsing, dtype=np.int64)
