"""``AlsRecommender``: a typed, scikit-learn style adapter over implicit's CPU ALS.

implicit fits the factors; everything on the request path is plain numpy on the learned
arrays (one matrix-vector product, a mask, ``argpartition``), so a request neither calls
into implicit nor needs the training matrix. The adapter adds what implicit leaves to
its callers: external id <-> row maps, confidence weighting (none, BM25, log) that is
remembered so a new customer's vector is computed the same way, business filters, and
strict input checks.

Confidence: implicit treats a stored value ``c`` as "liked, with confidence ``c``" and
every missing pair as "not liked, confidence 1"; the fit sees ``alpha * f(weight)``
where ``f`` is the weighting. BM25 shrinks the weight of items that everyone interacts
with (idf) and of customers with very many interactions (length norm), which usually
helps precision and catalogue coverage.

Threads: OpenBLAS's own thread pool fights implicit's threads and makes fitting many
times slower (implicit warns about it), so fitting runs with BLAS limited to one thread
through ``threadpoolctl``; implicit's ``num_threads`` (0 = all cores) does the parallel
work. Results do not depend on the thread count: each row's solve is independent.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import scipy.sparse
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import threadpool_limits

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.errors import NotFittedError, UnknownIdError
from rasa_personalize.recommend.filters import (
    Candidates,
    Scored,
    allowed_rows,
    check_n,
    select,
    top_n,
)
from rasa_personalize.recommend.ids import IdMap, as_str_array
from rasa_personalize.recommend.interactions import InteractionData

if TYPE_CHECKING:
    from typing_extensions import Self

Weighting = Literal["none", "bm25", "log"]
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)


@dataclass(frozen=True)
class AlsParams:
    """The parameters of an ``AlsRecommender`` (what ``__init__`` takes), as one value.

    Attributes:
        factors: latent factors per user and item.
        regularization: L2 penalty on the factors.
        iterations: ALS sweeps.
        alpha: multiplies every (weighted) confidence.
        weighting: "none", "bm25" or "log" (``log1p``) applied to the summed weights.
        bm25_k1: BM25 saturation: how fast repeated interactions stop adding confidence.
        bm25_b: BM25 length normalisation, 0 (none) to 1 (full).
        random_state: seed of the initial factors; fixed for reproducible artifacts.
        num_threads: implicit's threads when fitting (0 = all cores).
    """

    factors: int = 64
    regularization: float = 0.05
    iterations: int = 15
    alpha: float = 1.0
    weighting: Weighting = "none"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    random_state: int | None = 42
    num_threads: int = 0

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.factors, bool) or not isinstance(self.factors, int) or self.factors < 1:
            problems.append(f"factors must be an int >= 1, got {self.factors!r}")
        if not (np.isfinite(self.regularization) and self.regularization >= 0):
            problems.append(f"regularization must be finite and >= 0, got {self.regularization!r}")
        if (
            isinstance(self.iterations, bool)
            or not isinstance(self.iterations, int)
            or self.iterations < 1
        ):
            problems.append(f"iterations must be an int >= 1, got {self.iterations!r}")
        if not (np.isfinite(self.alpha) and self.alpha > 0):
            problems.append(f"alpha must be finite and > 0, got {self.alpha!r}")
        if self.weighting not in WEIGHTINGS:
            problems.append(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if not (np.isfinite(self.bm25_k1) and self.bm25_k1 >= 0):
            problems.append(f"bm25_k1 must be finite and >= 0, got {self.bm25_k1!r}")
        if not 0 <= self.bm25_b <= 1:
            problems.append(f"bm25_b must be in [0, 1], got {self.bm25_b!r}")
        if self.num_threads < 0:
            problems.append(f"num_threads must be >= 0, got {self.num_threads!r}")
        if problems:
            raise InvalidInputError("invalid ALS parameters: " + "; ".join(problems))


class AlsRecommender:
    """Implicit-feedback matrix factorisation (ALS) with id maps and business filters.

    scikit-learn conventions: ``__init__`` only stores parameters, ``fit`` learns the
    state below and returns ``self``; using the model before that raises
    ``NotFittedError``. Item and user ids are external strings (SKUs, customer keys).

    Learned attributes:
        user_factors_: float32 array (users, factors), rows follow ``user_ids_``.
        item_factors_: float32 array (items, factors), rows follow ``item_ids_``.
        user_ids_, item_ids_: the id <-> row maps.
        item_idf_: BM25 idf per item (ones unless ``weighting == "bm25"``).
        mean_user_weight_: mean summed weight per user, BM25's length normaliser.
    """

    user_factors_: NDArray[np.float32]
    item_factors_: NDArray[np.float32]
    user_ids_: IdMap
    item_ids_: IdMap
    item_idf_: NDArray[np.float64]
    mean_user_weight_: float

    def __init__(
        self,
        *,
        factors: int = 64,
        regularization: float = 0.05,
        iterations: int = 15,
        alpha: float = 1.0,
        weighting: Weighting = "none",
        bm25_k1: float = 100.0,
        bm25_b: float = 0.8,
        random_state: int | None = 42,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.iterations = iterations
        self.alpha = alpha
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.random_state = random_state
        self.num_threads = num_threads
        # Derived from the learned factors on first use; reset by fit / from_factors.
        self._item_norms: NDArray[np.float32] | None = None
        self._gram: NDArray[np.float64] | None = None

    @classmethod
    def from_params(cls, params: AlsParams) -> AlsRecommender:
        """An unfitted model with these parameters."""
        return cls(**asdict(params))

    @property
    def params(self) -> AlsParams:
        """The parameters, validated."""
        return AlsParams(
            factors=self.factors,
            regularization=self.regularization,
            iterations=self.iterations,
            alpha=self.alpha,
            weighting=self.weighting,
            bm25_k1=self.bm25_k1,
            bm25_b=self.bm25_b,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )

    def get_params(self) -> dict[str, Any]:
        """The parameters as a dict (scikit-learn's ``get_params``)."""
        return asdict(self.params)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != getattr(AlsParams, k)}
        return f"AlsRecommender({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- fitting -----------------------------------------------------------------------

    def fit(
        self,
        interactions: InteractionData,
        *,
        show_progress: bool = False,
        callback: Callable[[int, int], None] | None = None,
    ) -> Self:
        """Learn factors from interactions.

        Args:
            interactions: (user, item, weight) rows; a repeated pair's weights are summed.
            show_progress: let implicit draw its tqdm bar.
            callback: called as ``callback(done, total)`` after each iteration (for a
                progress bar of the caller's own).

        Raises:
            InvalidInputError: invalid parameters or no positive weight at all.
        """
        if not isinstance(interactions, InteractionData):
            raise InvalidInputError(
                f"fit expects InteractionData, got {type(interactions).__name__}"
            )
        keep = interactions.weights > 0
        if not keep.any():
            raise InvalidInputError("every interaction weight is 0: there is nothing to train on")
        users = interactions.user_ids[keep]
        items = interactions.item_ids[keep]
        user_ids, item_ids = IdMap.from_ids(users), IdMap.from_ids(items)
        return self.fit_rows(
            user_ids,
            item_ids,
            np.searchsorted(user_ids.ids, users),
            np.searchsorted(item_ids.ids, items),
            interactions.weights[keep],
            show_progress=show_progress,
            callback=callback,
        )

    def fit_rows(
        self,
        user_ids: IdMap,
        item_ids: IdMap,
        user_rows: NDArray[np.intp],
        item_rows: NDArray[np.intp],
        weights: NDArray[np.float64],
        *,
        show_progress: bool = False,
        callback: Callable[[int, int], None] | None = None,
    ) -> Self:
        """``fit`` on interactions already mapped to rows of the id maps it learns for.

        Training from the store's columns comes here directly: with ten million
        interactions, the strings of ``InteractionData`` (a 64-character key per row)
        and sorting them cost more than the fit. The maps must hold every user and item
        of a row, and only those, and ``weights`` must be > 0; ``fit`` makes sure of that.
        """
        params = self.params
        matrix = scipy.sparse.csr_matrix(
            (weights, (user_rows, item_rows)),
            shape=(len(user_ids), len(item_ids)),
            dtype=np.float64,
        )
        matrix.sum_duplicates()
        row_sums = np.asarray(matrix.sum(axis=1)).ravel()
        mean_user_weight = float(row_sums.mean())
        item_idf = (
            _bm25_idf(np.bincount(matrix.indices, minlength=len(item_ids)), len(user_ids))
            if params.weighting == "bm25"
            else np.ones(len(item_ids))
        )
        user_of_entry = np.repeat(np.arange(len(user_ids)), np.diff(matrix.indptr))
        matrix.data = _weigh(
            matrix.data,
            params,
            item_idf=item_idf[matrix.indices],
            user_weight=row_sums[user_of_entry],
            mean_user_weight=mean_user_weight,
        )
        user_factors, item_factors = _fit_implicit(
            matrix.astype(np.float32), params, show_progress=show_progress, callback=callback
        )
        self._set_learned(
            user_ids=user_ids,
            item_ids=item_ids,
            user_factors=user_factors,
            item_factors=item_factors,
            item_idf=item_idf,
            mean_user_weight=mean_user_weight,
        )
        return self

    @classmethod
    def from_factors(
        cls,
        params: AlsParams,
        *,
        user_ids: IdMap,
        item_ids: IdMap,
        user_factors: ArrayLike,
        item_factors: ArrayLike,
        item_idf: ArrayLike | None = None,
        mean_user_weight: float = 1.0,
    ) -> AlsRecommender:
        """A fitted model from stored state (an artifact, a benchmark's random factors).

        Raises:
            InvalidInputError: shapes do not match the id maps or ``params.factors``.
        """
        model = cls.from_params(params)
        users = np.ascontiguousarray(user_factors, dtype=np.float32)
        items = np.ascontiguousarray(item_factors, dtype=np.float32)
        idf = np.ones(len(item_ids)) if item_idf is None else np.asarray(item_idf, np.float64)
        expected = {
            "user_factors": ((len(user_ids), params.factors), users.shape),
            "item_factors": ((len(item_ids), params.factors), items.shape),
            "item_idf": ((len(item_ids),), idf.shape),
        }
        for name, (want, got) in expected.items():
            if want != got:
                raise InvalidInputError(f"{name} must have shape {want}, got {got}")
        if not (np.isfinite(users).all() and np.isfinite(items).all()):
            raise InvalidInputError("factors must be finite")
        model._set_learned(
            user_ids=user_ids,
            item_ids=item_ids,
            user_factors=users,
            item_factors=items,
            item_idf=idf,
            mean_user_weight=float(mean_user_weight),
        )
        return model

    def _set_learned(
        self,
        *,
        user_ids: IdMap,
        item_ids: IdMap,
        user_factors: NDArray[np.float32],
        item_factors: NDArray[np.float32],
        item_idf: NDArray[np.float64],
        mean_user_weight: float,
    ) -> None:
        for array in (user_factors, item_factors, item_idf):
            array.setflags(write=False)
        self._item_norms = None
        self._gram = None
        self.user_ids_ = user_ids
        self.item_ids_ = item_ids
        self.item_idf_ = item_idf
        self.mean_user_weight_ = mean_user_weight
        self.user_factors_ = user_factors
        # Set last: its presence is what "fitted" means to _check_fitted.
        self.item_factors_ = item_factors

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_factors_"):
            raise NotFittedError(
                "this AlsRecommender is not fitted yet: call fit() or load an artifact first"
            )

    @property
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``from_factors``) has run."""
        return hasattr(self, "item_factors_")

    def has_user(self, user_id: str) -> bool:
        """Whether the customer is in the model (else: recalculate or fall back)."""
        self._check_fitted()
        return user_id in self.user_ids_

    # -- recommending ----------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """The ``n`` best items for a customer in the model.

        Args:
            user_id: the customer's id as in the training data.
            n: at most this many items.
            exclude: item ids never to return (seen, purchased, in the cart).
            candidates: which items may be returned (see ``filters.Candidates``).

        Raises:
            NotFittedError: the model is not fitted.
            UnknownIdError: the customer is not in the model.
        """
        self._check_fitted()
        vector = self.user_factors_[self.user_ids_.row(user_id)]
        return select(
            self.item_factors_ @ vector, n, self.item_ids_, exclude=exclude, candidates=candidates
        )

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        *,
        exclude: Sequence[Collection[str]] | None = None,
        candidates: Candidates | None = None,
    ) -> list[list[Scored]]:
        """``recommend`` for many customers; equal to calling it once per customer.

        The candidate mask is aligned once for the whole batch (the saving for
        precomputing every customer's list).

        Args:
            user_ids: customers in the model.
            n: at most this many items each.
            exclude: one collection of item ids per customer, or None.
            candidates: shared by every customer.

        Raises:
            UnknownIdError: a customer is not in the model (the first one is named).
            InvalidInputError: ``exclude`` does not have one entry per customer.
        """
        return [
            [Scored(item, score) for item, score in zip(items, scores, strict=True)]
            for items, scores in self.top_batch(user_ids, n, exclude=exclude, candidates=candidates)
        ]

    def top_batch(
        self,
        user_ids: Sequence[str],
        n: int = 10,
        *,
        exclude: Sequence[Collection[str]] | None = None,
        candidates: Candidates | None = None,
    ) -> list[tuple[list[str], list[float]]]:
        """``recommend_batch``'s lists as (item ids, scores) per customer, the same values
        without a ``Scored`` per item (precomputing 150,000 lists of 50 made 7.5 million).

        Raises:
            as ``recommend_batch``.
        """
        self._check_fitted()
        check_n(n)
        if isinstance(user_ids, str):
            raise InvalidInputError("user_ids must be a sequence of ids, not one string")
        if exclude is not None and len(exclude) != len(user_ids):
            raise InvalidInputError(
                f"exclude must have one entry per user: {len(user_ids)} users, "
                f"{len(exclude)} entries"
            )
        rows = [self.user_ids_.row(user_id) for user_id in user_ids]
        shared = allowed_rows(self.item_ids_, candidates=candidates)
        results = []
        for position, row in enumerate(rows):
            # Same matrix-vector product as recommend(): a batched matrix product could
            # round differently and break ties in another order.
            scores = self.item_factors_ @ self.user_factors_[row]
            mask = shared
            if exclude is not None and exclude[position]:
                mask = allowed_rows(
                    self.item_ids_,
                    exclude=exclude[position],
                    candidates=shared,
                )
            best = top_n(scores, n, mask)
            # As to_scored converts them: the same str and float.
            results.append(
                (self.item_ids_.ids[best].tolist(), scores[best].astype(np.float64).tolist())
            )
        return results

    def user_vector_from_items(
        self, item_ids: Sequence[str], weights: ArrayLike | None = None
    ) -> NDArray[np.float32]:
        """A customer vector for someone not in the model, from their recent items.

        The same least-squares step ALS runs for every user, against the fixed item
        factors and with the same weighting, alpha and regularization (implicit's
        ``recalculate_user``). Items the model does not know are skipped.

        Args:
            item_ids: items the customer interacted with (a repeated item sums).
            weights: confidence per entry (``ConfidenceWeights`` mapping), 1 when omitted.

        Raises:
            UnknownIdError: none of the items is in the model.
            InvalidInputError: lengths differ or a weight is negative or not finite.
        """
        self._check_fitted()
        ids = as_str_array(item_ids, "item_ids")
        weight_array = (
            np.ones(len(ids)) if weights is None else np.asarray(weights, dtype=np.float64)
        )
        if weight_array.shape != ids.shape:
            raise InvalidInputError(
                f"item_ids and weights must have the same length, got {len(ids)} and "
                f"{weight_array.size}"
            )
        if not np.isfinite(weight_array).all() or (weight_array < 0).any():
            raise InvalidInputError("weights must be finite and >= 0")
        lookup = self.item_ids_.get
        known = [
            (row, weight)
            for row, weight in zip(
                (lookup(item) for item in ids.tolist()), weight_array.tolist(), strict=True
            )
            if row is not None and weight > 0
        ]
        if not known:
            raise UnknownIdError(
                f"none of the {len(ids)} items (with a positive weight) is in the model"
            )
        item_rows = np.array([row for row, _ in known], dtype=np.intp)
        unique_rows, inverse = np.unique(item_rows, return_inverse=True)
        summed = np.bincount(inverse.ravel(), weights=[weight for _, weight in known]).astype(
            np.float64
        )
        return self._solve_user(unique_rows, summed)

    def user_vector_from_rows(
        self, item_rows: ArrayLike, weights: ArrayLike
    ) -> NDArray[np.float32]:
        """``user_vector_from_items`` for callers that already summed weights per item.

        The hot path's recalculation (``rasa_personalize.recommend.incremental``) aggregates a
        customer's history itself; this skips the id conversion and summing.

        Args:
            item_rows: distinct rows of ``item_ids_``.
            weights: the summed confidence per row, > 0 (pairs at or below 0 are dropped
                before, as training drops them).

        Raises:
            InvalidInputError: empty, lengths differ, a row repeats or is out of range, or
                a weight is not finite and > 0.
        """
        self._check_fitted()
        rows = np.asarray(item_rows, dtype=np.intp)
        summed = np.asarray(weights, dtype=np.float64)
        if rows.ndim != 1 or rows.shape != summed.shape or len(rows) == 0:
            raise InvalidInputError(
                f"item_rows and weights must be non-empty 1-D arrays of one length, got "
                f"shapes {rows.shape} and {summed.shape}"
            )
        if rows.min() < 0 or rows.max() >= len(self.item_ids_):
            raise InvalidInputError(f"item_rows must be in [0, {len(self.item_ids_)})")
        if len(np.unique(rows)) != len(rows):
            raise InvalidInputError("item_rows must be distinct: sum each item's weights first")
        if not (np.isfinite(summed).all() and (summed > 0).all()):
            raise InvalidInputError("weights must be finite and > 0")
        return self._solve_user(rows, summed)

    def _solve_user(
        self, item_rows: NDArray[np.intp], summed: NDArray[np.float64]
    ) -> NDArray[np.float32]:
        """One user's least-squares step against the fixed item factors (see above)."""
        params = self.params
        confidence = (
            _weigh(
                summed,
                params,
                item_idf=self.item_idf_[item_rows],
                user_weight=np.full(len(summed), summed.sum()),
                mean_user_weight=self.mean_user_weight_,
            )
            * params.alpha
        )
        factors = self.item_factors_[item_rows].astype(np.float64)
        lhs = self._item_gram() + params.regularization * np.eye(params.factors)
        lhs += (factors.T * (confidence - 1.0)) @ factors
        rhs = factors.T @ confidence
        return np.linalg.solve(lhs, rhs).astype(np.float32)

    def recommend_for_vector(
        self,
        vector: ArrayLike,
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """``recommend`` for a vector from ``user_vector_from_items``.

        Raises:
            InvalidInputError: the vector does not have ``factors`` finite entries.
        """
        self._check_fitted()
        array = np.asarray(vector, dtype=np.float32)
        if array.shape != (self.item_factors_.shape[1],):
            raise InvalidInputError(
                f"vector must have shape ({self.item_factors_.shape[1]},), got {array.shape}"
            )
        if not np.isfinite(array).all():
            raise InvalidInputError("vector must be finite")
        return select(
            self.item_factors_ @ array, n, self.item_ids_, exclude=exclude, candidates=candidates
        )

    def similar_items(
        self,
        item_id: str,
        n: int = 10,
        *,
        exclude: Collection[str] = (),
        candidates: Candidates | None = None,
    ) -> list[Scored]:
        """Items whose factors point the same way (cosine); never the item itself.

        Raises:
            UnknownIdError: the item is not in the model.
        """
        self._check_fitted()
        row = self.item_ids_.row(item_id)
        norms = self._normalized_items()
        scores = norms @ norms[row]
        return select(scores, n, self.item_ids_, exclude={*exclude, item_id}, candidates=candidates)

    def item_cosines(self, item_id: str, others: Sequence[str]) -> list[float | None]:
        """Cosine of ``item_id``'s factors with each of ``others`` (None: not in the model).

        For telling which of a customer's past products a recommendation relates to:
        a handful of dot products, no scan of the catalogue.
        """
        self._check_fitted()
        row = self.item_ids_.get(item_id)
        if row is None:
            return [None] * len(others)
        norms = self._normalized_items()
        rows = [self.item_ids_.get(other) for other in others]
        known = [other_row for other_row in rows if other_row is not None]
        cosines = iter((norms[known] @ norms[row]).tolist()) if known else iter(())
        return [None if other_row is None else float(next(cosines)) for other_row in rows]

    def _normalized_items(self) -> NDArray[np.float32]:
        if self._item_norms is None:
            lengths = np.linalg.norm(self.item_factors_, axis=1, keepdims=True)
            # An item that never moved from zero has no direction; it scores 0 everywhere.
            normalized = self.item_factors_ / np.maximum(lengths, np.float32(1e-12))
            normalized.setflags(write=False)
            self._item_norms = normalized
        return self._item_norms

    def _item_gram(self) -> NDArray[np.float64]:
        if self._gram is None:
            factors = self.item_factors_.astype(np.float64)
            gram = factors.T @ factors
            gram.setflags(write=False)
            self._gram = gram
        return self._gram


def _bm25_idf(document_frequency: NDArray[np.int64], n_users: int) -> NDArray[np.float64]:
    """Okapi BM25 idf per item; always > 0, so a weight never flips to "disliked"."""
    df = document_frequency.astype(np.float64)
    return np.log1p((n_users - df + 0.5) / (df + 0.5))


def _weigh(
    weights: NDArray[np.float64],
    params: AlsParams,
    *,
    item_idf: NDArray[np.float64],
    user_weight: NDArray[np.float64],
    mean_user_weight: float,
) -> NDArray[np.float64]:
    """Apply the weighting to summed (user, item) weights; alpha is applied by implicit."""
    if params.weighting == "log":
        return np.log1p(weights)
    if params.weighting == "bm25":
        k1, b = params.bm25_k1, params.bm25_b
        length_norm = (1.0 - b) + b * user_weight / max(mean_user_weight, 1e-12)
        return weights * (k1 + 1.0) / (k1 * length_norm + weights) * item_idf
    return weights


def _fit_implicit(
    matrix: scipy.sparse.csr_matrix,
    params: AlsParams,
    *,
    show_progress: bool,
    callback: Callable[[int, int], None] | None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Run implicit's CPU ALS on a (users x items) confidence matrix."""
    # Imported here: implicit loads its compiled extensions and probes BLAS on import,
    # which nothing should pay for until a model is actually trained.
    from implicit.cpu.als import AlternatingLeastSquares  # noqa: PLC0415

    def on_iteration(iteration: int, _elapsed: float, _loss: float | None) -> None:
        if callback is not None:
            callback(iteration + 1, params.iterations)

    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            dtype=np.float32,
            iterations=params.iterations,
            calculate_training_loss=False,
            num_threads=params.num_threads,
            random_state=params.random_state,
        )
        model.fit(matrix, show_progress=show_progress, callback=on_iteration)
        # One exact (Cholesky) solve of every user against the final item factors: fit
        # leaves users solved by a few conjugate-gradient steps against the previous
        # iteration's items, while a customer's vector recalculated on the hot path
        # (``user_vector_from_items``) is the exact solve against the final items. With
        # this step both are the same function of the data, so recalculating a customer
        # who did nothing new gives back their trained vector.
        user_factors = model.recalculate_user(np.arange(matrix.shape[0]), matrix)
    return (
        np.ascontiguousarray(user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )
