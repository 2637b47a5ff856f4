"""A deterministic synthetic e-commerce shop: catalogue, customers, behaviour and tags.

Every customer is drawn from one behaviour group named after the archetype segment
(:mod:`rasa_personalize.segments.archetypes`) that their generated history earns, and the group is
kept in ``customers.synthetic_group`` so segmentation can be scored against the truth.
Everything comes from one ``numpy`` generator seeded by the config, plus ``now``: the same
seed and ``now`` give the same rows, and nothing here reads the clock.

The shop is built in memory first (so a bad config fails before anything is written) and
then bulk-inserted in chunks. Shops of ``CHUNKED_FROM_CUSTOMERS`` customers or more (or
with ``chunk_customers`` set) come from :mod:`rasa_personalize.demo.chunked` instead:
the same catalogue, groups and behaviour, generated and written a chunk of customers at
a time. Profile metrics are not computed here: the caller runs
:func:`rasa_personalize.store.repository.rebuild_profile_metrics` afterwards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import INTERACTION_KINDS
from rasa_personalize.store.seeding import (
    ChunkProgress,
    CustomerRow,
    InteractionRow,
    ProductRow,
    TagRow,
    bulk_insert_products,
    count_customers,
    count_products,
    customer_ids,
    load_rows,
    product_ids,
    refresh_statistics,
)
from rasa_personalize.store.types import Session

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]

# Target share of each behaviour group; the names are the archetype segment names.
GROUP_SHARES: Final[Mapping[str, float]] = {
    "price_sensitive": 0.20,
    "loyal": 0.12,
    "frequent_buyer": 0.18,
    "at_risk": 0.15,
    "browser": 0.20,
    "new_visitor": 0.15,
}

# The hand-made customers a demo talks to, by external id, with their group.
DEMO_CUSTOMERS: Final[Mapping[str, str]] = {
    "demo-bargain": "price_sensitive",
    "demo-loyal": "loyal",
    "demo-new": "new_visitor",
    "demo-lapsed": "at_risk",
}

MIN_CUSTOMERS: Final = 10
# From this many customers on, the shop is generated and written in chunks
# (:mod:`rasa_personalize.demo.chunked`), of ``CHUNK_CUSTOMERS`` customers unless the
# config says otherwise; below it, in one piece as always.
CHUNKED_FROM_CUSTOMERS: Final = 100_000
CHUNK_CUSTOMERS: Final = 20_000
MIN_PRODUCTS: Final = 8
# Lapsed customers need history older than ``_LAPSED_QUIET_S`` inside the window.
MIN_DAYS: Final = 120
TAG_SOURCE: Final = "seed"

_MINUTE: Final = 60
_HOUR: Final = 3_600
_DAY: Final = 86_400
# Well past the archetype rule's 90 days, so lapsed customers stay at_risk when segments
# are computed a few days after seeding.
_LAPSED_QUIET_S: Final = 100 * _DAY
# Active customers bought this recently at least once: far inside the 90-day rule.
_RECENT_PURCHASE_S: Final = 45 * _DAY
# Active customers end with a short browsing session in their favourite category.
_RECENT_SESSION_S: Final = 21 * _DAY
# A purchase is viewed up to two days before; three days keeps that view inside the window.
_FUNNEL_LEAD_S: Final = 3 * _DAY
_TAG_WINDOW_S: Final = 30 * _DAY
_TAG_MIN_VIEWS: Final = 3
_PREMIUM_SHARE: Final = 0.10
# Share of a customer's attention that goes to their preferred categories.
_PREFERRED_SHARE: Final = 0.8
_PREFERENCE_SPLIT: Final = (0.6, 0.3, 0.1)
# Discounted purchases are paid at 70-85 % of list price, well below the store's 95 % line.
_DISCOUNT_RANGE: Final = (0.70, 0.85)
_IN_STOCK_SHARE: Final = 0.9
_SEARCH_WITH_PRODUCT: Final = 0.6
_FEEDBACK_ON_PURCHASE: Final = 0.7
# Many purchases are "buy now" from the product page, without a cart event.
_CARTED_PURCHASE_SHARE: Final = 0.4
# Chance that a purchase with complements (``COMPLEMENTS``) brings one of them along: one
# of the customer's other purchases becomes that complement, bought within two days.
_COMPLEMENT_RATE: Final = 0.45
_COMPLEMENT_LAG_S: Final = 2 * _DAY
# Complementary purchases draw from a stream of their own, so the rest of the shop is
# drawn exactly as before they existed.
_COMPLEMENT_STREAM: Final = 1
# The last week before ``now`` is the label window of the purchase-propensity model
# (``personalize propensity train``): purchases drawn into it move a week back, and each
# customer then buys in it with a probability of their own (:func:`purchase_probability`,
# kept in ``customers.synthetic_purchase_probability``), so the model has a truth to meet.
PURCHASE_WEEK_S: Final = 7 * _DAY
# The week's purchases draw from a stream of their own, like the complements.
_PURCHASE_WEEK_STREAM: Final = 2
# The youngest age that is still before the week (the week starts at ``now`` - 7 days).
_BEFORE_WEEK_S: Final = PURCHASE_WEEK_S + 1

_KIND_CODE: Final[Mapping[str, int]] = {kind: code for code, kind in enumerate(INTERACTION_KINDS)}
_VIEW, _SEARCH, _CART, _PURCHASE, _CHAT_CLICK, _FEEDBACK = (
    _KIND_CODE[kind] for kind in ("view", "search", "cart", "purchase", "chat_click", "feedback")
)
_CHANNELS: Final = ("web", "app", "chat")
_CHANNEL_SHARES: Final = (0.55, 0.35, 0.10)
_DEVICES: Final = ("mobile", "desktop", "tablet")
_DEVICE_SHARES: Final = (0.55, 0.35, 0.10)
_GENDERS: Final = ("female", "male", "non_binary")
_GENDER_SHARES: Final = (0.50, 0.47, 0.03)
_COUNTRIES: Final[Mapping[str, tuple[float, tuple[str, ...]]]] = {
    "Germany": (0.22, ("Berlin", "Munich", "Hamburg", "Cologne")),
    "United Kingdom": (0.17, ("London", "Manchester", "Edinburgh", "Bristol")),
    "United States": (0.18, ("New York", "Chicago", "Austin", "Seattle", "Denver")),
    "France": (0.15, ("Paris", "Lyon", "Marseille", "Toulouse")),
    "Spain": (0.10, ("Madrid", "Barcelona", "Valencia", "Seville")),
    "Italy": (0.10, ("Rome", "Milan", "Turin", "Naples")),
    "Netherlands": (0.08, ("Amsterdam", "Rotterdam", "Utrecht")),
}
_COLORS: Final = ("black", "white", "navy", "grey", "red", "green", "blue", "beige", "silver")


@dataclass(frozen=True)
class DemoShopConfig:
    """Size and seed of the synthetic shop."""

    customers: int = 2000
    products: int = 300
    interactions: int = 50_000  # approximate target total
    days: int = 180  # history window ending at `now`
    seed: int = 42
    # Customers per chunk of the chunked generator (any size gives the same shop); None:
    # chunked only from CHUNKED_FROM_CUSTOMERS customers on (see the module docstring).
    chunk_customers: int | None = None

    def chunk_size(self) -> int | None:
        """Customers per chunk, or None when the shop is generated in one piece."""
        if self.chunk_customers is not None:
            return self.chunk_customers
        return CHUNK_CUSTOMERS if self.customers >= CHUNKED_FROM_CUSTOMERS else None


@dataclass(frozen=True)
class SeedReport:
    """What :func:`seed_demo_shop` wrote."""

    customers: int
    products: int
    interactions: int
    tags: int
    groups: Mapping[str, int]  # true group name -> customer count
    # Share of purchases that come with their product view (and cart): below 1 only when
    # a chunked shop has fewer interactions than full funnels need.
    funnel_share: float = 1.0


@dataclass(frozen=True)
class _CategorySpec:
    """How one category's products are named, priced and described."""

    name: str
    code: str
    weight: float  # share of the catalogue and of shoppers' attention
    median_price: float
    price_spread: float  # sigma of the log price
    brands: tuple[str, ...]
    adjectives: tuple[str, ...]
    # (noun, attribute kind, price factor): a tent costs more than a headlamp.
    nouns: tuple[tuple[str, str, float], ...]
    pitches: tuple[str, ...]


# Ordered so that the first eight (the minimum catalogue) hold the named customers' tastes.
CATEGORY_SPECS: Final[tuple[_CategorySpec, ...]] = (
    _CategorySpec(
        "electronics", "ELE", 0.14, 160.0, 0.55,
        ("Voltix", "Auralis", "Nexon", "Lumetra"),
        ("Pro", "Ultra", "Smart", "Wireless", "Compact"),
        (
            ("Noise-Cancelling Headphones", "device", 1.4), ("Bluetooth Speaker", "device", 0.7),
            ("Smartwatch", "device", 1.3), ("4K Action Camera", "device", 1.6),
            ("Wireless Earbuds", "device", 0.9), ("E-Reader", "device", 0.8),
            ("Portable Charger", "device", 0.25), ("10-inch Tablet", "device", 2.0),
        ),
        ("crisp sound and a battery that lasts all week", "pairs in seconds with any phone",
         "a premium gadget built for everyday use"),
    ),
    _CategorySpec(
        "running", "RUN", 0.10, 60.0, 0.45,
        ("Stride", "Pacer", "Kinetic", "Aerolite"),
        ("Pro", "Trail", "Tempo", "Lite", "Elite"),
        (
            ("Trail Running Shoes", "footwear", 2.0), ("Road Running Shoes", "footwear", 1.8),
            ("Running Jacket", "apparel", 1.4), ("Compression Tights", "apparel", 0.9),
            ("Running Socks 3-Pack", "apparel", 0.3), ("Hydration Vest", "gear", 1.1),
            ("GPS Running Watch", "device", 3.5), ("Running Cap", "apparel", 0.4),
        ),
        ("light cushioning for daily miles on road and trail",
         "breathable and made for race day", "grip and comfort for long runs"),
    ),
    _CategorySpec(
        "outdoor", "OUT", 0.09, 80.0, 0.55,
        ("Summit", "Northwild", "Ridgeline", "Cairn"),
        ("Alpine", "Ultralight", "All-Season", "Expedition", "Trek"),
        (
            ("2-Person Tent", "gear", 2.5), ("Sleeping Bag", "gear", 1.6),
            ("Hiking Backpack 40L", "gear", 1.4), ("Trekking Poles", "gear", 0.7),
            ("Headlamp", "gear", 0.4), ("Hiking Boots", "footwear", 1.8),
            ("Rain Shell Jacket", "apparel", 1.7), ("Camping Stove", "gear", 0.8),
        ),
        ("ready for weekends in the mountains", "tough enough for wind and rain",
         "packs small and weighs little on the trail"),
    ),
    _CategorySpec(
        "home", "HOM", 0.11, 45.0, 0.55,
        ("Hearth", "Nordby", "Casa Lumen", "Willow & Co"),
        ("Cozy", "Modern", "Classic", "Minimalist", "Rustic"),
        (
            ("Throw Blanket", "textile", 0.8), ("Table Lamp", "decor", 1.1),
            ("Scented Candle Set", "decor", 0.5), ("Bed Linen Set", "textile", 1.5),
            ("Wall Clock", "decor", 0.7), ("Storage Baskets Set", "decor", 0.6),
            ("Area Rug", "textile", 2.5),
        ),
        ("makes any room feel warm and calm", "simple design that fits every interior",
         "soft materials for slow evenings at home"),
    ),
    _CategorySpec(
        "kitchen", "KIT", 0.10, 50.0, 0.65,
        ("Copperleaf", "Chefline", "Brava", "Oakmill"),
        ("Pro", "Nonstick", "Stainless", "Classic", "Compact"),
        (
            ("Chef's Knife", "cookware", 1.0), ("Frying Pan 28cm", "cookware", 0.9),
            ("Espresso Machine", "device", 5.0), ("Blender", "device", 1.8),
            ("Cutting Board", "woodware", 0.5), ("Cookware Set", "cookware", 3.0),
            ("Electric Kettle", "device", 0.8),
        ),
        ("built for home cooks who care about good food", "easy to clean and made to last",
         "heats fast and cooks evenly"),
    ),
    _CategorySpec(
        "books", "BOO", 0.09, 16.0, 0.30,
        ("Penwright Press", "Lanternhouse", "Bluequill", "Meridian Books"),
        ("Illustrated", "Complete", "Pocket", "Collector's", "New"),
        (
            ("Guide to Trail Running", "book", 1.0), ("Mediterranean Cookbook", "book", 1.5),
            ("Science Fiction Novel", "book", 0.8), ("History of the Alps", "book", 1.3),
            ("Mystery Thriller", "book", 0.8), ("Children's Picture Book", "book", 0.9),
            ("Python Programming Handbook", "book", 2.0),
        ),
        ("a page-turner readers recommend to friends", "beautifully printed and bound",
         "the book to read this season"),
    ),
    _CategorySpec(
        "beauty", "BEA", 0.09, 24.0, 0.45,
        ("Lumiere", "Velvetine", "Aurore", "Pureleaf"),
        ("Hydrating", "Radiance", "Gentle", "Daily", "Revitalizing"),
        (
            ("Face Serum", "care", 1.4), ("Moisturizer", "care", 1.0),
            ("Sunscreen SPF 50", "care", 0.8), ("Shampoo", "care", 0.5),
            ("Lip Balm Set", "care", 0.4), ("Eau de Parfum", "care", 2.8),
        ),
        ("dermatologist tested for sensitive skin", "with natural ingredients and no parabens",
         "a small daily ritual that feels like a spa"),
    ),
    _CategorySpec(
        "fashion", "FAS", 0.14, 55.0, 0.55,
        ("Marlow", "Indigo Lane", "Atelier Nove", "Fenwick"),
        ("Slim-Fit", "Classic", "Oversized", "Linen", "Wool"),
        (
            ("Shirt", "apparel", 0.8), ("Jeans", "apparel", 1.2), ("Sweater", "apparel", 1.2),
            ("Dress", "apparel", 1.4), ("Coat", "apparel", 3.0),
            ("Chino Trousers", "apparel", 1.0), ("Leather Belt", "apparel", 0.6),
        ),
        ("a wardrobe staple that goes with everything", "tailored fit in soft fabric",
         "timeless style for work and weekend"),
    ),
    _CategorySpec(
        "toys", "TOY", 0.07, 28.0, 0.55,
        ("Brickly", "Wonderbox", "Tinker & Toad", "Playnest"),
        ("Deluxe", "Junior", "Creative", "Classic", "Mega"),
        (
            ("Building Block Set", "toy", 1.5), ("1000-Piece Puzzle", "toy", 0.7),
            ("Remote Control Car", "toy", 1.8), ("Plush Bear", "toy", 0.6),
            ("Family Board Game", "toy", 1.0), ("Science Kit", "toy", 1.2),
        ),
        ("hours of play for curious kids", "safety tested and built to be played with",
         "a gift children remember"),
    ),
    _CategorySpec(
        "sports", "SPO", 0.07, 42.0, 0.60,
        ("Apex", "Velocity", "Corehold", "Ironline"),
        ("Pro", "Training", "Competition", "Adjustable", "Lite"),
        (
            ("Yoga Mat", "gear", 0.7), ("Adjustable Dumbbells", "gear", 3.0),
            ("Tennis Racket", "gear", 2.2), ("Football", "gear", 0.6),
            ("Cycling Helmet", "gear", 1.6), ("Resistance Bands Set", "gear", 0.5),
            ("Jump Rope", "gear", 0.3),
        ),
        ("for training at home or at the club", "durable gear for every workout",
         "helps you reach your next personal best"),
    ),
)  # fmt: skip


# Product types (nouns of ``CATEGORY_SPECS``) that shoppers buy with another type of the
# same category: running shoes with socks or tights, headphones with a charger. The
# relevance benchmark and the recommender's "bought together" strategy rely on them.
COMPLEMENTS: Final[Mapping[str, tuple[str, ...]]] = {
    "Noise-Cancelling Headphones": ("Portable Charger",),
    "Wireless Earbuds": ("Portable Charger",),
    "Smartwatch": ("Portable Charger",),
    "4K Action Camera": ("Portable Charger",),
    "10-inch Tablet": ("Portable Charger",),
    "Trail Running Shoes": ("Running Socks 3-Pack", "Compression Tights"),
    "Road Running Shoes": ("Running Socks 3-Pack", "Compression Tights"),
    "Running Jacket": ("Running Cap",),
    "GPS Running Watch": ("Hydration Vest",),
    "2-Person Tent": ("Sleeping Bag", "Camping Stove"),
    "Hiking Boots": ("Trekking Poles",),
    "Hiking Backpack 40L": ("Headlamp",),
    "Bed Linen Set": ("Throw Blanket",),
    "Table Lamp": ("Scented Candle Set",),
    "Chef's Knife": ("Cutting Board",),
    "Cookware Set": ("Chef's Knife",),
    "Face Serum": ("Moisturizer",),
    "Sunscreen SPF 50": ("Lip Balm Set",),
    "Jeans": ("Leather Belt",),
    "Shirt": ("Chino Trousers",),
    "Coat": ("Sweater",),
    "Adjustable Dumbbells": ("Resistance Bands Set",),
    "Yoga Mat": ("Resistance Bands Set",),
}


def product_type(title: str) -> str | None:
    """The noun of ``CATEGORY_SPECS`` a demo product's title ends with (its type), if any.

    Titles are "brand adjective noun", with " (Series n)" beyond every combination.
    """
    base = title.split(" (Series ", 1)[0]
    for spec in CATEGORY_SPECS:
        for noun, _, _ in spec.nouns:
            if base.endswith(" " + noun):
                return noun
    return None


@dataclass(frozen=True)
class _Behaviour:
    """How one group shops. Tuned so the archetype rule gives the group back."""

    tiers: Mapping[str, float]
    purchases: tuple[int, int]  # inclusive range
    discount_rate: float  # chance that one purchase is discounted
    discount_share: tuple[float, float]  # clamp on the share of discounted purchases
    price_bias: float  # exponent on price when picking products: < 0 cheap, > 0 dear
    activity: float  # relative number of browsing events
    kind_mix: Mapping[str, float]  # kinds of browsing events
    recent_views: tuple[int, int]  # views in the closing session, inclusive range
    positive_feedback: float
    lapsed: bool = False


_BEHAVIOURS: Final[Mapping[str, _Behaviour]] = {
    # Cheap items, mostly bought on discount (>= 60 %), lots of comparing.
    "price_sensitive": _Behaviour(
        tiers={"none": 0.7, "silver": 0.3},
        purchases=(3, 9),
        discount_rate=0.8,
        discount_share=(0.6, 1.0),
        price_bias=-1.0,
        activity=1.1,
        kind_mix={"view": 0.65, "search": 0.20, "cart": 0.05, "chat_click": 0.07, "feedback": 0.03},
        recent_views=(2, 6),
        positive_feedback=0.7,
    ),
    # Premium tier, many full-price purchases of dearer items.
    "loyal": _Behaviour(
        tiers={"gold": 0.7, "platinum": 0.3},
        purchases=(8, 14),
        discount_rate=0.05,
        discount_share=(0.0, 1.0),
        price_bias=0.8,
        activity=1.4,
        kind_mix={"view": 0.60, "search": 0.12, "cart": 0.08, "chat_click": 0.12, "feedback": 0.08},
        recent_views=(2, 6),
        positive_feedback=0.85,
    ),
    # Regular tier, five or more purchases; discounts stay a minority (<= 30 %).
    "frequent_buyer": _Behaviour(
        tiers={"none": 0.45, "silver": 0.55},
        purchases=(5, 9),
        discount_rate=0.15,
        discount_share=(0.0, 0.3),
        price_bias=0.0,
        activity=1.0,
        kind_mix={"view": 0.64, "search": 0.16, "cart": 0.06, "chat_click": 0.09, "feedback": 0.05},
        recent_views=(2, 6),
        positive_feedback=0.8,
    ),
    # Bought in the past; quiet for the last 100 days.
    "at_risk": _Behaviour(
        tiers={"none": 0.5, "silver": 0.3, "gold": 0.2},
        purchases=(1, 4),
        discount_rate=0.3,
        discount_share=(0.0, 1.0),
        price_bias=0.0,
        activity=0.5,
        kind_mix={"view": 0.66, "search": 0.18, "cart": 0.06, "chat_click": 0.06, "feedback": 0.04},
        recent_views=(0, 0),
        positive_feedback=0.55,
        lapsed=True,
    ),
    # Many views and searches, at most one purchase, at full price (a single discounted
    # one would make the discounted share 100 %).
    "browser": _Behaviour(
        tiers={"none": 0.85, "silver": 0.15},
        purchases=(0, 1),
        discount_rate=0.0,
        discount_share=(0.0, 0.0),
        price_bias=0.0,
        activity=1.0,
        kind_mix={"view": 0.64, "search": 0.26, "cart": 0.04, "chat_click": 0.05, "feedback": 0.01},
        recent_views=(2, 6),
        positive_feedback=0.75,
    ),
    # Just signed up: no history at all.
    "new_visitor": _Behaviour(
        tiers={"none": 1.0},
        purchases=(0, 0),
        discount_rate=0.0,
        discount_share=(0.0, 0.0),
        price_bias=0.0,
        activity=0.0,
        kind_mix={"view": 1.0},
        recent_views=(0, 0),
        positive_feedback=0.8,
    ),
}


@dataclass(frozen=True)
class _Persona:
    """A named demo customer: fixed where a demo depends on it, drawn like others elsewhere."""

    tier: str
    categories: tuple[str, ...]
    purchases: int = 0
    discounted: int = 0
    activity: float = 0.0
    recent_views: int = 0


_PERSONAS: Final[Mapping[str, _Persona]] = {
    "demo-bargain": _Persona(
        "none", ("running",), purchases=12, discounted=10, activity=2.0, recent_views=5
    ),
    "demo-loyal": _Persona(
        "gold", ("electronics",), purchases=14, discounted=0, activity=2.0, recent_views=4
    ),
    "demo-new": _Persona("none", ()),
    "demo-lapsed": _Persona("silver", ("outdoor",), purchases=4, discounted=1, activity=1.0),
}


@dataclass(frozen=True, eq=False)
class _Catalogue:
    """Product rows (without ids) and the arrays that shoppers pick from."""

    rows: list[ProductRow]
    categories: tuple[str, ...]
    category_weights: NDArray[np.float64]  # per category
    category_of: NDArray[np.int64]  # per product: index into ``categories``
    prices: NDArray[np.float64]
    popularity: NDArray[np.float64]
    nouns: NDArray[np.str_]  # per product: its type, a noun of its category spec

    def complements(self, product: int) -> NDArray[np.int64]:
        """Products of the same category whose type complements this product's."""
        wanted = COMPLEMENTS.get(str(self.nouns[product]), ())
        if not wanted:
            return np.empty(0, dtype=np.int64)
        same = self.category_of == self.category_of[product]
        rows = np.flatnonzero(same & np.isin(self.nouns, wanted))
        return rows.astype(np.int64)

    def within_category(self, price_bias: float) -> NDArray[np.float64]:
        """P(product | its category) for shoppers with this price bias."""
        weights = self.popularity * self.prices**price_bias
        totals = np.bincount(self.category_of, weights=weights, minlength=len(self.categories))
        return np.asarray(weights / totals[self.category_of], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class _CustomerPlan:
    """What one customer will do, decided before any event is drawn."""

    external_id: str
    group: str
    tier: str
    category_weights: NDArray[np.float64]  # P(category) of this customer's attention
    top_category: int
    purchases: int
    discounted: int
    carts: int  # purchases that went through the cart first
    recent_views: int
    activity: float

    @property
    def minimum_events(self) -> int:
        """Events the group's behaviour needs: each purchase with its view (and cart)."""
        return 2 * self.purchases + self.carts + self.recent_views


@dataclass(frozen=True, eq=False)
class _Events:
    """Interactions as parallel arrays; ``age`` is seconds before ``now``."""

    customer: NDArray[np.int64]
    age: NDArray[np.int64]
    kind: NDArray[np.int64]
    product: NDArray[np.int64]  # -1: none
    price: NDArray[np.float64]  # nan: none
    quantity: NDArray[np.int64]
    value: NDArray[np.float64]  # nan: none

    @classmethod
    def concat(cls, parts: Sequence[_Events]) -> _Events:
        """All parts, in order."""
        return cls(
            customer=np.concatenate([p.customer for p in parts]),
            age=np.concatenate([p.age for p in parts]),
            kind=np.concatenate([p.kind for p in parts]),
            product=np.concatenate([p.product for p in parts]),
            price=np.concatenate([p.price for p in parts]),
            quantity=np.concatenate([p.quantity for p in parts]),
            value=np.concatenate([p.value for p in parts]),
        )

    def take(self, order: NDArray[np.int64]) -> _Events:
        """The events at these positions."""
        return _Events(
            self.customer[order], self.age[order], self.kind[order], self.product[order],
            self.price[order], self.quantity[order], self.value[order],
        )  # fmt: skip


def _block(
    customer: int,
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
        customer=np.full(size, customer, dtype=np.int64),
        age=age.astype(np.int64),
        kind=np.broadcast_to(np.asarray(kind, dtype=np.int64), (size,)).copy(),
        product=product.astype(np.int64),
        price=price if price is not None else np.full(size, np.nan),
        quantity=quantity if quantity is not None else np.ones(size, dtype=np.int64),
        value=value if value is not None else np.full(size, np.nan),
    )


@dataclass(frozen=True, eq=False)
class _Shop:
    """The whole generated shop, before database ids exist."""

    catalogue: _Catalogue
    plans: list[_CustomerPlan]
    customer_rows: list[dict[str, Any]]  # without ids
    events: _Events  # chronological
    channel: NDArray[np.int64]  # per event, index into _CHANNELS
    device: NDArray[np.int64]  # per event, index into _DEVICES
    tags: list[tuple[int, str, float]]  # (customer index, tag, weight)


def validate_config(config: DemoShopConfig) -> None:
    """Check that the config can produce every group, the named customers included.

    Raises:
        InvalidInputError: a count or the window is out of range; the message says which.
    """
    checks = (
        (config.customers >= MIN_CUSTOMERS,
         f"customers must be at least {MIN_CUSTOMERS} so that every behaviour group "
         f"and the {len(DEMO_CUSTOMERS)} named demo customers exist (got {config.customers})"),
        (config.products >= MIN_PRODUCTS,
         f"products must be at least {MIN_PRODUCTS}: one per core category "
         f"(got {config.products})"),
        (config.interactions > 0, f"interactions must be positive (got {config.interactions})"),
        (config.days >= MIN_DAYS,
         f"days must be at least {MIN_DAYS} so lapsed customers can have history older "
         f"than {_LAPSED_QUIET_S // _DAY} days (got {config.days})"),
        (config.seed >= 0, f"seed must be a non-negative integer (got {config.seed})"),
        (config.chunk_customers is None or config.chunk_customers >= 1,
         f"chunk_customers must be at least 1 (got {config.chunk_customers})"),
    )  # fmt: skip
    for ok, message in checks:
        if not ok:
            raise InvalidInputError(f"demo shop config: {message}")


async def seed_demo_shop(
    session: Session,
    config: DemoShopConfig,
    *,
    secret_key: str,
    now: datetime,
    progress: ProgressCallback | None = None,
) -> SeedReport:
    """Fill an empty store with a synthetic shop: products, customers, interactions, tags.

    Args:
        session: A session inside the caller's transaction; nothing is committed here.
        config: Size and seed; the same config and ``now`` give identical rows.
        secret_key: The HMAC key of customer keys (raw external ids are never stored).
        now: The end of the history window, timezone-aware.
        progress: Called as ``progress(stage, done, total)`` while rows are written.

    Raises:
        InvalidInputError: bad config, naive ``now``, empty secret, or customers or
            products already in the store.
    """
    validate_config(config)
    if now.tzinfo is None:
        raise InvalidInputError("demo shop: now must be timezone-aware (UTC)")
    if not secret_key:
        raise InvalidInputError("demo shop: the secret key for customer keys is empty")
    for table, count_rows in (("customers", count_customers), ("products", count_products)):
        if await count_rows(session):
            raise InvalidInputError(
                f"demo shop: the store already holds {table}; "
                "seed only an empty store (reset it first)"
            )

    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    chunk = config.chunk_size()
    if chunk is not None:
        from rasa_personalize.demo.chunked import (  # noqa: PLC0415  # it imports this module
            seed_in_chunks,
        )

        return await seed_in_chunks(
            session, config, chunk=chunk, secret_key=secret_key, now=now, notify=notify
        )
    shop = _generate_shop(config)

    await bulk_insert_products(session, shop.catalogue.rows, _stage(notify, "products"))
    # The store was empty: every stored product is one of ours.
    ids_by_sku = await product_ids(session)
    ids_of_products = [ids_by_sku[row["sku"]] for row in shop.catalogue.rows]

    customer_rows: list[CustomerRow] = [
        {
            "customer_key": customer_key(secret_key, plan.external_id),
            "created_at": now - timedelta(seconds=row["created_at"]),
            "age": row["age"],
            "gender": row["gender"],
            "country": row["country"],
            "city": row["city"],
            "loyalty_tier": row["loyalty_tier"],
            "synthetic_group": row["synthetic_group"],
            "synthetic_purchase_probability": row["synthetic_purchase_probability"],
        }
        for plan, row in zip(shop.plans, shop.customer_rows, strict=True)
    ]
    await load_rows(session, "customers", customer_rows, _stage(notify, "customers"))
    ids_by_key = await customer_ids(session)
    ids_of_customers = [ids_by_key[row["customer_key"]] for row in customer_rows]

    interaction_rows = _interaction_rows(shop, config.seed, now, ids_of_customers, ids_of_products)
    await load_rows(session, "interactions", interaction_rows, _stage(notify, "interactions"))

    tag_rows: list[TagRow] = [
        {
            "customer_id": ids_of_customers[index],
            "tag": tag,
            "source": TAG_SOURCE,
            "weight": weight,
            "updated_at": now,
        }
        for index, tag, weight in shop.tags
    ]
    await load_rows(session, "customer_tags", tag_rows, _stage(notify, "tags"))
    await refresh_statistics(session)

    groups = dict.fromkeys(GROUP_SHARES, 0)
    for plan in shop.plans:
        groups[plan.group] += 1
    report = SeedReport(
        customers=len(customer_rows),
        products=len(ids_of_products),
        interactions=len(interaction_rows),
        tags=len(tag_rows),
        groups=groups,
    )
    logger.info(
        "seeded demo shop: %d customers, %d products, %d interactions, %d tags",
        report.customers, report.products, report.interactions, report.tags,
    )  # fmt: skip
    return report


def _stage(notify: ProgressCallback, stage: str) -> ChunkProgress:
    """The store's per-chunk progress, reported as ``stage``."""
    return lambda done, total: notify(stage, done, total)


def _interaction_rows(
    shop: _Shop, seed: int, now: datetime, ids_of_customers: list[int], ids_of_products: list[int]
) -> list[InteractionRow]:
    events = shop.events
    rows: list[InteractionRow] = []
    for n in range(len(events.age)):
        product = int(events.product[n])
        price = float(events.price[n])
        value = float(events.value[n])
        rows.append(
            {
                "event_id": f"seed-{seed}-{n + 1:07d}",
                "customer_id": ids_of_customers[int(events.customer[n])],
                "product_id": ids_of_products[product] if product >= 0 else None,
                "kind": INTERACTION_KINDS[int(events.kind[n])],
                "value": None if math.isnan(value) else value,
                "quantity": int(events.quantity[n]),
                "price": None if math.isnan(price) else price,
                "channel": _CHANNELS[int(shop.channel[n])],
                "device": _DEVICES[int(shop.device[n])],
                "occurred_at": now - timedelta(seconds=int(events.age[n])),
            }
        )
    return rows


def _generate_shop(config: DemoShopConfig) -> _Shop:
    """The whole shop in memory, from the seed alone (ages are relative to ``now``)."""
    rng = np.random.default_rng(config.seed)
    companions = np.random.default_rng((config.seed, _COMPLEMENT_STREAM))
    catalogue = _build_catalogue(rng, config.products)
    groups = _assign_groups(rng, config.customers)
    plans = [_plan_customer(rng, external_id, group, catalogue) for external_id, group in groups]
    browsing = _allocate_browsing(config.interactions, plans)
    window_s = config.days * _DAY
    within = {
        bias: catalogue.within_category(bias)
        for bias in sorted({behaviour.price_bias for behaviour in _BEHAVIOURS.values()})
    }
    parts = [
        _customer_events(
            rng,
            index,
            companions=companions,
            plan=plan,
            catalogue=catalogue,
            within=within,
            window_s=window_s,
            browsing=int(extra),
        )
        for index, (plan, extra) in enumerate(zip(plans, browsing, strict=True))
    ]
    unsorted = _Events.concat(parts)
    # Chronological (oldest first); ties keep generation order, so ids are reproducible.
    order = np.lexsort((np.arange(len(unsorted.age)), unsorted.customer, -unsorted.age))
    events = unsorted.take(order.astype(np.int64))
    channel, device = _channels_and_devices(rng, events, len(plans))
    customer_rows = _customer_rows(rng, plans, events)
    week = np.random.default_rng((config.seed, _PURCHASE_WEEK_STREAM))
    probability = purchase_probability(plans, events, device)
    for row, value in zip(customer_rows, probability.tolist(), strict=True):
        row["synthetic_purchase_probability"] = round(value, 6)
    shop = (events, channel, device)
    events, channel, device = _purchase_week(
        week, probability, shop, plans=plans, catalogue=catalogue, within=within
    )
    tags = _tags(events, catalogue, len(plans))
    return _Shop(catalogue, plans, customer_rows, events, channel, device, tags)


# How each observable of a customer's history before the week moves the log-odds of a
# purchase in it (:func:`purchase_probability`).
_WEEK_BASE: Final = -4.2
_WEEK_RATE: Final = 1.0  # x log(1 + purchases per 30 days)
_WEEK_DUE: Final = 1.6  # x how close the time since the last purchase is to the usual gap
_WEEK_VIEWS: Final = 0.6  # x log(1 + product views in the 14 days before the week)
_WEEK_CART: Final = 0.9  # a cart event in those 14 days
_WEEK_TIER: Final = 0.25  # x tier (none 0 ... platinum 3)
_WEEK_MOBILE: Final = 1.2  # x (share of events on a mobile device - 1/2)
_WEEK_RECENT_S: Final = 14 * _DAY
_TIER_ORDINAL: Final[Mapping[str, int]] = {"none": 0, "silver": 1, "gold": 2, "platinum": 3}
# Lapsed customers stay quiet and new visitors have no history: neither buys in the week.
_QUIET_GROUPS: Final = frozenset({"at_risk", "new_visitor"})


def purchase_probability(
    plans: Sequence[_CustomerPlan], events: _Events, device: NDArray[np.int64]
) -> NDArray[np.float64]:
    """Each customer's true probability of a purchase in the last week before ``now``.

    A logistic function of what their history before that week shows, so that a model
    fed the same history can learn it: purchase rate, how "due" the next purchase is
    (time since the last one against their usual gap between purchases), recent views
    and carts, tier and device. Lapsed customers and new visitors get 0.
    """
    tier = np.array([_TIER_ORDINAL.get(plan.tier, 0) for plan in plans], dtype=np.float64)
    quiet = np.array([plan.group in _QUIET_GROUPS for plan in plans], dtype=bool)
    return probability_from_history(tier, quiet, events, device)


def probability_from_history(
    tier: NDArray[np.float64],
    quiet: NDArray[np.bool_],
    events: _Events,
    device: NDArray[np.int64],
) -> NDArray[np.float64]:
    """:func:`purchase_probability` from arrays: per customer (``events.customer`` indexes
    them) the tier's ordinal and whether the group is quiet; per event its device."""
    n = len(tier)
    before = events.age >= _BEFORE_WEEK_S
    customer, age, kind = events.customer[before], events.age[before], events.kind[before]
    bought = kind == _PURCHASE
    purchases = np.bincount(customer[bought], minlength=n).astype(np.float64)
    last = np.full(n, np.inf)
    np.minimum.at(last, customer[bought], age[bought].astype(np.float64))
    first = np.full(n, float(PURCHASE_WEEK_S))
    np.maximum.at(first, customer, age.astype(np.float64))
    recent = age < PURCHASE_WEEK_S + _WEEK_RECENT_S
    views = np.bincount(customer[recent & (kind == _VIEW)], minlength=n)
    carts = np.bincount(customer[recent & (kind == _CART)], minlength=n)
    seen = np.bincount(customer, minlength=n)
    mobile = np.bincount(
        customer[device[before] == _DEVICES.index("mobile")], minlength=n
    ) / np.maximum(seen, 1)
    tenure_days = np.maximum((first - PURCHASE_WEEK_S) / _DAY, 30.0)
    rate = purchases / tenure_days * 30.0
    gap = tenure_days / np.maximum(purchases, 1.0)
    with np.errstate(invalid="ignore"):
        since = (last - PURCHASE_WEEK_S) / _DAY
        due = np.where(purchases > 0, np.exp(-0.5 * ((since - gap) / (0.5 * gap)) ** 2), 0.0)
    logit = (
        _WEEK_BASE
        + _WEEK_RATE * np.log1p(rate)
        + _WEEK_DUE * due
        + _WEEK_VIEWS * np.log1p(views)
        + _WEEK_CART * (carts > 0)
        + _WEEK_TIER * tier
        + _WEEK_MOBILE * (np.where(seen > 0, mobile, 0.5) - 0.5)
    )
    probability = 1.0 / (1.0 + np.exp(-logit))
    return np.asarray(np.where(quiet, 0.0, probability), dtype=np.float64)


def _purchase_week(
    rng: np.random.Generator,
    probability: NDArray[np.float64],
    shop: tuple[_Events, NDArray[np.int64], NDArray[np.int64]],
    *,
    plans: Sequence[_CustomerPlan],
    catalogue: _Catalogue,
    within: Mapping[float, NDArray[np.float64]],
) -> tuple[_Events, NDArray[np.int64], NDArray[np.int64]]:
    """The events with the last week's purchases added: each customer buys one product
    there with their ``probability``, after viewing it earlier in the week."""
    events, channel, device = shop
    buyers = np.flatnonzero(rng.random(len(plans)) < probability)
    parts: list[_Events] = []
    for customer in buyers.tolist():
        plan = plans[customer]
        behaviour = _BEHAVIOURS[plan.group]
        product_p = within[behaviour.price_bias] * plan.category_weights[catalogue.category_of]
        product = np.array([rng.choice(len(product_p), p=product_p / product_p.sum())])
        bought_at = rng.integers(_HOUR, PURCHASE_WEEK_S - 10 * _MINUTE, size=1)
        viewed_at = bought_at + rng.integers(5 * _MINUTE, PURCHASE_WEEK_S - bought_at, size=1)
        # Bargain hunters keep their share of discounted purchases.
        discounted = plan.purchases and plan.discounted / plan.purchases >= 0.5
        list_price = catalogue.prices[product]
        paid = (
            np.round(list_price * rng.uniform(*_DISCOUNT_RANGE, 1), 2) if discounted else list_price
        )
        parts.append(_block(customer, bought_at, _PURCHASE, product, price=paid))
        parts.append(_block(customer, viewed_at, _VIEW, product))
    if not parts:
        return events, channel, device
    added = _Events.concat(parts)
    size = len(added.age)
    added_channel = rng.choice(len(_CHANNELS), size=size, p=_CHANNEL_SHARES).astype(np.int64)
    # The week's events come from the device the customer used last.
    latest = np.zeros(len(plans), dtype=np.int64)
    np.maximum.at(latest, events.customer, np.arange(len(events.age)))
    last_device = device[latest]
    merged = _Events.concat([events, added])
    order = np.lexsort((np.arange(len(merged.age)), merged.customer, -merged.age))
    return (
        merged.take(order.astype(np.int64)),
        np.concatenate([channel, added_channel])[order],
        np.concatenate([device, last_device[added.customer]])[order],
    )


def _list_price(raw: float) -> float:
    # Shop prices end in .99.
    return max(0.99, round(raw) - 0.01)


def _build_catalogue(rng: np.random.Generator, count: int) -> _Catalogue:
    specs = CATEGORY_SPECS[: min(len(CATEGORY_SPECS), count)]
    weights = np.array([spec.weight for spec in specs])
    weights /= weights.sum()
    # One product per category first, so that every category exists.
    per_category = 1 + rng.multinomial(count - len(specs), weights)
    rows: list[ProductRow] = []
    category_of: list[int] = []
    nouns: list[str] = []
    for category_index, (spec, n) in enumerate(zip(specs, per_category, strict=True)):
        combos = len(spec.brands) * len(spec.adjectives) * len(spec.nouns)
        order = rng.permutation(combos)
        for i in range(int(n)):
            combo = int(order[i % combos])
            brand = spec.brands[combo % len(spec.brands)]
            adjective = spec.adjectives[combo // len(spec.brands) % len(spec.adjectives)]
            noun, attribute_kind, factor = spec.nouns[
                combo // (len(spec.brands) * len(spec.adjectives))
            ]
            # Beyond every combination, titles stay unique through a series number.
            series = i // combos
            title = f"{brand} {adjective} {noun}" + (f" (Series {series + 1})" if series else "")
            pitch = spec.pitches[int(rng.integers(len(spec.pitches)))]
            rows.append(
                {
                    "sku": f"SKU-{spec.code}-{i + 1:04d}",
                    "title": title,
                    "description": f"The {adjective} {noun} from {brand}: {pitch}.",
                    "category": spec.name,
                    "brand": brand,
                    "price": _list_price(
                        rng.lognormal(math.log(spec.median_price * factor), spec.price_spread)
                    ),
                    "in_stock": bool(rng.random() < _IN_STOCK_SHARE),
                    "attributes": _attributes(rng, attribute_kind),
                }
            )
            category_of.append(category_index)
            nouns.append(noun)
    return _Catalogue(
        rows=rows,
        categories=tuple(spec.name for spec in specs),
        category_weights=weights,
        category_of=np.array(category_of, dtype=np.int64),
        prices=np.array([row["price"] for row in rows], dtype=np.float64),
        popularity=rng.lognormal(0.0, 0.8, size=len(rows)),
        nouns=np.array(nouns, dtype=np.str_),
    )


def _attributes(rng: np.random.Generator, kind: str) -> dict[str, Any]:
    def pick(options: Sequence[Any]) -> Any:
        return options[int(rng.integers(len(options)))]

    attributes: dict[str, Any] = {}
    if kind in ("footwear", "apparel", "device", "gear", "textile", "decor"):
        attributes["color"] = pick(_COLORS)
    if kind == "footwear":
        low = int(rng.integers(36, 40))
        attributes["sizes"] = [str(size) for size in range(low, low + int(rng.integers(6, 9)))]
    elif kind == "apparel":
        sizes = ("XS", "S", "M", "L", "XL", "XXL")
        low = int(rng.integers(0, 2))
        attributes["sizes"] = list(sizes[low : low + int(rng.integers(4, 6))])
    elif kind == "device":
        attributes["warranty_years"] = int(rng.integers(1, 4))
    elif kind == "gear":
        attributes["weight_g"] = int(rng.integers(8, 300)) * 10
    elif kind == "textile":
        attributes["material"] = pick(("cotton", "wool", "linen"))
    elif kind == "decor":
        attributes["material"] = pick(("ceramic", "oak", "glass", "metal"))
    elif kind == "cookware":
        attributes["material"] = pick(("stainless steel", "cast iron", "carbon steel"))
    elif kind == "woodware":
        attributes["material"] = pick(("oak", "bamboo", "walnut"))
    elif kind == "book":
        attributes["format"] = pick(("paperback", "hardcover"))
        attributes["pages"] = int(rng.integers(120, 640))
    elif kind == "care":
        attributes["volume_ml"] = pick((15, 30, 50, 100, 200))
    elif kind == "toy":
        attributes["age_range"] = pick(("3+", "6+", "8+", "12+"))
    return attributes


def _assign_groups(rng: np.random.Generator, customers: int) -> list[tuple[str, str]]:
    """(external id, group) per customer: the named ones first, then the shares."""
    names = list(GROUP_SHARES)
    return [
        (external_id(index), names[int(code)])
        for index, code in enumerate(group_codes(rng, customers).tolist())
    ]


def group_codes(rng: np.random.Generator, customers: int) -> NDArray[np.int8]:
    """Each customer's behaviour group as an index into ``GROUP_SHARES``: the named
    customers first, then the shares exactly (largest remainder), in random order."""
    names = list(GROUP_SHARES)
    shares = np.array(list(GROUP_SHARES.values()))
    exact = shares * customers
    counts = np.floor(exact).astype(np.int64)
    # Largest remainder, ties to the earlier group, so the counts add up.
    for index in np.argsort(-(exact - counts), kind="stable")[: customers - int(counts.sum())]:
        counts[index] += 1
    for group in DEMO_CUSTOMERS.values():
        counts[names.index(group)] -= 1
    rest = np.repeat(np.arange(len(names)), counts)
    rest = rest[rng.permutation(len(rest))]
    named = [names.index(group) for group in DEMO_CUSTOMERS.values()]
    return np.concatenate([np.array(named, dtype=np.int64), rest]).astype(np.int8)


def external_id(index: int) -> str:
    """The external id of the customer at ``index``: the named ones, then customer-00001..."""
    if index < len(DEMO_CUSTOMERS):
        return list(DEMO_CUSTOMERS)[index]
    return f"customer-{index - len(DEMO_CUSTOMERS) + 1:05d}"


def _plan_customer(
    rng: np.random.Generator, external_id: str, group: str, catalogue: _Catalogue
) -> _CustomerPlan:
    behaviour = _BEHAVIOURS[group]
    persona = _PERSONAS.get(external_id)
    n_categories = len(catalogue.categories)
    if persona is not None:
        preferred = np.array([catalogue.categories.index(c) for c in persona.categories])
        tier = persona.tier
        purchases, discounted = persona.purchases, persona.discounted
        activity, recent_views = persona.activity, persona.recent_views
    else:
        n_preferred = int(rng.integers(1, 4))
        preferred = rng.choice(
            n_categories, size=n_preferred, replace=False, p=catalogue.category_weights
        )
        tiers = list(behaviour.tiers)
        tier = tiers[int(rng.choice(len(tiers), p=list(behaviour.tiers.values())))]
        low, high = behaviour.purchases
        purchases = int(rng.integers(low, high, endpoint=True))
        least, most = behaviour.discount_share
        discounted = min(
            max(int(rng.binomial(purchases, behaviour.discount_rate)),
                math.ceil(least * purchases - 1e-9)),
            math.floor(most * purchases + 1e-9),
        )  # fmt: skip
        activity = behaviour.activity * float(rng.lognormal(0.0, 0.5))
        recent_views = int(rng.integers(*behaviour.recent_views, endpoint=True))
    category_weights = (1 - _PREFERRED_SHARE) * catalogue.category_weights
    if len(preferred):
        split = np.array(_PREFERENCE_SPLIT[: len(preferred)])
        category_weights[preferred] += _PREFERRED_SHARE * split / split.sum()
    category_weights /= category_weights.sum()
    return _CustomerPlan(
        external_id=external_id,
        group=group,
        tier=tier,
        category_weights=category_weights,
        top_category=int(preferred[0]) if len(preferred) else 0,
        purchases=purchases,
        discounted=discounted,
        carts=int(rng.binomial(purchases, _CARTED_PURCHASE_SHARE)),
        recent_views=recent_views,
        activity=activity,
    )


def _allocate_browsing(target: int, plans: Sequence[_CustomerPlan]) -> NDArray[np.int64]:
    """Browsing events per customer, so that the total hits ``target`` exactly."""
    needed = sum(plan.minimum_events for plan in plans)
    spare = target - needed
    if spare < 0:
        raise InvalidInputError(
            f"demo shop config: interactions={target} is too few for {len(plans)} customers; "
            f"their behaviour groups need at least {needed}"
        )
    activity = np.array([plan.activity for plan in plans])
    exact = spare * activity / activity.sum()
    browsing = np.floor(exact).astype(np.int64)
    for index in np.argsort(-(exact - browsing), kind="stable")[: spare - int(browsing.sum())]:
        browsing[index] += 1
    return np.asarray(browsing, dtype=np.int64)


def _customer_events(
    rng: np.random.Generator,
    customer: int,
    *,
    companions: np.random.Generator,
    plan: _CustomerPlan,
    catalogue: _Catalogue,
    within: Mapping[float, NDArray[np.float64]],
    window_s: int,
    browsing: int,
) -> _Events:
    """One customer's history: purchase funnels, browsing, and a closing recent session."""
    behaviour = _BEHAVIOURS[plan.group]
    picks = within[behaviour.price_bias]
    product_p = picks * plan.category_weights[catalogue.category_of]
    product_p /= product_p.sum()
    n_products = len(product_p)
    if behaviour.lapsed:
        newest, oldest = _LAPSED_QUIET_S, window_s
    else:
        # Active customers joined at different points of the window.
        newest, oldest = _MINUTE, int(window_s * rng.uniform(0.35, 1.0))
    parts: list[_Events] = []

    p = plan.purchases
    bought = rng.choice(n_products, size=p, p=product_p)
    purchase_age = rng.integers(max(newest, _HOUR), oldest - _FUNNEL_LEAD_S, size=p, endpoint=True)
    if p and not behaviour.lapsed:
        # Active means a recent purchase, whatever the other draws said.
        purchase_age[0] = rng.integers(
            _HOUR, min(_RECENT_PURCHASE_S, oldest - _FUNNEL_LEAD_S), endpoint=True
        )
    # The last week (its first second included) holds only the purchases drawn for it.
    purchase_age = np.where(
        purchase_age <= PURCHASE_WEEK_S, purchase_age + PURCHASE_WEEK_S, purchase_age
    )
    _pair_complements(
        companions, bought, purchase_age, catalogue, picks, earliest=max(newest, _BEFORE_WEEK_S)
    )
    discounted = np.zeros(p, dtype=bool)
    discounted[rng.permutation(p)[: plan.discounted]] = True
    list_price = catalogue.prices[bought]
    paid = np.where(
        discounted, np.round(list_price * rng.uniform(*_DISCOUNT_RANGE, p), 2), list_price
    )
    quantity = np.where(rng.random(p) < 0.2, 2, 1).astype(np.int64)
    parts.append(_block(customer, purchase_age, _PURCHASE, bought, price=paid, quantity=quantity))
    view_age = purchase_age + rng.integers(5 * _MINUTE, 2 * _DAY, size=p, endpoint=True)
    parts.append(_block(customer, view_age, _VIEW, bought))
    carted = rng.permutation(p)[: plan.carts]
    cart_age = purchase_age[carted] + (
        (view_age[carted] - purchase_age[carted]) * rng.uniform(0.1, 0.9, len(carted))
    ).astype(np.int64)
    parts.append(_block(customer, cart_age, _CART, bought[carted]))

    if plan.recent_views:
        top = picks * (catalogue.category_of == plan.top_category)
        recent = rng.choice(n_products, size=plan.recent_views, p=top / top.sum())
        recent_age = rng.integers(10 * _MINUTE, _RECENT_SESSION_S, size=plan.recent_views)
        parts.append(_block(customer, recent_age, _VIEW, recent))

    if browsing:
        parts.append(
            _browsing_events(
                rng,
                customer,
                behaviour=behaviour,
                product_p=product_p,
                ages=(newest, oldest),
                count=browsing,
                purchases=(bought, purchase_age),
            )
        )
    return _Events.concat(parts)


def _pair_complements(
    rng: np.random.Generator,
    bought: NDArray[np.int64],
    purchase_age: NDArray[np.int64],
    catalogue: _Catalogue,
    picks: NDArray[np.float64],
    *,
    earliest: int,
) -> None:
    """Turn some purchases into complements of others, in place (see ``COMPLEMENTS``).

    Each purchase is an anchor or a complement at most once; the purchase count, and so
    the customer's behaviour group, stays as drawn. The first purchase (the recent one
    of an active customer) is never replaced, only paired.
    """
    free = np.ones(len(bought), dtype=bool)
    for anchor in rng.permutation(len(bought)).tolist():
        if not free[anchor]:
            continue
        partners = catalogue.complements(int(bought[anchor]))
        if not len(partners) or rng.random() >= _COMPLEMENT_RATE:
            continue
        slots = np.flatnonzero(free)
        slots = slots[(slots != anchor) & (slots != 0)]
        if not len(slots):
            return
        slot = int(slots[int(rng.integers(len(slots)))])
        weights = picks[partners]
        bought[slot] = partners[int(rng.choice(len(partners), p=weights / weights.sum()))]
        lag = int(rng.integers(0, _COMPLEMENT_LAG_S, endpoint=True))
        purchase_age[slot] = max(int(purchase_age[anchor]) - lag, earliest)
        free[anchor] = free[slot] = False


def _browsing_events(
    rng: np.random.Generator,
    customer: int,
    *,
    behaviour: _Behaviour,
    product_p: NDArray[np.float64],
    ages: tuple[int, int],
    count: int,
    purchases: tuple[NDArray[np.int64], NDArray[np.int64]],
) -> _Events:
    newest, oldest = ages
    bought, purchase_age = purchases
    kinds = np.array([_KIND_CODE[kind] for kind in behaviour.kind_mix], dtype=np.int64)
    mix = np.array(list(behaviour.kind_mix.values()))
    kind = kinds[rng.choice(len(kinds), size=count, p=mix / mix.sum())]
    age = rng.integers(newest, oldest, size=count, endpoint=True)
    product = rng.choice(len(product_p), size=count, p=product_p).astype(np.int64)
    # A search often ends on a product page, but not always.
    blind_search = (kind == _SEARCH) & (rng.random(count) >= _SEARCH_WITH_PRODUCT)
    product[blind_search] = -1
    value = np.full(count, np.nan)
    feedback = np.flatnonzero(kind == _FEEDBACK)
    value[feedback] = np.where(rng.random(len(feedback)) < behaviour.positive_feedback, 1.0, -1.0)
    if len(bought):
        # Most feedback rates something bought, a day or two weeks after buying it.
        on_purchase = feedback[rng.random(len(feedback)) < _FEEDBACK_ON_PURCHASE]
        which = rng.integers(len(bought), size=len(on_purchase))
        product[on_purchase] = bought[which]
        later = purchase_age[which] - rng.integers(_DAY, 14 * _DAY, size=len(on_purchase))
        age[on_purchase] = np.maximum(later, newest)
    return _block(customer, age, kind, product, value=value)


def _channels_and_devices(
    rng: np.random.Generator, events: _Events, customers: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    size = len(events.age)
    channel = rng.choice(len(_CHANNELS), size=size, p=_CHANNEL_SHARES).astype(np.int64)
    channel[events.kind == _CHAT_CLICK] = _CHANNELS.index("chat")
    # Each customer mostly uses one device.
    primary = rng.choice(len(_DEVICES), size=customers, p=_DEVICE_SHARES)
    other = rng.choice(len(_DEVICES), size=size, p=_DEVICE_SHARES)
    device = np.where(rng.random(size) < 0.8, primary[events.customer], other).astype(np.int64)
    device[(channel == _CHANNELS.index("app")) & (device == _DEVICES.index("desktop"))] = (
        _DEVICES.index("mobile")
    )
    return channel, device


def _customer_rows(
    rng: np.random.Generator, plans: Sequence[_CustomerPlan], events: _Events
) -> list[dict[str, Any]]:
    """Customer rows without key and id; ``created_at`` is still an age in seconds."""
    n = len(plans)
    oldest_event = np.full(n, -1, dtype=np.int64)
    np.maximum.at(oldest_event, events.customer, events.age)
    ages = np.clip(np.rint(rng.normal(40.0, 14.0, size=n)), 18, 80).astype(np.int64)
    genders = rng.choice(len(_GENDERS), size=n, p=_GENDER_SHARES)
    countries = list(_COUNTRIES)
    country_p = np.array([share for share, _ in _COUNTRIES.values()])
    country_index = rng.choice(len(countries), size=n, p=country_p / country_p.sum())
    rows: list[dict[str, Any]] = []
    for index, plan in enumerate(plans):
        country = countries[int(country_index[index])]
        cities = _COUNTRIES[country][1]
        if oldest_event[index] < 0:
            # No history: signed up in the last two weeks.
            created_age = int(rng.integers(_HOUR, 13 * _DAY))
        else:
            tenure = 400 * _DAY if plan.group == "loyal" else 120 * _DAY
            created_age = int(oldest_event[index]) + _HOUR + int(rng.exponential(tenure))
        rows.append(
            {
                "created_at": created_age,
                "age": int(ages[index]),
                "gender": _GENDERS[int(genders[index])],
                "country": country,
                "city": cities[int(rng.integers(len(cities)))],
                "loyalty_tier": plan.tier,
                "synthetic_group": plan.group,
            }
        )
    return rows


def _tags(events: _Events, catalogue: _Catalogue, customers: int) -> list[tuple[int, str, float]]:
    """Interest tags from recent views, and ``premium`` for the top spenders."""
    n_categories = len(catalogue.categories)
    recent_view = (events.kind == _VIEW) & (events.age <= _TAG_WINDOW_S) & (events.product >= 0)
    cell = (
        events.customer[recent_view] * n_categories
        + catalogue.category_of[events.product[recent_view]]
    )
    views = np.bincount(cell, minlength=customers * n_categories).reshape(customers, n_categories)
    interest: dict[int, list[tuple[int, str, float]]] = {}
    for customer, category in zip(*np.nonzero(views >= _TAG_MIN_VIEWS), strict=True):
        count = int(views[customer, category])
        interest.setdefault(int(customer), []).append(
            (
                int(customer),
                f"interested_in_{catalogue.categories[int(category)]}",
                min(1.0, count / 10),
            )
        )
    purchase = events.kind == _PURCHASE
    spend = np.bincount(
        events.customer[purchase],
        weights=events.price[purchase] * events.quantity[purchase],
        minlength=customers,
    )
    # Top 10 % of all customers by spend, ties to the earlier customer; never a non-buyer.
    ranked = np.lexsort((np.arange(customers), -spend))[: math.ceil(customers * _PREMIUM_SHARE)]
    premium = {int(c) for c in ranked if spend[c] > 0}
    tags: list[tuple[int, str, float]] = []
    for customer in range(customers):
        tags.extend(interest.get(customer, []))
        if customer in premium:
            tags.append((customer, "premium", 1.0))
    return tags
