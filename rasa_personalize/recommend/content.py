"""``ContentRecommender``: TF-IDF over product text, cosine similarity.

Answers "something like X" and serves customers who have tags (``interested_in_running``)
or a stated category but no history the collaborative model could use. Each product is
one document: title, description, category and brand, plus one whole-token marker for
the category and one for the brand (``category_running_shoes``), so that an exact
category or brand match counts for more than a shared word. Rows of the TF-IDF matrix
are L2-normalised, so a dot product is the cosine.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.errors import NotFittedError
from rasa_personalize.recommend.filters import (
    Candidates,
    Scored,
    allowed_rows,
    check_n,
    to_scored,
    top_n,
)
from rasa_personalize.recommend.ids import IdMap

if TYPE_CHECKING:
    from typing_extensions import Self

# Tag prefixes that only say "this is an interest"; the rest of the tag is the topic.
INTEREST_TAG_PREFIXES: Final = ("interested_in_", "interest_", "likes_", "prefers_", "fan_of_")


@dataclass(frozen=True)
class ProductText:
    """The text fields of one product that content similarity looks at."""

    item_id: str
    title: str
    description: str = ""
    category: str = ""
    brand: str = ""


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def _document(product: ProductText) -> str:
    markers = []
    if product.category:
        markers.append(f"category_{_slug(product.category)}")
    if product.brand:
        markers.append(f"brand_{_slug(product.brand)}")
    return " ".join(
        part
        for part in (product.title, product.description, product.category, product.brand, *markers)
        if part
    )


def interest_words(tag: str) -> str:
    """The topic of a tag: ``interested_in_trail_running`` -> ``trail running``."""
    lowered = tag.lower()
    for prefix in INTEREST_TAG_PREFIXES:
        if lowered.startswith(prefix):
            lowered = lowered[len(prefix) :]
            break
    return lowered.replace("_", " ").strip()


class ContentRecommender:
    """Content-based similarity between products and from interests to products.

    Learned attributes:
        item_ids_: the id <-> row map.
        vectorizer_: the fitted ``TfidfVectorizer``.
        item_vectors_: TF-IDF rows (CSR, L2-normalised), in ``item_ids_`` order.
    """

    item_ids_: IdMap
    vectorizer_: Any
    item_vectors_: scipy.sparse.csr_matrix

    def __init__(
        self,
        *,
        max_features: int | None = 50_000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        sublinear_tf: bool = True,
    ) -> None:
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf

    def fit(self, products: Sequence[ProductText]) -> Self:
        """Learn the vocabulary and the product vectors.

        Raises:
            InvalidInputError: no products, a repeated item id, or no usable word at all.
        """
        # Imported here: scikit-learn is slow to import and only training needs it.
        from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

        if not products:
            raise InvalidInputError("products are empty: there is nothing to index")
        index = IdMap.from_ids([product.item_id for product in products], unique=True)
        ordered = sorted(products, key=lambda product: index.row(product.item_id))
        vectorizer = TfidfVectorizer(
            max_features=self.max_features,
            ngram_range=self.ngram_range,
            min_df=self.min_df,
            sublinear_tf=self.sublinear_tf,
            stop_words="english",
            dtype=np.float32,
        )
        try:
            vectors = vectorizer.fit_transform([_document(product) for product in ordered])
        except ValueError as error:  # scikit-learn's "empty vocabulary"
            raise InvalidInputError(f"products have no indexable text: {error}") from error
        self.item_ids_ = index
        self.vectorizer_ = vectorizer
        self.item_vectors_ = scipy.sparse.csr_matrix(vectors)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_vectors_"):
            raise NotFittedError("this ContentRecommender is not fitted yet: call fit() first")

    def similar_to(
        self,
        item_id: str,
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """Products whose text is most like ``item_id``'s; never the product itself.

        Only products that share at least one term are returned.

        Raises:
            UnknownIdError: the product is not in the model.
        """
        self._check_fitted()
        row = self.item_ids_.row(item_id)
        return self._best(
            self.item_vectors_[row], n, exclude={*exclude, item_id}, candidates=candidates
        )

    def for_interests(
        self,
        categories: Sequence[str] = (),
        tags: Sequence[str] = (),
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """Products matching stated categories and interest tags.

        Returns an empty list when nothing matches, so the caller moves on to the next
        strategy.
        """
        self._check_fitted()
        if isinstance(categories, str) or isinstance(tags, str):
            raise InvalidInputError("categories and tags must be sequences, not one string")
        parts = [f"{category} category_{_slug(category)}" for category in categories if category]
        parts += [interest_words(tag) for tag in tags if tag]
        return self.for_text(" ".join(parts), n, exclude=exclude, candidates=candidates)

    def for_text(
        self,
        text: str,
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """Products matching free text (a search phrase, joined interests)."""
        self._check_fitted()
        check_n(n)
        if not text.strip():
            return []
        query = self.vectorizer_.transform([text])
        return self._best(query, n, exclude=exclude, candidates=candidates)

    def _best(
        self,
        query: scipy.sparse.csr_matrix,
        n: int,
        *,
        exclude: Collection[str],
        candidates: Candidates | None,
    ) -> list[Scored]:
        check_n(n)
        scores: NDArray[np.float32] = np.asarray(
            (self.item_vectors_ @ query.T).toarray(), dtype=np.float32
        ).ravel()
        allowed = scores > 0
        mask = allowed_rows(self.item_ids_, exclude=exclude, candidates=candidates)
        if mask is not None:
            allowed &= mask
        return to_scored(top_n(scores, n, allowed), scores, self.item_ids_)
