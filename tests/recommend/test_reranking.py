"""The shown list: strategies within relevance, the caps, substitutes, consumables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.reranking import (
    ArrangeRequest,
    ListPolicy,
    arrange,
    pool_depth,
    product_type,
    repeatable,
    substitute_key,
    substitute_keys,
)
from rasa_personalize.rules import RECOMMENDATION_STRATEGIES
from rasa_personalize.store.records import ProductRecord

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)
DAY = timedelta(days=1)


def product(sku: str, category: str, price: float, title: str | None = None) -> ProductRecord:
    return ProductRecord(sku, title or f"Brand {sku} Thing", category, "Brand", price, True)


# A pool of 30 in relevance order: p00 is the best and the dearest; p03 is the cheapest,
# p25 the next cheapest; the rest cost 50. Categories rotate a, b, c.
POOL = [f"p{rank:02d}" for rank in range(30)]
PRICES = {"p00": 100.0, "p03": 5.0, "p25": 6.0}
PRODUCTS = {
    sku: product(sku, "abc"[rank % 3], PRICES.get(sku, 50.0)) for rank, sku in enumerate(POOL)
}


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Kinetic Elite Trail Running Shoes", "shoe"),  # plural folded
        ("Pacer Tempo Road Running Shoes", "shoe"),  # another shoe: a substitute
        ("Cairn Trek Hiking Backpack 40L", "backpack"),  # a word with a digit is skipped
        ("Hearth Cozy Scented Candle Set", "candle set"),  # a pack word keeps the one before
        ("Hearth Modern Bed Linen Set", "linen set"),  # ... so candles and linen differ
        ("Stride Pro Running Socks 3-Pack", "sock"),
        ("Voltix Pro Noise-Cancelling Headphones (Series 2)", "headphone"),  # series ignored
        ("Brava Classic Dress", "dress"),  # "ss" is not a plural
        ("42", "42"),  # nothing but digits: the title itself
    ],
)
def test_product_type_is_the_titles_last_plain_word(title: str, expected: str) -> None:
    """The documented type rule, case by case."""
    assert product_type(title) == expected


def test_strategies_reorder_only_within_relevance() -> None:
    """cheapest_first lifts a cheap product a few places, never one from far down the pool;
    premium keeps the dearest, most relevant product first."""
    uncapped = {"max_per_category": None}
    default = arrange(POOL, 3, PRODUCTS, ArrangeRequest(**uncapped))
    cheap = arrange(POOL, 3, PRODUCTS, ArrangeRequest("cheapest_first", **uncapped))
    premium = arrange(POOL, 3, PRODUCTS, ArrangeRequest("premium", **uncapped))

    assert default == ["p00", "p01", "p02"]
    # p03: relevance 1 - 3/30 = 0.9, plus 0.2 x percentile 1 = 1.1, above p00's 1.0 + 0.
    assert cheap[0] == "p03"
    # p25 is almost as cheap, but 25 places down: 0.167 + 0.2 x 0.97 stays far behind.
    assert "p25" not in cheap
    assert premium[0] == "p00"


def test_every_rules_strategy_gives_a_full_list() -> None:
    """Each strategy the rule language accepts arranges a list (none is ignored)."""
    for strategy in RECOMMENDATION_STRATEGIES:
        chosen = arrange(POOL, 5, PRODUCTS, ArrangeRequest(strategy))
        assert len(chosen) == len(set(chosen)) == 5, strategy


def test_new_arrivals_prefers_products_first_seen_later_and_never_seen() -> None:
    """Among equally relevant products, the newer one wins; a product never seen is newest."""
    pool = ["old", "new", "unseen"]
    products = {
        sku: product(sku, category, 10.0) for sku, category in zip(pool, "xyz", strict=True)
    }
    arrivals = {"old": 1_000.0, "new": 2_000.0}
    chosen = arrange(
        pool, 3, products, ArrangeRequest("new_arrivals"), depth=1_000, arrivals=arrivals
    )
    assert chosen == ["unseen", "new", "old"]


def test_at_most_two_per_category_unless_a_category_was_asked() -> None:
    """The third product of a category waits behind the others; asking lifts the cap."""
    pool = ["a1", "a2", "a3", "b1"]
    products = {sku: product(sku, sku[0], 10.0) for sku in pool}
    assert arrange(pool, 3, products, ArrangeRequest()) == ["a1", "a2", "b1"]
    asked = ArrangeRequest(max_per_category=None)
    assert arrange(pool, 3, products, asked) == ["a1", "a2", "a3"]
    # Too few other categories: the list is still full.
    assert arrange(pool[:3], 3, products, ArrangeRequest()) == ["a1", "a2", "a3"]


def test_price_cap_acts_on_the_relevant_candidates() -> None:
    """Within the cap first; a relevant product above it comes before nothing at all."""
    pool = ["dear", "cheap1", "cheap2", "mid"]
    products = {
        "dear": product("dear", "a", 90.0),
        "cheap1": product("cheap1", "b", 20.0),
        "cheap2": product("cheap2", "c", 30.0),
        "mid": product("mid", "d", 70.0),
    }
    capped = ArrangeRequest(max_price=60.0)
    assert arrange(pool, 2, products, capped) == ["cheap1", "cheap2"]
    assert arrange(pool, 3, products, capped) == ["cheap1", "cheap2", "dear"]


def test_substitutes_of_recent_purchases_come_last() -> None:
    """Bought running shoes yesterday: other running shoes wait behind everything else."""
    bought = product("bought", "running", 80.0, "Stride Pro Trail Running Shoes")
    products = {
        "bought": bought,
        "shoe": product("shoe", "running", 90.0, "Pacer Elite Road Running Shoes"),
        "socks": product("socks", "running", 10.0, "Pacer Tempo Running Socks 3-Pack"),
        "shirt": product("shirt", "fashion", 30.0, "Marlow Classic Shirt"),
    }
    avoid = substitute_keys([("bought", NOW - DAY)], NOW, products, ListPolicy())
    assert avoid == {("running", "shoe")}
    chosen = arrange(["shoe", "socks", "shirt"], 3, products, ArrangeRequest(avoid=avoid))
    assert chosen == ["socks", "shirt", "shoe"]


def test_substitute_window_and_consumables() -> None:
    """Substitutes are demoted for substitute_days; a consumable category has its own
    window, after which the bought product itself may come back."""
    products = {
        "shoe": product("shoe", "running", 90.0, "Pacer Road Running Shoes"),
        "serum": product("serum", "beauty", 20.0, "Lumiere Daily Face Serum"),
    }
    policy = ListPolicy(substitute_days=14, repeat_after_days={"beauty": 30})
    purchases = [("shoe", NOW - 20 * DAY), ("serum", NOW - 20 * DAY)]
    # 20 days on: past the shoe's 14 days, inside the serum's 30.
    assert substitute_keys(purchases, NOW, products, policy) == {("beauty", "serum")}
    assert repeatable(purchases, NOW, products, policy) == frozenset()
    later = NOW + 15 * DAY
    assert substitute_keys(purchases, later, products, policy) == frozenset()
    assert repeatable(purchases, later, products, policy) == {"serum"}
    # The newest purchase of a product counts.
    again = [*purchases, ("serum", later - DAY)]
    assert repeatable(again, later, products, policy) == frozenset()
    assert ListPolicy(substitute_days=0).substitute_window("running") == timedelta(0)


def test_substitute_keys_use_the_precomputed_types_and_stop_at_old_purchases() -> None:
    """Given types, no title is parsed; purchases come newest first, so the walk ends at
    the first one older than every window."""
    products = {
        "a": product("a", "running", 10.0, "Pacer Road Running Shoes"),
        "b": product("b", "running", 10.0, "Pacer Running Cap"),
    }
    types = {"a": ("running", "precomputed")}
    recent = [("a", NOW - DAY), ("b", NOW - 20 * DAY), ("b", NOW - 2 * DAY)]
    # b bought 2 days ago comes after a 20-day-old purchase: out of order, not looked at.
    assert substitute_keys(recent, NOW, products, ListPolicy(), types) == {
        ("running", "precomputed")
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_per_category": 0},  # a list needs at least one product per category
        {"max_per_category": True},  # not a number
        {"substitute_days": -1},  # negative window
        {"substitute_days": float("nan")},  # NaN window
        {"repeat_after_days": {"beauty": -2}},  # negative consumable window
        {"repeat_after_days": {" ": 3}},  # no category name
    ],
)
def test_list_policy_refuses_bad_values(kwargs: dict[str, object]) -> None:
    """Each bad policy value is refused with InvalidInputError."""
    with pytest.raises(InvalidInputError):
        ListPolicy(**kwargs)  # type: ignore[arg-type]


def test_substitute_key_is_category_and_type() -> None:
    """The same type in another category is no substitute."""
    jacket = product("j", "running", 80.0, "Stride Running Jacket")
    shell = product("s", "outdoor", 80.0, "Summit Rain Shell Jacket")
    assert substitute_key(jacket) == ("running", "jacket")
    assert substitute_key(jacket) != substitute_key(shell)


@settings(max_examples=200, deadline=None)
@given(
    pool=st.lists(st.sampled_from([f"s{i}" for i in range(12)]), unique=True, max_size=12),
    n=st.integers(min_value=0, max_value=15),
    strategy=st.sampled_from(RECOMMENDATION_STRATEGIES),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
    max_price=st.one_of(st.none(), st.floats(min_value=0, max_value=120)),
    avoid_first=st.booleans(),
)
def test_arrange_invariants(
    pool: list[str],
    n: int,
    strategy: str,
    cap: int | None,
    max_price: float | None,
    avoid_first: bool,
) -> None:
    """Whatever the options: a subset of the pool, no repeats, min(n, pool) long."""
    products = {f"s{i}": product(f"s{i}", "xyz"[i % 3], 10.0 * i) for i in range(10)}
    avoid = (
        frozenset({substitute_key(products[pool[0]])})
        if avoid_first and pool and pool[0] in products
        else frozenset()
    )
    request = ArrangeRequest(strategy, avoid=avoid, max_per_category=cap, max_price=max_price)
    chosen = arrange(pool, n, products, request)
    known = [sku for sku in pool if sku in products]
    assert len(chosen) == len(set(chosen)) == min(n, len(known))
    assert set(chosen) <= set(known)


def test_pool_depth_grows_with_long_lists() -> None:
    """At least 30 candidates, three per product shown."""
    assert (pool_depth(3), pool_depth(10), pool_depth(20)) == (30, 30, 60)
