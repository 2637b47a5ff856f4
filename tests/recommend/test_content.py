"""ContentRecommender: similar products and interests on a tiny catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.content import ContentRecommender, ProductText, interest_words
from rasa_personalize.recommend.errors import NotFittedError, UnknownIdError
from rasa_personalize.recommend.filters import ItemCatalogue, RecommendationFilters

PRODUCTS = [
    ProductText("run-1", "Trail running shoe", "Grippy sole for muddy trails", "Running", "Stride"),
    ProductText(
        "run-2", "Road running shoe", "Light cushioned shoe for marathons", "Running", "Stride"
    ),
    ProductText("run-3", "Running socks", "Breathable socks for long runs", "Running", "Sockit"),
    ProductText("yoga-1", "Yoga mat", "Non-slip mat for yoga and pilates", "Yoga", "Zen"),
    ProductText("yoga-2", "Yoga block", "Cork block for yoga poses", "Yoga", "Zen"),
    ProductText("kitchen-1", "Chef knife", "Steel knife for the kitchen", "Kitchen", "Blade"),
]


@pytest.fixture(scope="module")
def model() -> ContentRecommender:
    return ContentRecommender().fit(PRODUCTS)


def ids(result: list) -> list[str]:
    return [scored.item_id for scored in result]


def test_similar_to_ranks_same_topic_first(model: ContentRecommender) -> None:
    """A trail shoe's neighbours: the road shoe, then the running socks; never itself."""
    result = ids(model.similar_to("run-1", 2))
    assert result == ["run-2", "run-3"]


def test_similar_to_returns_only_items_sharing_a_term(model: ContentRecommender) -> None:
    """The knife shares no word with the yoga mat, so it is not 'similar' at any n."""
    assert "kitchen-1" not in ids(model.similar_to("yoga-1", 10))
    assert ids(model.similar_to("yoga-1", 10))[0] == "yoga-2"


def test_interest_tag_finds_its_category(model: ContentRecommender) -> None:
    """interested_in_running -> running products only."""
    result = ids(model.for_interests(tags=["interested_in_running"], n=5))
    assert set(result) == {"run-1", "run-2", "run-3"}


def test_stated_category_finds_its_products(model: ContentRecommender) -> None:
    """A stated category 'Yoga' gives the two yoga products."""
    assert set(ids(model.for_interests(categories=["Yoga"], n=5))) == {"yoga-1", "yoga-2"}


def test_no_match_gives_empty_list(model: ContentRecommender) -> None:
    """Interests matching nothing give [], so the chain falls back to popularity."""
    assert model.for_interests(tags=["interested_in_gardening"]) == []
    assert model.for_interests() == []


def test_filters_apply_to_content(model: ContentRecommender) -> None:
    """Out-of-stock and price-capped items are filtered; exclude is honoured."""
    catalogue = ItemCatalogue.build(
        [p.item_id for p in PRODUCTS],
        [p.category for p in PRODUCTS],
        [120.0, 90.0, 10.0, 30.0, 15.0, 50.0],
        np.array([True, False, True, True, True, True]),
    )
    filters = RecommendationFilters(n=5, max_price=100.0, exclude=frozenset({"run-3"}))
    result = model.for_interests(
        tags=["interested_in_running"], n=filters.n, candidates=filters.candidates(catalogue)
    )
    assert result == []  # run-1 too expensive, run-2 out of stock, run-3 excluded


def test_interest_words() -> None:
    """Known prefixes are dropped, underscores become spaces."""
    assert interest_words("interested_in_trail_running") == "trail running"
    assert interest_words("premium") == "premium"


def test_unfitted_and_unknown() -> None:
    """Unfitted use raises NotFittedError; an unknown product raises UnknownIdError."""
    with pytest.raises(NotFittedError):
        ContentRecommender().similar_to("run-1")
    with pytest.raises(UnknownIdError):
        ContentRecommender().fit(PRODUCTS).similar_to("nope")


def test_fit_checks_input() -> None:
    """Empty or repeated products are errors that say so."""
    with pytest.raises(InvalidInputError, match="empty"):
        ContentRecommender().fit([])
    with pytest.raises(InvalidInputError, match="unique"):
        ContentRecommender().fit([PRODUCTS[0], PRODUCTS[0]])
