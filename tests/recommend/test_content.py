"""ContentRecommender: similar products and interests on a tiny catalogue."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.content import (
    ContentRecommender,
    ProductText,
    TextVectorizer,
    interest_words,
    product_document,
)
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


# What customers type and products say: stop words, punctuation, case, accents, digits,
# repeated and unknown words, bigrams across dropped stop words, and nothing at all.
TEXTS = [
    "Trail running shoe for muddy trails",
    "the and of",
    "",
    "YOGA yoga Yoga mat, mat; MAT!",
    "Ünïcödé café crème running",
    "category_running brand_zen Zen blocks",
    "a b c d 1 22 333 running",
    "knife of the chef for the kitchen",
    "shoe socks shoe socks shoe",
    "gardening spaceships",
]


def test_serve_time_vectors_equal_scikit_learns() -> None:
    """The numpy vectoriser gives scikit-learn's TF-IDF rows, on products and on queries."""
    documents = [product_document(p) for p in sorted(PRODUCTS, key=lambda p: p.item_id)]
    fitted = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, stop_words="english", dtype=np.float32
    ).fit(documents)
    ours = TextVectorizer.from_scikit_learn(fitted)
    for texts in (documents, TEXTS):
        expected = scipy.sparse.csr_matrix(fitted.transform(texts))
        actual = ours.transform(texts)
        assert actual.dtype == np.float32
        np.testing.assert_array_equal(actual.indptr, expected.indptr)
        np.testing.assert_array_equal(actual.indices, expected.indices)
        np.testing.assert_allclose(actual.data, expected.data, rtol=1e-6)


def test_fitted_vectors_are_what_the_vectoriser_makes(model: ContentRecommender) -> None:
    """Transforming a product's own text again gives its fitted row: one vector space."""
    documents = [product_document(p) for p in sorted(PRODUCTS, key=lambda p: p.item_id)]
    difference = model.vectorizer_.transform(documents) - model.item_vectors_
    assert abs(difference).max() < 1e-6


def test_unsupported_vectoriser_settings_are_refused() -> None:
    """Settings the numpy vectoriser does not reproduce fail at training, not in serving."""
    fitted = TfidfVectorizer(lowercase=False).fit(["Trail running shoe"])
    with pytest.raises(InvalidInputError, match="lowercase"):
        TextVectorizer.from_scikit_learn(fitted)


def test_catalogue_keeps_unchanged_vectors_and_vectorises_the_rest(
    model: ContentRecommender,
) -> None:
    """Unchanged rows are reused, a changed or new product gets its text's vector, a
    removed one is gone; the same catalogue gives the model itself."""
    assert model.for_catalogue(PRODUCTS) is model
    changed = ProductText("yoga-2", "Yoga strap", "Cotton strap for stretching", "Yoga", "Zen")
    added = ProductText("run-4", "Running cap", "Light cap for sunny runs", "Running", "Stride")
    catalogue = [*(p for p in PRODUCTS if p.item_id not in {"yoga-2", "kitchen-1"}), changed, added]
    moved = model.for_catalogue(catalogue)
    assert set(moved.item_ids_) == {p.item_id for p in catalogue}
    for product in PRODUCTS:
        if product.item_id in {"run-1", "run-2", "run-3", "yoga-1"}:
            old = model.item_vectors_[model.item_ids_.row(product.item_id)]
            new = moved.item_vectors_[moved.item_ids_.row(product.item_id)]
            assert (old != new).nnz == 0
    for product in (changed, added):
        expected = model.vectorizer_.transform([product_document(product)])
        row = moved.item_vectors_[moved.item_ids_.row(product.item_id)]
        assert (row != expected).nnz == 0
    # the new cap is found by its words, and the trail shoe's neighbours include it
    assert ids(moved.for_text("running cap", 1)) == ["run-4"]
    assert "run-4" in ids(moved.similar_to("run-1", 3))
    assert "kitchen-1" not in ids(moved.for_text("chef knife", 3))
