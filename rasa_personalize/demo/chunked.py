"""The synthetic shop at scale: generated and written a chunk of customers at a time.

A million customers do not fit the small shop's way (:mod:`rasa_personalize.demo.generator`):
a Python object per customer and per event, and a product distribution per customer.
Here:

- the catalogue and each customer's behaviour group come from the same seeded generator
  as in the small shop: the same products, the same group for ``customer-00042``;
- everything else is drawn per customer from addressed draws
  (:class:`~rasa_personalize.demo.draws.Draws`), vectorised over a chunk, so the shop is
  the same for any chunk size and memory holds a few numbers per customer plus one
  chunk's events;
- a product is drawn in two steps, the customer's category and then a product of that
  category by the group's price bias: the small shop's distribution exactly;
- each chunk is written as soon as it is drawn (``COPY`` on PostgreSQL, through
  :func:`rasa_personalize.store.seeding.load_records`), with ids reserved up front.

Each group behaves as in the small shop (``_BEHAVIOURS``, the named customers' personas,
complementary purchases, the last week's purchases, the tags). One difference: with
fewer interactions than full purchase funnels need (about 13 per customer at the default
mix), a purchase keeps its product view, and a carted purchase its cart event, only with
one probability for everyone (``SeedReport.funnel_share``), chosen so that a tenth of
the interactions remain browsing. Purchases, and so every group, stay as drawn.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum, auto
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.demo.draws import Draws, pick, pick_rows
from rasa_personalize.demo.generator import (
    _BEFORE_WEEK_S,
    _BEHAVIOURS,
    _CART,
    _CARTED_PURCHASE_SHARE,
    _CHANNEL_SHARES,
    _CHANNELS,
    _CHAT_CLICK,
    _COMPLEMENT_LAG_S,
    _COMPLEMENT_RATE,
    _COUNTRIES,
    _DAY,
    _DEVICE_SHARES,
    _DEVICES,
    _DISCOUNT_RANGE,
    _FEEDBACK,
    _FEEDBACK_ON_PURCHASE,
    _FUNNEL_LEAD_S,
    _GENDER_SHARES,
    _GENDERS,
    _HOUR,
    _KIND_CODE,
    _LAPSED_QUIET_S,
    _MINUTE,
    _PERSONAS,
    _PREFERENCE_SPLIT,
    _PREFERRED_SHARE,
    _PREMIUM_SHARE,
    _PURCHASE,
    _QUIET_GROUPS,
    _RECENT_PURCHASE_S,
    _RECENT_SESSION_S,
    _SEARCH,
    _SEARCH_WITH_PRODUCT,
    _TAG_MIN_VIEWS,
    _TAG_WINDOW_S,
    _VIEW,
    COMPLEMENTS,
    DEMO_CUSTOMERS,
    GROUP_SHARES,
    PURCHASE_WEEK_S,
    TAG_SOURCE,
    DemoShopConfig,
    ProgressCallback,
    SeedReport,
    _build_catalogue,
    _Catalogue,
    _Events,
    external_id,
    group_codes,
    probability_from_history,
)
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import INTERACTION_KINDS
from rasa_personalize.store.seeding import (
    bulk_insert_products,
    load_records,
    product_ids,
    refresh_statistics,
    reserve_ids,
)
from rasa_personalize.store.types import Session

logger = logging.getLogger(__name__)

_GROUPS: Final = tuple(GROUP_SHARES)
_TIERS: Final = ("none", "silver", "gold", "platinum")  # index = the tier's ordinal
_BROWSE_KINDS: Final = ("view", "search", "cart", "chat_click", "feedback")
# When funnels thin out, this share of the interactions is still left for browsing.
_BROWSING_FLOOR: Final = 0.1
# Customers per vectorised step while planning (a few arrays of this many purchases).
_PLAN_BLOCK: Final = 100_000
_CUSTOMER_COLUMNS: Final = (
    "id", "customer_key", "created_at", "age", "gender", "country", "city",
    "loyalty_tier", "synthetic_group", "synthetic_purchase_probability",
)  # fmt: skip
_INTERACTION_COLUMNS: Final = (
    "event_id", "customer_id", "product_id", "kind", "value", "quantity", "price",
    "channel", "device", "occurred_at",
)  # fmt: skip
_TAG_COLUMNS: Final = ("customer_id", "tag", "source", "weight", "updated_at")


class _Draw(IntEnum):
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


def _cumulative(weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cumulative shares along the last axis, ending at exactly 1."""
    total = np.cumsum(weights, axis=-1)
    total = total / total[..., -1:]
    total[..., -1] = 1.0
    return np.asarray(total, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class _GroupTable:
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
    def build(cls) -> _GroupTable:
        behaviours = [_BEHAVIOURS[name] for name in _GROUPS]
        biases = tuple(sorted({b.price_bias for b in behaviours}))
        tiers = np.array([[b.tiers.get(tier, 0.0) for tier in _TIERS] for b in behaviours])
        kinds = np.array(
            [[b.kind_mix.get(kind, 0.0) for kind in _BROWSE_KINDS] for b in behaviours]
        )
        return cls(
            tier_cdf=_cumulative(tiers),
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
            kind_cdf=_cumulative(kinds),
            positive_feedback=np.array([b.positive_feedback for b in behaviours]),
            lapsed=np.array([b.lapsed for b in behaviours]),
            quiet=np.array([name in _QUIET_GROUPS for name in _GROUPS]),
            tenure_s=np.array(
                [(400 if name == "loyal" else 120) * _DAY for name in _GROUPS], dtype=np.float64
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
                table[stops[s] - sizes[s] : stops[s]] = s + _cumulative(weight[member])
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
class _Shopping:
    """The catalogue's samplers: products by category, complements by product type."""

    category_cdf: NDArray[np.float64]
    split_cdf: NDArray[np.float64]  # (4, 3): row n, the preferred categories' split for n
    products: _SegmentedSampler  # segments: categories
    complements: _SegmentedSampler  # segments: product types that have complements
    complement_of: NDArray[np.int64]  # per product: its type's segment, -1 without any

    @classmethod
    def build(cls, catalogue: _Catalogue, biases: tuple[float, ...]) -> _Shopping:
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
            split[count, :count] = _cumulative(np.array(_PREFERENCE_SPLIT[:count]))
            split[count, count:] = 1.0
        return cls(
            category_cdf=_cumulative(catalogue.category_weights),
            split_cdf=split,
            products=_SegmentedSampler.build(by_category, within),
            complements=_SegmentedSampler.build(partners, within),
            complement_of=complement_of,
        )


@dataclass(frozen=True, eq=False)
class _Plans:
    """What every customer will do, decided before any event is drawn (whole shop)."""

    group: NDArray[np.int8]
    preferred: NDArray[np.int8]  # (customers, 3): category indices, -1 past the count
    preferred_count: NDArray[np.int8]
    tier: NDArray[np.int8]  # index into _TIERS
    purchases: NDArray[np.int16]
    discounted: NDArray[np.int16]
    activity: NDArray[np.float64]
    recent_views: NDArray[np.int16]
    funnel_views: NDArray[np.int16]  # purchases that come with their view
    funnel_carts: NDArray[np.int16]  # ... and with a cart event too
    browsing: NDArray[np.int64]
    funnel_share: float


def _spread(counts: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(owner, index) of each of ``counts[i]`` items of owner ``i``, in owner order."""
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) - starts[owner]


def _rank_within(owner: NDArray[np.int64], key: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each item's rank by ``key`` among the items of its owner (owners ascending)."""
    order = np.lexsort((key, owner))
    counts = np.bincount(owner, minlength=int(owner.max()) + 1 if len(owner) else 0)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(owner), dtype=np.int64)
    rank[order] = np.arange(len(owner)) - starts[owner[order]]
    return rank


class _Planner:
    """Draws the plans of all customers (see :class:`_Plans`)."""

    def __init__(
        self, draws: Draws, table: _GroupTable, catalogue: _Catalogue, groups: NDArray[np.int8]
    ) -> None:
        self.draws = draws
        self.table = table
        self.catalogue = catalogue
        self.groups = groups

    def plan(self, interactions: int) -> _Plans:
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
        return _Plans(
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
        count = draws.integers(_Draw.PREFERRED_COUNT, customers, 0, 1, 3)
        # Gumbel top-k: categories ordered by weight-scaled noise is a draw without
        # replacement by weight, as the small shop's rng.choice(replace=False, p=...).
        noise = -np.log(
            -np.log(
                draws.open_uniform(_Draw.PREFERRED, customers[:, None], np.arange(n_categories))
            )
        )
        keys = np.log(self.catalogue.category_weights)[None, :] + noise
        order = np.argsort(-keys, axis=1, kind="stable")[:, :3]
        preferred = np.where(np.arange(3)[None, :] < count[:, None], order, -1)
        tier = pick_rows(table.tier_cdf[group], draws.uniform(_Draw.TIER, customers))
        purchases = draws.integers(
            _Draw.PURCHASES, customers, 0, table.purchases_low[group], table.purchases_high[group]
        )
        activity = table.activity[group] * np.exp(0.5 * draws.normal(_Draw.ACTIVITY, customers))
        recent = draws.integers(
            _Draw.RECENT_VIEWS, customers, 0, table.recent_low[group], table.recent_high[group]
        )
        # The named customers are fixed where a demo depends on them.
        for name, persona in _PERSONAS.items():
            at = list(DEMO_CUSTOMERS).index(name) - start
            if not 0 <= at < len(customers):
                continue
            chosen = [self.catalogue.categories.index(c) for c in persona.categories]
            preferred[at] = chosen + [-1] * (3 - len(chosen))
            count[at] = len(chosen)
            tier[at] = _TIERS.index(persona.tier)
            purchases[at] = persona.purchases
            activity[at] = persona.activity
            recent[at] = persona.recent_views
        owner, index = _spread(purchases)
        who = customers[owner]
        rate = table.discount_rate[group][owner]
        drawn = np.bincount(
            owner,
            weights=draws.uniform(_Draw.DISCOUNT, who, index) < rate,
            minlength=len(customers),
        ).astype(np.int64)
        least = np.ceil(table.discount_least[group] * purchases - 1e-9).astype(np.int64)
        most = np.floor(table.discount_most[group] * purchases + 1e-9).astype(np.int64)
        discounted = np.minimum(np.maximum(drawn, least), most)
        for name, persona in _PERSONAS.items():
            at = list(DEMO_CUSTOMERS).index(name) - start
            if 0 <= at < len(customers):
                discounted[at] = persona.discounted
        carts = int((draws.uniform(_Draw.FUNNEL_CART, who, index) < _CARTED_PURCHASE_SHARE).sum())
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
        owner, index = _spread(purchases.astype(np.int64))
        who = owner + start
        view = self.draws.uniform(_Draw.FUNNEL_VIEW, who, index) < share
        cart = view & (self.draws.uniform(_Draw.FUNNEL_CART, who, index) < _CARTED_PURCHASE_SHARE)
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


@dataclass(frozen=True, eq=False)
class _Chunk:
    """One chunk's customers and events (customer indices local to the chunk)."""

    start: int
    events: _Events  # chronological per customer: customer ascending, then oldest first
    position: NDArray[np.int64]  # per event, its place in its customer's history
    channel: NDArray[np.int64]
    device: NDArray[np.int64]
    signed_up: NDArray[np.int64]  # per customer, seconds before now
    age: NDArray[np.int64]
    gender: NDArray[np.int64]
    country: NDArray[np.int64]
    city: NDArray[np.int64]
    probability: NDArray[np.float64]
    spend: NDArray[np.float64]
    interest: tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]


class _ChunkDrawer:
    """Draws the events and attributes of a range of customers (see :class:`_Chunk`)."""

    def __init__(
        self,
        draws: Draws,
        plans: _Plans,
        table: _GroupTable,
        catalogue: _Catalogue,
        window_s: int,
    ) -> None:
        self.draws = draws
        self.plans = plans
        self.table = table
        self.catalogue = catalogue
        self.shopping = _Shopping.build(catalogue, table.biases)
        self.window_s = window_s
        self.channel_cdf = _cumulative(np.array(_CHANNEL_SHARES))
        self.device_cdf = _cumulative(np.array(_DEVICE_SHARES))
        self.gender_cdf = _cumulative(np.array(_GENDER_SHARES))
        self.country_cdf = _cumulative(np.array([share for share, _ in _COUNTRIES.values()]))
        self.city_counts = np.array([len(cities) for _, cities in _COUNTRIES.values()])
        self.browse_kinds = np.array([_KIND_CODE[kind] for kind in _BROWSE_KINDS], dtype=np.int64)

    def _category(
        self, local: NDArray[np.int64], start: int, uniform: NDArray[np.float64]
    ) -> NDArray[np.int64]:
        """A category by the customer's attention: a preferred one with probability
        ``_PREFERRED_SHARE`` (split 60/30/10), else one by the catalogue's weights."""
        count = self.plans.preferred_count[start + local].astype(np.int64)
        preferred = self.plans.preferred[start + local].astype(np.int64)
        to_preferred = (uniform < _PREFERRED_SHARE) & (count > 0)
        slot = pick_rows(
            self.shopping.split_cdf[count], np.minimum(uniform / _PREFERRED_SHARE, 1.0)
        )
        rest = np.where(count > 0, (uniform - _PREFERRED_SHARE) / (1 - _PREFERRED_SHARE), uniform)
        other = pick(self.shopping.category_cdf, np.clip(rest, 0.0, 1.0))
        chosen = np.take_along_axis(preferred, np.minimum(slot, 2)[:, None], axis=1)[:, 0]
        return np.where(to_preferred, chosen, other)

    def draw(self, start: int, stop: int) -> _Chunk:  # noqa: PLR0915  # one pass, in the small shop's order
        d, plans, table, shop = self.draws, self.plans, self.table, self.shopping
        n = stop - start
        customers = np.arange(start, stop, dtype=np.int64)
        group = plans.group[start:stop].astype(np.int64)
        bias = table.bias[group]
        lapsed = table.lapsed[group]
        joined = (self.window_s * (0.35 + 0.65 * d.uniform(_Draw.JOINED, customers))).astype(
            np.int64
        )
        newest = np.where(lapsed, _LAPSED_QUIET_S, _MINUTE).astype(np.int64)
        oldest = np.where(lapsed, self.window_s, joined).astype(np.int64)

        # Purchases, their complements and prices.
        purchases = plans.purchases[start:stop].astype(np.int64)
        p_owner, p_index = _spread(purchases)
        p_who = customers[p_owner]
        category = self._category(
            p_owner, start, d.uniform(_Draw.PURCHASE_CATEGORY, p_who, p_index)
        )
        bought = shop.products.draw(
            bias[p_owner], category, d.uniform(_Draw.PURCHASE_PRODUCT, p_who, p_index)
        )
        latest = oldest[p_owner] - _FUNNEL_LEAD_S
        bought_age = d.integers(
            _Draw.PURCHASE_AGE, p_who, p_index, np.maximum(newest, _HOUR)[p_owner], latest
        )
        # Active means a recent purchase, whatever the other draws said.
        recent = (p_index == 0) & ~lapsed[p_owner]
        bought_age[recent] = d.integers(
            _Draw.RECENT_PURCHASE,
            p_who[recent],
            0,
            _HOUR,
            np.minimum(_RECENT_PURCHASE_S, latest[recent]),
        )
        # The last week holds only the purchases drawn for it.
        bought_age = np.where(
            bought_age <= PURCHASE_WEEK_S, bought_age + PURCHASE_WEEK_S, bought_age
        )
        self._pair_complements(
            p_owner,
            p_index,
            p_who,
            bought=bought,
            bought_age=bought_age,
            bias=bias,
            earliest=np.maximum(newest, _BEFORE_WEEK_S),
        )
        discount_rank = _rank_within(p_owner, d.uniform(_Draw.DISCOUNT, p_who, p_index))
        discounted = discount_rank < plans.discounted[start:stop].astype(np.int64)[p_owner]
        list_price = self.catalogue.prices[bought]
        low, high = _DISCOUNT_RANGE
        paid = np.where(
            discounted,
            np.round(
                list_price * (low + (high - low) * d.uniform(_Draw.DISCOUNT_PRICE, p_who, p_index)),
                2,
            ),
            list_price,
        )
        quantity = np.where(d.uniform(_Draw.QUANTITY, p_who, p_index) < 0.2, 2, 1).astype(np.int64)
        parts = [_events(p_owner, bought_age, _PURCHASE, bought, price=paid, quantity=quantity)]

        # The funnel: a view before the purchase, and a cart event between the two.
        view = d.uniform(_Draw.FUNNEL_VIEW, p_who, p_index) < plans.funnel_share
        cart = view & (d.uniform(_Draw.FUNNEL_CART, p_who, p_index) < _CARTED_PURCHASE_SHARE)
        view_age = bought_age + d.integers(_Draw.VIEW_LEAD, p_who, p_index, 5 * _MINUTE, 2 * _DAY)
        parts.append(_events(p_owner[view], view_age[view], _VIEW, bought[view]))
        cart_age = bought_age + (
            (view_age - bought_age) * (0.1 + 0.8 * d.uniform(_Draw.CART_AT, p_who, p_index))
        ).astype(np.int64)
        parts.append(_events(p_owner[cart], cart_age[cart], _CART, bought[cart]))

        # The closing session in the favourite category.
        r_owner, r_index = _spread(plans.recent_views[start:stop].astype(np.int64))
        r_who = customers[r_owner]
        favourite = np.maximum(plans.preferred[start + r_owner, 0].astype(np.int64), 0)
        seen = shop.products.draw(
            bias[r_owner], favourite, d.uniform(_Draw.RECENT_PRODUCT, r_who, r_index)
        )
        seen_age = d.integers(_Draw.RECENT_AGE, r_who, r_index, 10 * _MINUTE, _RECENT_SESSION_S - 1)
        parts.append(_events(r_owner, seen_age, _VIEW, seen))

        parts.append(
            self._browsing(
                start,
                customers,
                group,
                bias=bias,
                window=(newest, oldest),
                purchases=purchases,
                bought=bought,
                bought_age=bought_age,
            )
        )
        base = _chronological(_Events.concat(parts))
        position = _positions(base.customer, n)
        channel, device = self._channels_and_devices(base, position, customers)

        # Who they are; the signing up precedes the first event.
        first = np.full(n, -1, dtype=np.int64)
        np.maximum.at(first, base.customer, base.age)
        tenure = table.tenure_s[group] * d.exponential(_Draw.SIGNED_UP_BEFORE, customers)
        signed_up = np.where(
            first < 0,
            d.integers(_Draw.SIGNED_UP_NEW, customers, 0, _HOUR, 13 * _DAY - 1),
            first + _HOUR + tenure.astype(np.int64),
        )
        years = np.clip(np.rint(40.0 + 14.0 * d.normal(_Draw.AGE, customers)), 18, 80).astype(
            np.int64
        )
        country = pick(self.country_cdf, d.uniform(_Draw.COUNTRY, customers))
        city = np.minimum(
            (d.uniform(_Draw.CITY, customers) * self.city_counts[country]).astype(np.int64),
            self.city_counts[country] - 1,
        )
        probability = probability_from_history(
            plans.tier[start:stop].astype(np.float64), table.quiet[group], base, device
        )
        events, channel, device = self._purchase_week(
            start, customers, (base, channel, device), probability, bias
        )
        position = _positions(events.customer, n)
        purchase = events.kind == _PURCHASE
        spend = np.bincount(
            events.customer[purchase],
            weights=events.price[purchase] * events.quantity[purchase],
            minlength=n,
        ).astype(np.float64)
        return _Chunk(
            start=start,
            events=events,
            position=position,
            channel=channel,
            device=device,
            signed_up=signed_up,
            age=years,
            gender=pick(self.gender_cdf, d.uniform(_Draw.GENDER, customers)),
            country=country,
            city=city,
            probability=probability,
            spend=spend,
            interest=self._interest(events, n),
        )

    def _pair_complements(
        self,
        owner: NDArray[np.int64],
        index: NDArray[np.int64],
        who: NDArray[np.int64],
        *,
        bought: NDArray[np.int64],
        bought_age: NDArray[np.int64],
        bias: NDArray[np.int64],
        earliest: NDArray[np.int64],
    ) -> None:
        """Pair each customer's purchases at random; in a pair whose first product has
        complements, the second becomes one of them (with ``_COMPLEMENT_RATE``), bought
        within two days before. In place. The first purchase is never the replaced one."""
        if not len(owner):
            return
        rank = _rank_within(owner, self.draws.uniform(_Draw.PAIR_ORDER, who, index))
        order = np.lexsort((rank, owner))
        counts = np.bincount(owner)
        ranked = rank[order]
        leads = np.flatnonzero((ranked % 2 == 0) & (ranked + 1 < counts[owner[order]]))
        anchor, slot = order[leads], order[leads + 1]
        swap = index[slot] == 0
        anchor, slot = np.where(swap, slot, anchor), np.where(swap, anchor, slot)
        kind = self.shopping.complement_of[bought[anchor]]
        chance = self.draws.uniform(_Draw.COMPLEMENT, who[anchor], index[anchor])
        paired = (kind >= 0) & (chance < _COMPLEMENT_RATE)
        anchor, slot, kind = anchor[paired], slot[paired], kind[paired]
        bought[slot] = self.shopping.complements.draw(
            bias[owner[anchor]],
            kind,
            self.draws.uniform(_Draw.COMPLEMENT_PRODUCT, who[anchor], index[anchor]),
        )
        lag = self.draws.integers(
            _Draw.COMPLEMENT_LAG, who[anchor], index[anchor], 0, _COMPLEMENT_LAG_S
        )
        bought_age[slot] = np.maximum(bought_age[anchor] - lag, earliest[owner[anchor]])

    def _browsing(
        self,
        start: int,
        customers: NDArray[np.int64],
        group: NDArray[np.int64],
        *,
        bias: NDArray[np.int64],
        window: tuple[NDArray[np.int64], NDArray[np.int64]],
        purchases: NDArray[np.int64],
        bought: NDArray[np.int64],
        bought_age: NDArray[np.int64],
    ) -> _Events:
        d = self.draws
        newest, oldest = window
        owner, index = _spread(self.plans.browsing[start : start + len(customers)])
        who = customers[owner]
        mine = group[owner]
        kind = self.browse_kinds[
            pick_rows(self.table.kind_cdf[mine], d.uniform(_Draw.BROWSE_KIND, who, index))
        ]
        age = d.integers(_Draw.BROWSE_AGE, who, index, newest[owner], oldest[owner])
        category = self._category(owner, start, d.uniform(_Draw.BROWSE_CATEGORY, who, index))
        product = self.shopping.products.draw(
            bias[owner], category, d.uniform(_Draw.BROWSE_PRODUCT, who, index)
        )
        # A search often ends on a product page, but not always.
        blind = (kind == _SEARCH) & (
            d.uniform(_Draw.BLIND_SEARCH, who, index) >= _SEARCH_WITH_PRODUCT
        )
        product[blind] = -1
        value = np.full(len(owner), np.nan)
        feedback = kind == _FEEDBACK
        positive = d.uniform(_Draw.FEEDBACK_VALUE, who, index) < self.table.positive_feedback[mine]
        value[feedback] = np.where(positive[feedback], 1.0, -1.0)
        # Most feedback rates something bought, a day or two weeks after buying it.
        on_purchase = np.flatnonzero(
            feedback
            & (purchases[owner] > 0)
            & (d.uniform(_Draw.FEEDBACK_ON_PURCHASE, who, index) < _FEEDBACK_ON_PURCHASE)
        )
        if len(on_purchase):
            holder = owner[on_purchase]
            first_purchase = np.cumsum(purchases) - purchases
            which = first_purchase[holder] + np.minimum(
                (
                    d.uniform(_Draw.FEEDBACK_WHICH, who[on_purchase], index[on_purchase])
                    * purchases[holder]
                ).astype(np.int64),
                purchases[holder] - 1,
            )
            product[on_purchase] = bought[which]
            lag = d.integers(
                _Draw.FEEDBACK_LAG, who[on_purchase], index[on_purchase], _DAY, 14 * _DAY - 1
            )
            age[on_purchase] = np.maximum(bought_age[which] - lag, newest[holder])
        return _events(owner, age, kind, product, value=value)

    def _channels_and_devices(
        self, events: _Events, position: NDArray[np.int64], customers: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        d = self.draws
        who = customers[events.customer]
        channel = pick(self.channel_cdf, d.uniform(_Draw.CHANNEL, who, position))
        channel[events.kind == _CHAT_CLICK] = _CHANNELS.index("chat")
        # Each customer mostly uses one device.
        primary = pick(self.device_cdf, d.uniform(_Draw.PRIMARY_DEVICE, customers))
        other = pick(self.device_cdf, d.uniform(_Draw.OTHER_DEVICE, who, position))
        device = np.where(
            d.uniform(_Draw.DEVICE_SWITCH, who, position) < 0.8, primary[events.customer], other
        )
        device[(channel == _CHANNELS.index("app")) & (device == _DEVICES.index("desktop"))] = (
            _DEVICES.index("mobile")
        )
        return channel, device

    def _purchase_week(
        self,
        start: int,
        customers: NDArray[np.int64],
        base: tuple[_Events, NDArray[np.int64], NDArray[np.int64]],
        probability: NDArray[np.float64],
        bias: NDArray[np.int64],
    ) -> tuple[_Events, NDArray[np.int64], NDArray[np.int64]]:
        """The events with the last week's purchases added: each customer buys one
        product there with their probability, after viewing it earlier in the week."""
        d = self.draws
        events, channel, device = base
        buyers = np.flatnonzero(d.uniform(_Draw.WEEK_BUY, customers) < probability)
        who = customers[buyers]
        category = self._category(buyers, start, d.uniform(_Draw.WEEK_CATEGORY, who))
        product = self.shopping.products.draw(
            bias[buyers], category, d.uniform(_Draw.WEEK_PRODUCT, who)
        )
        bought_at = d.integers(_Draw.WEEK_AT, who, 0, _HOUR, PURCHASE_WEEK_S - 10 * _MINUTE - 1)
        viewed_at = bought_at + d.integers(
            _Draw.WEEK_VIEW, who, 0, 5 * _MINUTE, PURCHASE_WEEK_S - bought_at - 1
        )
        purchases = self.plans.purchases[start + buyers].astype(np.int64)
        # Bargain hunters keep their share of discounted purchases.
        bargain = (purchases > 0) & (
            self.plans.discounted[start + buyers] >= 0.5 * np.maximum(purchases, 1)
        )
        list_price = self.catalogue.prices[product]
        low, high = _DISCOUNT_RANGE
        paid = np.where(
            bargain,
            np.round(list_price * (low + (high - low) * d.uniform(_Draw.WEEK_PRICE, who)), 2),
            list_price,
        )
        added = _Events.concat(
            [
                _events(buyers, bought_at, _PURCHASE, product, price=paid),
                _events(buyers, viewed_at, _VIEW, product),
            ]
        )
        twice = np.concatenate([who, who])
        added_channel = pick(
            self.channel_cdf,
            d.uniform(_Draw.WEEK_CHANNEL, twice, np.repeat([0, 1], len(who))),
        )
        # The week's events come from the device the customer used last (their newest
        # event is the last of their run: the events are chronological per customer).
        counts = np.bincount(events.customer, minlength=len(customers))
        last = np.cumsum(counts) - 1
        last_device = device[np.maximum(last, 0)]
        merged = _Events.concat([events, added])
        order = _chronological_order(merged)
        return (
            merged.take(order),
            np.concatenate([channel, added_channel])[order],
            np.concatenate([device, last_device[added.customer]])[order],
        )

    def _interest(
        self, events: _Events, customers: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """(customer, category, weight) of the interest tags: >= 3 views in 30 days."""
        n_categories = len(self.catalogue.categories)
        recent = (events.kind == _VIEW) & (events.age <= _TAG_WINDOW_S) & (events.product >= 0)
        cell = (
            events.customer[recent] * n_categories
            + self.catalogue.category_of[events.product[recent]]
        )
        views = np.bincount(cell, minlength=customers * n_categories).reshape(
            customers, n_categories
        )
        customer, category = np.nonzero(views >= _TAG_MIN_VIEWS)
        weight = np.minimum(1.0, views[customer, category] / 10)
        return customer.astype(np.int64), category.astype(np.int64), weight


def _events(
    owner: NDArray[np.int64],
    age: NDArray[np.int64],
    kind: int | NDArray[np.int64],
    product: NDArray[np.int64],
    *,
    price: NDArray[np.float64] | None = None,
    quantity: NDArray[np.int64] | None = None,
    value: NDArray[np.float64] | None = None,
) -> _Events:
    size = len(age)
    return _Events(
        customer=owner.astype(np.int64),
        age=age.astype(np.int64),
        kind=np.broadcast_to(np.asarray(kind, dtype=np.int64), (size,)).copy(),
        product=product.astype(np.int64),
        price=price if price is not None else np.full(size, np.nan),
        quantity=quantity if quantity is not None else np.ones(size, dtype=np.int64),
        value=value if value is not None else np.full(size, np.nan),
    )


def _chronological_order(events: _Events) -> NDArray[np.int64]:
    """Per customer, oldest first; ties keep generation order (the same in any chunk)."""
    return np.lexsort((np.arange(len(events.age)), -events.age, events.customer)).astype(np.int64)


def _chronological(events: _Events) -> _Events:
    return events.take(_chronological_order(events))


def _positions(customer: NDArray[np.int64], customers: int) -> NDArray[np.int64]:
    """Each event's place in its customer's run (events grouped by customer)."""
    counts = np.bincount(customer, minlength=customers)
    starts = np.cumsum(counts) - counts
    return np.arange(len(customer), dtype=np.int64) - starts[customer]


def _nullable(values: NDArray[np.float64]) -> list[float | None]:
    """Floats with NaN as None (SQL NULL)."""
    boxed = values.astype(object)
    boxed[np.isnan(values)] = None
    result: list[float | None] = boxed.tolist()
    return result


async def seed_in_chunks(
    session: Session,
    config: DemoShopConfig,
    *,
    chunk: int,
    secret_key: str,
    now: datetime,
    notify: ProgressCallback,
) -> SeedReport:
    """Generate and write the shop ``chunk`` customers at a time (see the module
    docstring); the caller has checked the config, ``now`` and that the store is empty.

    Raises:
        InvalidInputError: too few interactions for the customers' behaviour groups
            (before anything is written).
    """
    rng = np.random.default_rng(config.seed)
    catalogue = _build_catalogue(rng, config.products)
    groups = group_codes(rng, config.customers)
    draws = Draws(config.seed)
    table = _GroupTable.build()
    plans = _Planner(draws, table, catalogue, groups).plan(config.interactions)
    drawer = _ChunkDrawer(draws, plans, table, catalogue, config.days * _DAY)

    await bulk_insert_products(
        session, catalogue.rows, lambda done, total: notify("products", done, total)
    )
    # The store was empty: every stored product is one of ours.
    ids_by_sku = await product_ids(session)
    product_id = np.array([ids_by_sku[row["sku"]] for row in catalogue.rows], dtype=np.int64)
    first_id = await reserve_ids(session, "customers", config.customers)

    n = config.customers
    spend = np.zeros(n)
    written = tags = 0
    expected = config.interactions
    notify("customers", 0, n)
    notify("interactions", 0, expected)
    for start in range(0, n, chunk):
        drawn = drawer.draw(start, min(n, start + chunk))
        spend[start : start + len(drawn.spend)] = drawn.spend
        await load_records(
            session,
            "customers",
            _CUSTOMER_COLUMNS,
            _customer_records(drawn, plans, first_id, secret_key, now),
        )
        notify("customers", start + len(drawn.spend), n)
        records = _interaction_records(drawn, config.seed, first_id, product_id, now)
        await load_records(session, "interactions", _INTERACTION_COLUMNS, records)
        written += len(records)
        notify("interactions", written, max(expected, written))
        customer, category, weight = drawn.interest
        interest = [
            (first_id + start + c, f"interested_in_{catalogue.categories[k]}", TAG_SOURCE, w, now)
            for c, k, w in zip(customer.tolist(), category.tolist(), weight.tolist(), strict=True)
        ]
        await load_records(session, "customer_tags", _TAG_COLUMNS, interest)
        tags += len(interest)
        notify("tags", tags, tags)
    notify("interactions", written, written)
    # Top 10 % of all customers by spend, ties to the earlier customer; never a non-buyer.
    ranked = np.lexsort((np.arange(n), -spend))[: math.ceil(n * _PREMIUM_SHARE)]
    premium = [
        (first_id + int(c), "premium", TAG_SOURCE, 1.0, now)
        for c in ranked.tolist()
        if spend[c] > 0
    ]
    await load_records(session, "customer_tags", _TAG_COLUMNS, premium)
    tags += len(premium)
    notify("tags", tags, tags)
    await refresh_statistics(session)
    counts = np.bincount(groups, minlength=len(_GROUPS))
    report = SeedReport(
        customers=n,
        products=len(catalogue.rows),
        interactions=written,
        tags=tags,
        groups={name: int(counts[i]) for i, name in enumerate(_GROUPS)},
        funnel_share=plans.funnel_share,
    )
    logger.info(
        "seeded demo shop in chunks of %d: %d customers, %d products, %d interactions, "
        "%d tags, funnel share %.2f",
        chunk, report.customers, report.products, report.interactions, report.tags,
        report.funnel_share,
    )  # fmt: skip
    return report


def _customer_records(
    drawn: _Chunk, plans: _Plans, first_id: int, secret_key: str, now: datetime
) -> list[tuple[Any, ...]]:
    start, n = drawn.start, len(drawn.spend)
    countries = list(_COUNTRIES)
    cities = [city for _, names in _COUNTRIES.values() for city in names]
    city_offset = np.cumsum([0] + [len(names) for _, names in _COUNTRIES.values()])[:-1]
    index = range(start, start + n)
    return list(
        zip(
            range(first_id + start, first_id + start + n),
            [customer_key(secret_key, external_id(i)) for i in index],
            [now - timedelta(seconds=s) for s in drawn.signed_up.tolist()],
            drawn.age.tolist(),
            np.array(_GENDERS, dtype=object)[drawn.gender].tolist(),
            np.array(countries, dtype=object)[drawn.country].tolist(),
            np.array(cities, dtype=object)[city_offset[drawn.country] + drawn.city].tolist(),
            np.array(_TIERS, dtype=object)[plans.tier[start : start + n]].tolist(),
            np.array(_GROUPS, dtype=object)[plans.group[start : start + n]].tolist(),
            np.round(drawn.probability, 6).tolist(),
            strict=True,
        )
    )


def _interaction_records(
    drawn: _Chunk, seed: int, first_id: int, product_id: NDArray[np.int64], now: datetime
) -> list[tuple[Any, ...]]:
    """The chunk's interactions, written oldest first; event ids name the customer and
    the event's place in their history, so they do not depend on the chunking."""
    events = drawn.events
    order = np.lexsort((drawn.position, events.customer, -events.age))
    customer = events.customer[order] + drawn.start
    position = drawn.position[order]
    product = events.product[order]
    products: list[int | None] = product_id[np.maximum(product, 0)].tolist()
    for missing in np.flatnonzero(product < 0).tolist():
        products[missing] = None
    return list(
        zip(
            [
                f"seed-{seed}-{c + 1:07d}-{k + 1:04d}"
                for c, k in zip(customer.tolist(), position.tolist(), strict=True)
            ],
            (customer + first_id).tolist(),
            products,
            np.array(INTERACTION_KINDS, dtype=object)[events.kind[order]].tolist(),
            _nullable(events.value[order]),
            events.quantity[order].tolist(),
            _nullable(events.price[order]),
            np.array(_CHANNELS, dtype=object)[drawn.channel[order]].tolist(),
            np.array(_DEVICES, dtype=object)[drawn.device[order]].tolist(),
            [now - timedelta(seconds=s) for s in events.age[order].tolist()],
            strict=True,
        )
    )
