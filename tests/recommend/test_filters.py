"""Filters: never filtered, excluded or seen items, no duplicates, never more than n."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.filters import (
    ItemCatalogue,
    RecommendationFilters,
    Scored,
    merge_unique,
    select,
    top_n,
)
from rasa_personalize.recommend.ids import IdMap
from rasa_personalize.recommend.popularity import PopularityRecommender

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CATEGORIES = ("shoes", "shirts", "bags")


@dataclass(frozen=True)
class Case:
    """A catalogue, a model's items (overlapping it), scores, filters and seen items."""

    catalogue: ItemCatalogue
    model_items: IdMap
    scores: np.ndarray
    filters: RecommendationFilters
    seen: frozenset[str]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    size = draw(st.integers(1, 25))
    ids = [f"sku-{i:02d}" for i in range(size)]
    catalogue = ItemCatalogue.build(
        ids,
        draw(st.lists(st.sampled_from(CATEGORIES), min_size=size, max_size=size)),
        draw(st.lists(st.integers(0, 100), min_size=size, max_size=size)),
        np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))),
    )
    # The model knows some catalogue items and some items the catalogue no longer has.
    known = draw(st.lists(st.sampled_from(ids), unique=True))
    gone = [f"gone-{i}" for i in range(draw(st.integers(0, 3)))]
    model_items = IdMap.from_ids(known + gone)
    # Few distinct score values, so ties are common.
    scores = np.array(
        draw(st.lists(st.integers(-3, 3), min_size=len(model_items), max_size=len(model_items))),
        dtype=np.float32,
    )
    filters = RecommendationFilters(
        n=draw(st.integers(0, 12)),
        exclude=frozenset(draw(st.lists(st.sampled_from([*ids, "gone-0", "unknown"])))),
        in_stock_only=draw(st.booleans()),
        category=draw(st.none() | st.sampled_from([*CATEGORIES, "toys"])),
        max_price=draw(st.none() | st.integers(0, 100).map(float)),
        # a shopper's dislikes, "toys" being none of the catalogue's
        exclude_categories=frozenset(
            draw(st.lists(st.sampled_from([*CATEGORIES, "toys"]), max_size=2))
        ),
    )
    seen = frozenset(draw(st.lists(st.sampled_from([*ids, "gone-1"]))))
    return Case(catalogue, model_items, scores, filters, seen)


def passes(case: Case, item_id: str) -> bool:
    """The filters' meaning, written out plainly (the oracle)."""
    catalogue, filters = case.catalogue, case.filters
    row = catalogue.index.get(item_id)
    if row is None or item_id in filters.exclude or item_id in case.seen:
        return False
    if filters.in_stock_only and not catalogue.in_stock[row]:
        return False
    if filters.category is not None and catalogue.categories[row] != filters.category:
        return False
    if catalogue.categories[row] in filters.exclude_categories:
        return False
    return filters.max_price is None or catalogue.prices[row] <= filters.max_price


def check_guarantees(case: Case, result: list[Scored], scores: dict[str, float]) -> None:
    ids = [scored.item_id for scored in result]
    assert len(ids) == len(set(ids)), "no item twice"
    assert len(ids) <= case.filters.n, "never more than n"
    assert all(passes(case, item) for item in ids), "never a filtered, excluded or seen item"
    allowed = [item for item in case.model_items if passes(case, item)]
    assert len(ids) == min(case.filters.n, len(allowed)), "fewer than n only when none is left"
    returned = [scores[item] for item in ids]
    assert returned == sorted(returned, reverse=True), "best first"
    if ids:
        assert all(scores[item] <= returned[-1] for item in allowed if item not in ids), "top n"


@SETTINGS
@given(cases())
def test_select_guarantees(case: Case) -> None:
    """The shared selection obeys every guarantee for any catalogue, filters and scores."""
    candidates = case.filters.candidates(case.catalogue)
    result = select(
        case.scores, case.filters.n, case.model_items, exclude=case.seen, candidates=candidates
    )
    scores = dict(zip(case.model_items, case.scores.tolist(), strict=True))
    check_guarantees(case, result, scores)


@SETTINGS
@given(cases())
def test_als_guarantees(case: Case) -> None:
    """AlsRecommender.recommend (numpy scores + the same filters) obeys the guarantees."""
    rng = np.random.default_rng(len(case.model_items))
    factors = rng.normal(size=(len(case.model_items), 3)).astype(np.float32)
    model = AlsRecommender.from_factors(
        AlsParams(factors=3),
        user_ids=IdMap.from_ids(["customer"]),
        item_ids=case.model_items,
        user_factors=np.ones((1, 3)),
        item_factors=factors,
    )
    result = model.recommend(
        "customer",
        case.filters.n,
        exclude=case.seen,
        candidates=case.filters.candidates(case.catalogue),
    )
    scores = dict(zip(case.model_items, (factors @ np.ones(3, np.float32)).tolist(), strict=True))
    check_guarantees(case, result, scores)


@SETTINGS
@given(cases())
def test_popularity_guarantees(case: Case) -> None:
    """PopularityRecommender (pre-sorted rankings) obeys the same guarantees."""
    assume(len(case.model_items) > 0)  # popularity needs something to count
    counts = (case.scores + 4).astype(int)  # positive counts, with ties
    items = [
        item for item, count in zip(case.model_items, counts, strict=True) for _ in range(count)
    ]
    model = PopularityRecommender().fit(items)
    result = model.recommend(
        case.filters.n, exclude=case.seen, candidates=case.filters.candidates(case.catalogue)
    )
    scores = dict(zip(case.model_items, counts.astype(float).tolist(), strict=True))
    check_guarantees(case, result, scores)


@SETTINGS
@given(
    st.lists(
        st.sampled_from([0.0, 1.0, 2.5, -1.0, np.inf, -np.inf, np.nan, 3e38, -3e38]),
        min_size=0,
        max_size=30,
    ).flatmap(
        lambda values: st.tuples(
            st.just(values),
            st.none() | st.lists(st.booleans(), min_size=len(values), max_size=len(values)),
            st.integers(0, 12),
            st.sampled_from([np.float32, np.float64]),
        )
    )
)
def test_top_n_equals_a_full_sort(
    case: tuple[list[float], list[bool] | None, int, type[np.floating]],
) -> None:
    """top_n is exactly "sort usable rows by (-score, row), keep n", even with NaN, +-inf,
    ties and scores near the float limits."""
    values, allowed, n, dtype = case
    scores = np.array(values, dtype=dtype)
    mask = None if allowed is None else np.array(allowed, dtype=bool)
    usable = [
        row
        for row, value in enumerate(scores.tolist())
        if value > -np.inf and (mask is None or mask[row])  # NaN > -inf is False
    ]
    expected = sorted(usable, key=lambda row: (-scores[row], row))[:n]
    assert top_n(scores, n, mask).tolist() == expected


@pytest.mark.parametrize("seed", range(6))
def test_top_n_over_a_large_catalogue_equals_a_full_sort(seed: int) -> None:
    """Past 8,192 rows top_n ranks a pool sampled from every 16th row: still exactly
    the full sort, with ties (few distinct scores), NaN, +-inf, masks, and the best
    scores where the sample does not look (rows not a multiple of 16)."""
    rng = np.random.default_rng(seed)
    size = 20_000
    for n in (1, 10, 50):
        for distinct in (3, 50, None):
            raw = rng.standard_normal(size) if distinct is None else rng.integers(0, distinct, size)
            scores = raw.astype(np.float32 if seed % 2 else np.float64)
            scores[rng.integers(0, size, 30)] = np.nan
            scores[rng.integers(0, size, 30)] = np.inf
            scores[rng.integers(0, size, 30)] = -np.inf
            offsets = np.arange(size) % 16 != 0
            scores[rng.choice(np.flatnonzero(offsets), 40, replace=False)] = 1e6
            for mask in (None, rng.random(size) < 0.7):
                usable = (scores > -np.inf) & (True if mask is None else mask)
                rows = np.flatnonzero(usable)
                expected = rows[np.lexsort((rows, -scores[rows]))][:n]
                assert top_n(scores, n, mask).tolist() == expected.tolist()


def test_candidates_known_answer() -> None:
    """In stock, shoes, at most 50, not the excluded one: exactly the rows expected."""
    catalogue = ItemCatalogue.build(
        ["a", "b", "c", "d", "e"],
        ["shoes", "shoes", "shoes", "bags", "shoes"],
        [40.0, 60.0, 20.0, 10.0, 50.0],
        np.array([True, True, False, True, True]),
    )
    filters = RecommendationFilters(n=3, exclude=frozenset({"e"}), category="shoes", max_price=50)
    candidates = filters.candidates(catalogue)
    assert [item for item, ok in zip(catalogue.index, candidates.allowed, strict=True) if ok] == [
        "a"
    ]


def test_excluded_categories_known_answer() -> None:
    """Dislikes of shoes and of a category the catalogue lacks: every bag, no shoe."""
    catalogue = ItemCatalogue.build(
        ["a", "b", "c", "d"],
        ["shoes", "bags", "shoes", "bags"],
        [10.0, 20.0, 30.0, 40.0],
        np.array([True, True, True, False]),
    )
    filters = RecommendationFilters(exclude_categories=frozenset({"shoes", "toys"}))
    candidates = filters.candidates(catalogue)
    assert [item for item, ok in zip(catalogue.index, candidates.allowed, strict=True) if ok] == [
        "b"
    ]


def test_unknown_category_allows_nothing() -> None:
    """A category the catalogue does not have gives no candidates (not all of them)."""
    catalogue = ItemCatalogue.build(["a"], ["shoes"], [1.0], np.array([True]))
    assert len(RecommendationFilters(category="toys").candidates(catalogue)) == 0


def test_top_n_breaks_ties_by_row_and_skips_nan() -> None:
    """Equal scores come in row order; NaN, -inf and disallowed rows are never returned."""
    scores = np.array([1.0, 3.0, 3.0, np.nan, 3.0, 2.0])
    allowed = np.array([True, True, False, True, True, True])
    assert top_n(scores, 3, allowed).tolist() == [1, 4, 5]
    assert top_n(scores, 10).tolist() == [1, 2, 4, 5, 0]
    assert top_n(scores, 0).tolist() == []
    assert top_n(np.array([-np.inf, 1.0, -np.inf]), 3).tolist() == [1]


def test_filters_reject_bad_values() -> None:
    """n < 0, a negative price cap and a bare string as exclude are errors."""
    with pytest.raises(InvalidInputError, match="n must be"):
        RecommendationFilters(n=-1)
    with pytest.raises(InvalidInputError, match="max_price"):
        RecommendationFilters(max_price=-5.0)
    with pytest.raises(InvalidInputError, match="not one string"):
        RecommendationFilters(exclude="sku-1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"exclude_categories .* not one string"):
        RecommendationFilters(exclude_categories="kitchen")  # type: ignore[arg-type]


def test_catalogue_rejects_repeated_ids_and_bad_prices() -> None:
    """A catalogue is built once, so its input is checked strictly."""
    with pytest.raises(InvalidInputError, match="unique"):
        ItemCatalogue.build(["a", "a"], ["x", "x"], [1.0, 1.0], np.array([True, True]))
    with pytest.raises(InvalidInputError, match="prices"):
        ItemCatalogue.build(["a"], ["x"], [-1.0], np.array([True]))
    with pytest.raises(InvalidInputError, match="in_stock must be booleans"):
        ItemCatalogue.build(["a"], ["x"], [1.0], np.array([1]))


def test_mask_with_wrong_length_is_an_error() -> None:
    """A boolean mask must have one entry per model item."""
    with pytest.raises(InvalidInputError, match=r"shape \(2,\)"):
        select(np.zeros(2), 1, IdMap.from_ids(["a", "b"]), candidates=np.ones(3, dtype=bool))


def test_predicate_candidates() -> None:
    """A predicate on ids works as a (slow) candidates filter."""
    result = select(
        np.array([3.0, 2.0, 1.0]),
        5,
        IdMap.from_ids(["a", "b", "c"]),
        candidates=lambda item: item != "a",
    )
    assert [scored.item_id for scored in result] == ["b", "c"]


def test_merge_unique_tops_up_without_repeats() -> None:
    """Fallback lists are merged in order, each item once, at most n."""
    first = [Scored("a", 1.0), Scored("b", 0.5)]
    second = [Scored("b", 9.0), Scored("c", 8.0), Scored("d", 7.0)]
    assert [s.item_id for s in merge_unique([first, second], 3)] == ["a", "b", "c"]
