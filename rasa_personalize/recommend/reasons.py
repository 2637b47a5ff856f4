"""Why a list was recommended, in words that are true.

"Because you bought X" is said only when X is related to the product the list leads
with: among the customer's past products (their purchases, then what they recently put
in their cart, rated, liked or looked at), the one most related to the lead product
names the reason, if it is related enough:

- for the collaborative strategies (``als``, ``session``), by the cosine of the two
  products' ALS factors, at least ``RELATED_COSINE``;
- for ``bought_together``, by their association score (bought together more often than
  chance, :mod:`~rasa_personalize.recommend.associations`).

Otherwise the reason is the next strategy's: "because you like running" when the lead
product is in the customer's favourite category, else "because shoppers like you love
them" (what collaborative filtering means). Content and popularity reasons say what
those strategies looked at (the asked category, the favourite one, an interest, the
bestsellers).

A "something like X" list names X by what led it there: "because they are often bought
together with X" (``bought_together``), "because they are like X" (content similarity);
led by a bestseller, the reasons above.

Cost per request: one dot product per past product considered (at most ``MAX_PAST``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from rasa_personalize.recommend.content import interest_words
from rasa_personalize.store.records import ProductRecord

# The ALS cosine above which two products count as related (see bench/relevance.py:
# the demo shop's complementary pairs sit far above it, unrelated categories below).
RELATED_COSINE: Final = 0.5
MAX_PAST: Final = 30
# A star rating from which "because you rated X" is a compliment.
GOOD_RATING: Final = 4.0
# What the customer did with a past product, by the kind that names it best.
_KIND_ORDER: Final = ("purchase", "cart", "feedback", "rating", "chat_click", "view", "search")
_PHRASES: Final = {
    "purchase": "because you bought {}",
    "cart": "because you put {} in your cart",
    "feedback": "because you liked {}",
    "rating": "because you rated {}",
}
SIMILAR_SHOPPERS: Final = "because shoppers like you love them"
# "Something like X", by the strategy that found the product the list leads with.
_LIKE_PHRASES: Final = {
    "bought_together": "because they are often bought together with {}",
    "content": "because they are like {}",
}
BESTSELLERS: Final = "because they are our bestsellers right now"


@dataclass(frozen=True)
class PastProduct:
    """A product the customer did something with, and the strongest thing they did."""

    sku: str
    kind: str


@dataclass(frozen=True)
class ReasonContext:
    """What the reason may refer to besides the products.

    Attributes:
        category: the category the customer asked about, if any.
        favorite_category: their favourite category, if known.
        tags: their interest tags.
    """

    category: str | None = None
    favorite_category: str | None = None
    tags: tuple[str, ...] = ()


def past_products(
    purchases: Sequence[str],
    recent: Sequence[tuple[str, str, float | None]],
    limit: int = MAX_PAST,
) -> list[PastProduct]:
    """The customer's past products, each once: purchases first (newest first), then the
    recent interactions (sku, kind, value) newest first; each named by the strongest kind
    seen. Only what the customer did counts: products shown to them, and feedback or
    ratings that said no (value <= 0, ratings below 4), are not reasons."""
    strongest: dict[str, str] = {}
    order: list[str] = []
    rank = {kind: position for position, kind in enumerate(_KIND_ORDER)}
    done = [(sku, "purchase") for sku in purchases] + [
        (sku, kind) for sku, kind, value in recent if _counts(kind, value)
    ]
    for sku, kind in done:
        if sku not in strongest:
            if len(order) >= limit:
                continue
            strongest[sku] = kind
            order.append(sku)
        elif rank[kind] < rank[strongest[sku]]:
            strongest[sku] = kind
    return [PastProduct(sku, strongest[sku]) for sku in order]


def _counts(kind: str, value: float | None) -> bool:
    if kind == "feedback":
        return value is not None and value > 0
    if kind == "rating":
        return value is not None and value >= GOOD_RATING
    return kind in _KIND_ORDER


def most_related(
    lead: str,
    past: Sequence[PastProduct],
    relatedness: Callable[[str, Sequence[str]], Sequence[float | None]],
    threshold: float,
) -> PastProduct | None:
    """The past product most related to ``lead`` at or above ``threshold`` (ties: the
    earlier one), or None. The lead itself counts when it is a past product: "because
    you looked at X" is true of X."""
    if not past:
        return None
    best: PastProduct | None = None
    best_score = threshold
    for product, score in zip(past, relatedness(lead, [p.sku for p in past]), strict=True):
        if score is not None and (score > best_score or (best is None and score >= threshold)):
            best, best_score = product, score
    return best


def because_of(product: PastProduct, title: str) -> str:
    """ "because you bought X" (or put in your cart, liked, rated, looked at)."""
    return _PHRASES.get(product.kind, "because you looked at {}").format(title)


def like_reason(source: str, title: str) -> str | None:
    """The reason of a "something like X" list led by ``source`` (X's ``title`` named),
    or None for a strategy that did not start from X (its :func:`fallback_reason`)."""
    phrase = _LIKE_PHRASES.get(source)
    return phrase.format(title) if phrase is not None else None


def fallback_reason(  # noqa: PLR0911  # one sentence per documented case
    source: str, lead: ProductRecord | None, context: ReasonContext
) -> str:
    """The reason when no past product is related enough, or the strategy used none.

    In order: the category asked about; the favourite category, when the lead product is
    in it (bestsellers excepted: they are not chosen by taste); what content looked at;
    the bestsellers; else what shoppers like the customer love.
    """
    if context.category:
        return f"because you asked about {context.category}"
    in_favourite = lead is not None and lead.category == context.favorite_category
    if in_favourite and source != "popular":
        return f"because you like {context.favorite_category}"
    if source == "content":
        if context.favorite_category:
            return f"because you like {context.favorite_category}"
        if context.tags:
            return f"because you're interested in {interest_words(context.tags[0])}"
        return "picked for you"
    if source == "popular":
        return BESTSELLERS
    return SIMILAR_SHOPPERS
