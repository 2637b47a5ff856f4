"""``ContentRecommender``: TF-IDF over product text, cosine similarity.

Answers "something like X" and serves customers who have tags (``interested_in_running``)
or a stated category but no history the collaborative model could use. Each product is
one document: title, description, category and brand, plus one whole-token marker for
the category and one for the brand (``category_running_shoes``), so that an exact
category or brand match counts for more than a shared word. Rows of the TF-IDF matrix
are L2-normalised, so a dot product is the cosine.

Fitting (``personalize train``) uses scikit-learn's ``TfidfVectorizer``; what it learns
(vocabulary, idf weights, stop words) goes into a :class:`TextVectorizer`, which turns
new text into the same vectors with numpy and scipy only. A serving process therefore
loads the fitted model from its artifact (``content_artifacts``) and vectorises queries
and new or changed products without importing scikit-learn.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.preferences import is_dislike
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
# scikit-learn's default token pattern: words of two or more word characters.
TOKEN_PATTERN: Final = re.compile(r"(?u)\b\w\w+\b")


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


def product_document(product: ProductText) -> str:
    """The one text a product is indexed by: its fields and the category/brand markers."""
    return _document(product)


def document_digest(document: str) -> str:
    """A short fingerprint of a product's document: equal text, equal digest.

    Kept per product in the content artifact, so a server reuses the vector of every
    product whose text has not changed since training.
    """
    return hashlib.blake2b(document.encode("utf-8"), digest_size=8).hexdigest()


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


@dataclass(frozen=True, eq=False)
class TextVectorizer:
    """TF-IDF vectors of text against a fitted vocabulary, with numpy and scipy only.

    Does what scikit-learn's ``TfidfVectorizer.transform`` does for the settings
    :meth:`ContentRecommender.fit` uses: lowercase, the default token pattern, stop words
    dropped before n-grams are formed, sublinear tf, the fitted idf, L2-normalised rows
    (float32). A test compares both on the same texts.

    Attributes:
        vocabulary: term -> column.
        idf: idf weight per column.
        stop_words: words dropped before n-grams.
        ngram_range: shortest and longest n-grams, in words.
        sublinear_tf: whether counts become ``1 + log(count)``.
    """

    vocabulary: Mapping[str, int]
    idf: NDArray[np.float32]
    stop_words: frozenset[str]
    ngram_range: tuple[int, int] = (1, 2)
    sublinear_tf: bool = True

    def __post_init__(self) -> None:
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise InvalidInputError(f"ngram_range must be 1 <= min <= max, got {self.ngram_range}")
        if self.idf.shape != (len(self.vocabulary),):
            raise InvalidInputError(
                f"idf must hold one weight per term: {len(self.vocabulary)} terms, "
                f"idf of shape {self.idf.shape}"
            )

    @classmethod
    def from_scikit_learn(cls, fitted: Any) -> TextVectorizer:
        """What a fitted ``TfidfVectorizer`` learned, for transforming without it.

        Raises:
            InvalidInputError: it uses settings this class does not reproduce.
        """
        expected = {
            "analyzer": "word",
            "lowercase": True,
            "strip_accents": None,
            "preprocessor": None,
            "tokenizer": None,
            "token_pattern": TOKEN_PATTERN.pattern,
            "binary": False,
            "use_idf": True,
            "norm": "l2",
        }
        actual = {name: getattr(fitted, name) for name in expected}
        if actual != expected:
            raise InvalidInputError(
                f"only TfidfVectorizer settings {expected} can be served, got {actual}"
            )
        low, high = fitted.ngram_range
        return cls(
            vocabulary={str(term): int(column) for term, column in fitted.vocabulary_.items()},
            idf=np.asarray(fitted.idf_, dtype=np.float32),
            stop_words=frozenset(fitted.get_stop_words() or ()),
            ngram_range=(int(low), int(high)),
            sublinear_tf=bool(fitted.sublinear_tf),
        )

    def terms(self, text: str) -> list[str]:
        """The words and n-grams of ``text`` that would be counted (in or out of the vocabulary)."""
        words = [w for w in TOKEN_PATTERN.findall(text.lower()) if w not in self.stop_words]
        low, high = self.ngram_range
        terms = list(words) if low == 1 else []
        for n in range(max(low, 2), min(high, len(words)) + 1):
            terms.extend(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
        return terms

    def transform(self, texts: Sequence[str]) -> scipy.sparse.csr_matrix:
        """One L2-normalised TF-IDF row per text (float32 CSR; all zeros: no known term)."""
        if isinstance(texts, str):
            raise InvalidInputError("texts must be a sequence of strings, not one string")
        indptr = [0]
        columns: list[int] = []
        counts: list[int] = []
        for text in texts:
            counted: dict[int, int] = {}
            for term in self.terms(text):
                column = self.vocabulary.get(term)
                if column is not None:
                    counted[column] = counted.get(column, 0) + 1
            for column in sorted(counted):
                columns.append(column)
                counts.append(counted[column])
            indptr.append(len(columns))
        data = np.asarray(counts, dtype=np.float32)
        indices = np.asarray(columns, dtype=np.int32)
        if self.sublinear_tf:
            np.log(data, out=data)
            data += np.float32(1.0)
        data *= self.idf[indices]
        # Squares in float32, summed in float64, divided in float64: as scikit-learn's
        # row normalisation does, so the vectors come out the same to the bit.
        offsets = np.asarray(indptr, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts)), np.diff(offsets))
        squares = (data * data).astype(np.float64)
        norms = np.sqrt(np.bincount(rows, weights=squares, minlength=len(texts)))
        norms[norms == 0] = 1.0  # an all-zero row stays zero
        normalised = (data.astype(np.float64) / norms[rows]).astype(np.float32)
        return scipy.sparse.csr_matrix(
            (normalised, indices, offsets),
            shape=(len(texts), len(self.vocabulary)),
        )


class ContentRecommender:
    """Content-based similarity between products and from interests to products.

    Learned attributes:
        item_ids_: the id <-> row map.
        vectorizer_: what the fit learned, to vectorise new text (numpy only).
        item_vectors_: TF-IDF rows (CSR, L2-normalised), in ``item_ids_`` order.
        item_digests_: :func:`document_digest` of each product's document, in row order.
    """

    item_ids_: IdMap
    vectorizer_: TextVectorizer
    item_vectors_: scipy.sparse.csr_matrix
    item_digests_: NDArray[np.str_]

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
        documents = [_document(product) for product in ordered]
        vectorizer = TfidfVectorizer(
            max_features=self.max_features,
            ngram_range=self.ngram_range,
            min_df=self.min_df,
            sublinear_tf=self.sublinear_tf,
            stop_words="english",
            dtype=np.float32,
        )
        try:
            vectors = vectorizer.fit_transform(documents)
        except ValueError as error:  # scikit-learn's "empty vocabulary"
            raise InvalidInputError(f"products have no indexable text: {error}") from error
        self.item_ids_ = index
        self.vectorizer_ = TextVectorizer.from_scikit_learn(vectorizer)
        self.item_vectors_ = scipy.sparse.csr_matrix(vectors, dtype=np.float32)
        self.item_digests_ = np.array([document_digest(d) for d in documents], dtype=np.str_)
        return self

    @classmethod
    def from_fitted(
        cls,
        *,
        item_ids: IdMap,
        item_vectors: scipy.sparse.csr_matrix,
        item_digests: NDArray[np.str_],
        vectorizer: TextVectorizer,
    ) -> ContentRecommender:
        """A fitted model from its parts (an artifact), without scikit-learn.

        Raises:
            InvalidInputError: the parts do not fit together.
        """
        rows, columns = item_vectors.shape
        if rows != len(item_ids) or len(item_digests) != len(item_ids):
            raise InvalidInputError(
                f"{len(item_ids)} items need as many vector rows and digests, got {rows} "
                f"rows and {len(item_digests)} digests"
            )
        if columns != len(vectorizer.vocabulary):
            raise InvalidInputError(
                f"vectors have {columns} columns for a vocabulary of {len(vectorizer.vocabulary)}"
            )
        model = cls(ngram_range=vectorizer.ngram_range, sublinear_tf=vectorizer.sublinear_tf)
        model.item_ids_ = item_ids
        model.item_vectors_ = scipy.sparse.csr_matrix(item_vectors, dtype=np.float32)
        model.item_digests_ = np.asarray(item_digests, dtype=np.str_)
        model.vectorizer_ = vectorizer
        return model

    def for_catalogue(self, products: Sequence[ProductText]) -> ContentRecommender:
        """The fitted vocabulary over another catalogue (numpy only, no refit).

        Products whose text is unchanged keep their fitted vector; new or changed ones
        are vectorised with the fitted vocabulary and idf (words it has never seen do not
        count until the next training); products not in ``products`` are dropped.

        Raises:
            InvalidInputError: no products, or a repeated item id.
        """
        self._check_fitted()
        if not products:
            raise InvalidInputError("products are empty: there is nothing to index")
        index = IdMap.from_ids([product.item_id for product in products], unique=True)
        ordered = sorted(products, key=lambda product: index.row(product.item_id))
        documents = [_document(product) for product in ordered]
        digests = np.array([document_digest(d) for d in documents], dtype=np.str_)
        fitted_rows = index.rows_in(self.item_ids_)
        known = fitted_rows >= 0
        reused = np.zeros(len(index), dtype=np.bool_)
        reused[known] = self.item_digests_[fitted_rows[known]] == digests[known]
        if reused.all() and index.same_ids_as(self.item_ids_):
            return self
        kept_rows = np.flatnonzero(reused)
        fresh_rows = np.flatnonzero(~reused)
        stacked = scipy.sparse.vstack(
            [
                self.item_vectors_[fitted_rows[kept_rows]],
                self.vectorizer_.transform([documents[row] for row in fresh_rows]),
            ],
            format="csr",
        )
        # Stacked rows are the kept products, then the fresh ones: put them in row order.
        vectors = stacked[np.argsort(np.concatenate([kept_rows, fresh_rows]))]
        return ContentRecommender.from_fitted(
            item_ids=index,
            item_vectors=scipy.sparse.csr_matrix(vectors),
            item_digests=digests,
            vectorizer=self.vectorizer_,
        )

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

        A dislike tag (``not_interested_in_kitchen``) is no interest: it is skipped. Returns
        an empty list when nothing matches, so the caller moves on to the next strategy.
        """
        self._check_fitted()
        if isinstance(categories, str) or isinstance(tags, str):
            raise InvalidInputError("categories and tags must be sequences, not one string")
        parts = [f"{category} category_{_slug(category)}" for category in categories if category]
        parts += [interest_words(tag) for tag in tags if tag and not is_dislike(tag)]
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
        # A dense query makes this one sparse matrix-vector product: the sparse x sparse
        # product allocated a result matrix and cost five times as much (10,000 products).
        dense = np.asarray(query.toarray(), dtype=np.float32).ravel()
        scores: NDArray[np.float32] = np.asarray(self.item_vectors_ @ dense, dtype=np.float32)
        allowed = scores > 0
        mask = allowed_rows(self.item_ids_, exclude=exclude, candidates=candidates)
        if mask is not None:
            allowed &= mask
        return to_scored(top_n(scores, n, allowed), scores, self.item_ids_)
