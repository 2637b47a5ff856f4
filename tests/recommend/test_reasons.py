"""Reasons that are true: the most related past product, else the next strategy's words."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rasa_personalize.recommend.reasons import (
    BESTSELLERS,
    SIMILAR_SHOPPERS,
    PastProduct,
    ReasonContext,
    because_of,
    fallback_reason,
    most_related,
    past_products,
)
from rasa_personalize.store.records import ProductRecord

# Relatedness of the lead "tights" to each past product.
RELATED = {"shoes": 0.9, "cap": 0.6, "kettle": 0.1, "tights": 1.0}


def relatedness(lead: str, others: Sequence[str]) -> list[float | None]:
    assert lead == "tights"
    return [RELATED.get(other) for other in others]


def test_past_products_put_purchases_first_and_keep_the_strongest_kind() -> None:
    """Purchases newest first, then recent interactions; a product bought and viewed is
    "bought"; a product carted and viewed is "cart"; shown products and a "no" are not
    things the customer liked."""
    past = past_products(
        ["kettle", "shoes"],
        [
            ("cap", "view", None),
            ("shoes", "view", None),
            ("cap", "cart", None),
            ("socks", "search", None),
            ("banner", "shown", None),  # shown to them: not their doing
            ("belt", "feedback", -1.0),  # they said no
            ("scarf", "rating", 2.0),  # a poor rating
            ("gloves", "rating", 5.0),
        ],
    )
    assert past == [
        PastProduct("kettle", "purchase"),
        PastProduct("shoes", "purchase"),
        PastProduct("cap", "cart"),
        PastProduct("socks", "search"),
        PastProduct("gloves", "rating"),
    ]
    assert len(past_products([f"sku{i}" for i in range(50)], [], limit=30)) == 30


def test_the_most_related_past_product_names_the_reason() -> None:
    """Not the newest purchase (the kettle): the shoes, most related to the tights."""
    past = [PastProduct("kettle", "purchase"), PastProduct("shoes", "purchase")]
    assert most_related("tights", past, relatedness, 0.5) == PastProduct("shoes", "purchase")
    # Nothing related enough: no product is named.
    assert most_related("tights", [PastProduct("kettle", "purchase")], relatedness, 0.5) is None
    # Unknown to the model (None) never counts.
    assert most_related("tights", [PastProduct("gone", "view")], relatedness, 0.0) is None
    assert most_related("tights", [], relatedness, 0.5) is None


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("purchase", "because you bought Running Cap"),
        ("cart", "because you put Running Cap in your cart"),
        ("feedback", "because you liked Running Cap"),
        ("rating", "because you rated Running Cap"),
        ("view", "because you looked at Running Cap"),  # views, clicks, searches
    ],
)
def test_each_kind_has_its_words(kind: str, expected: str) -> None:
    """What the customer did with the past product is what the reason says."""
    assert because_of(PastProduct("cap", kind), "Running Cap") == expected


LEAD = ProductRecord("tights", "Compression Tights", "running", "Aerolite", 30.0, True)


@pytest.mark.parametrize(
    ("source", "context", "expected"),
    [
        # The asked category comes first, whatever answered.
        ("als", ReasonContext(category="running"), "because you asked about running"),
        # The lead is in the favourite category.
        ("als", ReasonContext(favorite_category="running"), "because you like running"),
        ("segment_popular", ReasonContext(favorite_category="running"), "because you like running"),
        # Bestsellers are not chosen by taste.
        ("popular", ReasonContext(favorite_category="running"), BESTSELLERS),
        # Collaborative, nothing related, not the favourite: shoppers like them.
        ("als", ReasonContext(favorite_category="books"), SIMILAR_SHOPPERS),
        ("segment_popular", ReasonContext(), SIMILAR_SHOPPERS),
        # Content says what it looked at.
        ("content", ReasonContext(favorite_category="books"), "because you like books"),
        (
            "content",
            ReasonContext(tags=("interested_in_running",)),
            "because you're interested in running",
        ),
        ("content", ReasonContext(), "picked for you"),
    ],
)
def test_fallback_reasons_follow_the_next_strategy(
    source: str, context: ReasonContext, expected: str
) -> None:
    """Without a related past product, the reason is the next strategy's."""
    assert fallback_reason(source, LEAD, context) == expected
