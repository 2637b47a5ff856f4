"""Training from the store: the content model, the recommender chosen on validation,
products bought together; their artifacts; optional precompute.

``personalize train`` runs this. The collaborative model it serves is the one that wins
on validation carved from the store's own interactions (``demo_data.tune_for_store``,
exactly what ``personalize evaluate --dataset demo`` reports as ``recommender``): the
best ALS parameters of ``shop_grid()``, blended with EASE when the blend does better.
The winner is then fitted on every interaction and written as one artifact. A store
with too little history to validate on gets ``SHOP_ALS_PARAMS``. Validation is random
by default; ``validation="time"`` validates on each customer's newest interactions and
may pick EASE's recency, which the served blend then carries (``pair_recency_ranks``).

The new recommender serves only if the guardrail lets it
(:mod:`rasa_personalize.recommend.guardrail`: its precision@10 on each customer's most
recent interactions must reach 95 % of the serving model's); otherwise it is written as
a candidate (``personalize models promote`` can serve it later) and nothing is
precomputed from it. The content and bought-together models have no such figure and
serve as soon as they are trained.

A running action server picks the new artifacts up by itself (its holders check the
``CURRENT`` pointers), so training never restarts it. Everything a server needs from
scikit-learn is computed here and stored in the content artifact, so serving never
imports it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
import scipy.sparse
from threadpoolctl import threadpool_limits

from rasa_personalize.cache.precomputed import PRECOMPUTE_DEPTH, PrecomputedCache
from rasa_personalize.clock import utc_now
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import als_dir, content_dir, load_artifact, save_artifact
from rasa_personalize.recommend.association_artifacts import (
    AssociationArtifact,
    associations_dir,
    save_association_artifact,
)
from rasa_personalize.recommend.associations import ItemAssociations
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.content import ContentRecommender, ProductText
from rasa_personalize.recommend.content_artifacts import ContentArtifact, save_content_artifact
from rasa_personalize.recommend.demo_data import (
    SHOP_ALS_PARAMS,
    TUNING_CUSTOMERS,
    load_store_events,
    store_events,
    tune_for_store,
)
from rasa_personalize.recommend.ease import MAX_EASE_ITEMS, EaseBlend
from rasa_personalize.recommend.errors import ArtifactError
from rasa_personalize.recommend.evaluation import (
    DEFAULT_SEED,
    EvaluationData,
    HybridConfig,
    ModelConfig,
    RecommenderConfig,
    ranks_among_users,
)
from rasa_personalize.recommend.guardrail import HOLDOUT_K, Verdict, check_recommender
from rasa_personalize.recommend.protocols import Validation
from rasa_personalize.recommend.served import ServedModel
from rasa_personalize.recommend.store_columns import (
    PairRows,
    PopularityRow,
    SeenItems,
    pair_rows,
    popularity_rows,
    purchase_baskets,
)
from rasa_personalize.recommend.versions import current_version, prune_artifacts
from rasa_personalize.store.catalogue import (
    active_customer_keys,
    customer_ids_by_key,
    read_first_seen,
    read_latest_segments,
    replace_precomputed,
)
from rasa_personalize.store.interaction_columns import InteractionColumns, read_interaction_columns
from rasa_personalize.store.sql_store import SqlStore

Progress = Callable[[str, int, int], None]

# Versions kept of each model: the serving one and two to roll back to.
KEEP_VERSIONS: Final = 3


@dataclass(frozen=True)
class TrainingReport:
    """What one training run did."""

    version: str
    customers: int
    products: int
    interactions: int
    seconds: float
    precomputed: int
    # The content model trained with it (None: the store has no products).
    content_version: str | None = None
    content_products: int = 0
    # The products-bought-together model trained with it.
    associations_version: str | None = None
    association_pairs: int = 0
    # What is served: "als" or "als+ease", how it was chosen, and its validation figures.
    model: str = "als"
    choice: str = ""
    validation: Mapping[str, Any] = field(default_factory=dict)
    # The guardrail's decision: False when the new recommender was kept as a candidate.
    promoted: bool = True
    guardrail: Verdict | None = None


@dataclass(frozen=True)
class ModelChoice:
    """The collaborative model to fit and serve, and why.

    Attributes:
        config: ALS alone or the ALS + EASE blend.
        how: "validation" (chosen on a validation split), "given" (parameters passed
            in) or "fallback" (too little history to validate: ``SHOP_ALS_PARAMS``).
        validation: the winner's validation figures (and ALS alone's), when validated.
    """

    config: ModelConfig
    how: str
    validation: Mapping[str, Any] = field(default_factory=dict)


async def train_from_store(
    store: SqlStore,
    model_dir: Path,
    *,
    params: AlsParams | None = None,
    precompute: bool = False,
    progress: Progress | None = None,
    cache: PrecomputedCache | None = None,
    force: bool = False,
    precompute_active_days: int | None = None,
    validation: Validation = "random",
) -> TrainingReport:
    """Fit the content model on the catalogue and the recommender on the store's
    interactions, write a new artifact of each, optionally precompute.

    The content model comes first: it needs products only, so a shop without
    interactions yet still gets one before the error below.

    Args:
        params: fit ALS alone with these parameters; None (the default) chooses the
            model on validation (see the module docstring).
        precompute: store each customer's top items from the new recommender (only
            when it serves: a candidate's lists would replace the serving model's).
        force: serve the new recommender even when the guardrail would keep it as a
            candidate (the verdict records it).
        precompute_active_days: precompute only for customers with an interaction in
            that many last days (None: for every customer in the model).
        validation: how the model is chosen: "random" (seeded 80/20 splits of the
            interactions) or "time" (each customer's newest interactions, in the order
            they were stored, validate; EASE's recency is then tried too, and served
            when it wins). See ``demo_data.tune_for_store``.

    Raises:
        InvalidInputError: the store has no interactions with products to learn from.
    """
    started = time.perf_counter()
    report = progress or (lambda stage, done, total: None)
    report("reading", 0, 1)
    # One read for everything below: popularity, the fit, the validation data, the baskets.
    async with store.sessions() as session:
        columns = await read_interaction_columns(session)
        segment_customers, segments = await read_latest_segments(session)
    report("reading", 1, 1)
    popularity = popularity_rows(
        columns, np.asarray(segment_customers, dtype=np.int64), np.asarray(segments, np.str_)
    )
    content = await train_content(store, model_dir, progress=report, popularity=popularity)
    if not len(columns):
        raise InvalidInputError(
            "the store has no interactions with products: run `personalize seed-demo` "
            "or import interactions first"
        )
    # The parameter search and the guardrail both search this sample
    # (``demo_data.tuning_sample``, which keeps it as it is): built for it alone.
    events = store_events(columns, customers=TUNING_CUSTOMERS, seed=DEFAULT_SEED)
    choice = (
        ModelChoice(RecommenderConfig(params, store_confidence()), "given")
        if params is not None
        else await _choose(events, report, validation)
    )
    data = await asyncio.to_thread(pair_rows, columns, store_confidence())
    blend = choice.config if isinstance(choice.config, HybridConfig) else None
    als_config = blend.als if blend is not None else choice.config
    assert isinstance(als_config, RecommenderConfig)
    model = AlsRecommender(**asdict(als_config.params))
    model.fit_rows(
        data.users,
        data.items,
        data.user_rows,
        data.item_rows,
        data.weights,
        callback=lambda done, total: report("training", done, total),
    )
    ease = None
    if blend is not None and len(model.item_ids_) <= MAX_EASE_ITEMS:
        report("blending", 0, 1)
        # Recency needs each pair's place among its customer's, newest first: the
        # validated blend weighed its input so, and so must the served one.
        ranks = (
            await asyncio.to_thread(pair_recency_ranks, columns, data)
            if blend.ease_recency > 0
            else None
        )
        ease = await asyncio.to_thread(
            EaseBlend.fit,
            data.matrix(),
            l2=blend.ease_l2,
            weight=blend.ease_weight,
            recency=blend.ease_recency,
            ranks=ranks,
        )
        report("blending", 1, 1)
    served: ModelConfig = blend if blend is not None and ease is not None else als_config
    report("guardrail", 0, 1)
    with _one_blas_thread():
        verdict, holdout = await asyncio.to_thread(
            check_recommender, events, served, als_dir(model_dir), force=force
        )
    report("guardrail", 1, 1)
    guardrail: dict[str, Any] = {"guardrail": verdict.to_json_dict()}
    if holdout is not None:
        guardrail.update(
            holdout_precision=round(holdout.candidate, 4),
            holdout_users=holdout.customers,
            holdout_k=HOLDOUT_K,
        )
    artifact = save_artifact(
        model,
        als_dir(model_dir),
        metrics={"chosen_by": choice.how, **choice.validation, **guardrail},
        counts={"interactions": len(columns), "pairs": len(data)},
        # What a customer does after this is new to the model (see recommend/incremental).
        data_cutoff=columns.newest_at,
        make_current=verdict.promoted,
        ease=ease,
    )
    prune_artifacts(als_dir(model_dir), keep=KEEP_VERSIONS)
    associations = await train_associations(store, model_dir, columns, progress=report)
    precomputed = 0
    if precompute and verdict.promoted:
        precomputed = await _precompute(
            store,
            artifact.served,
            seen=data.seen(),
            version=artifact.version,
            report=report,
            cache=cache,
            active_days=precompute_active_days,
        )
    return TrainingReport(
        version=artifact.version,
        customers=len(model.user_ids_),
        products=len(model.item_ids_),
        interactions=len(columns),
        seconds=time.perf_counter() - started,
        precomputed=precomputed,
        content_version=content.version if content is not None else None,
        content_products=len(content.model.item_ids_) if content is not None else 0,
        associations_version=associations.version,
        association_pairs=int(associations.model.related_.nnz),
        model=artifact.served.kind,
        choice=choice.how,
        validation=dict(choice.validation),
        promoted=verdict.promoted,
        guardrail=verdict,
    )


def pair_recency_ranks(columns: InteractionColumns, pairs: PairRows) -> scipy.sparse.csr_matrix:
    """Each pair of ``pairs`` (from ``pair_rows(columns, ...)``) ranked among its
    customer's pairs by its newest interaction in ``columns`` (insertion order), as
    ``EaseBlend.fit`` takes them: customers x products, 1 = newest. On the same rows,
    what the evaluation's ``pair_ranks`` gives (plus one), so the served recency blend
    is the validated one.
    """
    keys, skus = np.sort(columns.customer_keys), np.sort(columns.skus)
    codes = np.searchsorted(keys, columns.customer_keys).astype(np.int64)[columns.customers]
    codes *= len(skus)
    codes += np.searchsorted(skus, columns.skus)[columns.products]
    # Rows come in insertion order: a pair's first row from the end is its newest.
    reversed_codes, first_from_end = np.unique(codes[::-1], return_index=True)
    del codes
    newest = (len(columns) - 1 - first_from_end).astype(np.int64)
    wanted = np.searchsorted(keys, pairs.users.ids).astype(np.int64)[pairs.user_rows]
    wanted *= len(skus)
    wanted += np.searchsorted(skus, pairs.items.ids)[pairs.item_rows]
    ranks = ranks_among_users(pairs.user_rows, newest[np.searchsorted(reversed_codes, wanted)])
    return scipy.sparse.csr_matrix(
        (ranks + 1.0, (pairs.user_rows, pairs.item_rows)),
        shape=(len(pairs.users), len(pairs.items)),
    )


async def choose_model(
    store: SqlStore, *, progress: Progress | None = None, validation: Validation = "random"
) -> ModelChoice:
    """The recommender that wins on validation carved from the store's interactions.

    The same search as ``personalize evaluate --dataset demo`` (``tune_for_store``: the
    ALS grid, then the EASE blend); its test rows are never used here either. A store
    with too little history for a validation split gets ``SHOP_ALS_PARAMS``.
    """
    async with store.sessions() as session:
        data = await load_store_events(session)
    return await _choose(data, progress or (lambda stage, done, total: None), validation)


async def _choose(data: EvaluationData, report: Progress, validation: Validation) -> ModelChoice:
    try:
        with _one_blas_thread():
            tuning = await asyncio.to_thread(
                tune_for_store, data, progress=report, validation=validation
            )
    except InvalidInputError:
        return ModelChoice(RecommenderConfig(SHOP_ALS_PARAMS, store_confidence()), "fallback")
    best_blend = tuning.blend_results[0]
    return ModelChoice(
        tuning.recommender,
        "validation",
        {
            "validation_precision": best_blend.metrics.precision
            if isinstance(tuning.recommender, HybridConfig)
            else tuning.als_results[0].metrics.precision,
            "validation_precision_als": tuning.als_results[0].metrics.precision,
            "validation_users": tuning.als_results[0].metrics.users,
            "validation_k": 10,
            "validation_protocol": validation,
        },
    )


async def train_content(
    store: SqlStore,
    model_dir: Path,
    *,
    progress: Progress | None = None,
    popularity: Sequence[PopularityRow] | None = None,
) -> ContentArtifact | None:
    """Fit the content model (TF-IDF) on the catalogue and write its artifact, with the
    ``popularity`` counts when given (servers then read them instead of the store).

    Returns None when the store has no products (nothing to index, nothing written).

    Raises:
        InvalidInputError: the products have no indexable text at all.
    """
    report = progress or (lambda stage, done, total: None)
    report("content", 0, 1)
    # The catalogue alone: the store's popularity count (15 s at ten million rows) is
    # not needed here.
    products = await store.read_products()
    if not products:
        return None
    texts = [
        ProductText(p.sku, p.title, p.description, p.category, p.brand or "") for p in products
    ]
    # scikit-learn's fit is CPU work: keep the event loop (and progress bars) responsive.
    model = await asyncio.to_thread(ContentRecommender().fit, texts)
    artifact = save_content_artifact(model, content_dir(model_dir), popularity=popularity)
    prune_artifacts(content_dir(model_dir), keep=KEEP_VERSIONS)
    report("content", 1, 1)
    return artifact


async def train_associations(
    store: SqlStore,
    model_dir: Path,
    columns: InteractionColumns,
    *,
    progress: Progress | None = None,
) -> AssociationArtifact:
    """Fit products bought together (purchases of ``columns``) and first-seen times; save them."""
    report = progress or (lambda stage, done, total: None)
    report("associations", 0, 1)
    async with store.sessions() as session:
        first_seen = await read_first_seen(session)
    baskets, skus = purchase_baskets(columns)
    model = await asyncio.to_thread(
        ItemAssociations().fit,
        baskets,
        skus,
        first_seen={sku: when.timestamp() for sku, when in first_seen.items()},
    )
    artifact = save_association_artifact(model, associations_dir(model_dir))
    prune_artifacts(associations_dir(model_dir), keep=KEEP_VERSIONS)
    report("associations", 1, 1)
    return artifact


@dataclass(frozen=True)
class PrecomputeReport:
    """What :func:`precompute_serving` wrote: the lists of one model version."""

    version: str
    lists: int


async def precompute_serving(
    store: SqlStore,
    model_dir: Path,
    *,
    progress: Progress | None = None,
    cache: PrecomputedCache | None = None,
) -> PrecomputeReport:
    """Store each customer's top items from the serving recommender (``CURRENT``).

    What ``personalize train --precompute`` does after training, for a model that is
    already serving (the pipeline's last stage, or after ``personalize models promote``).
    Items a customer has in the store are excluded, as when training precomputes.

    Raises:
        ArtifactError: no recommender serves, or it cannot be loaded.
    """
    report = progress or (lambda stage, done, total: None)
    directory = als_dir(model_dir)
    version = current_version(directory)
    if version is None:
        raise ArtifactError(f"no recommender serves in {directory}: run `personalize train`")
    artifact = await asyncio.to_thread(load_artifact, directory / version)
    report("reading", 0, 1)
    async with store.sessions() as session:
        columns = await read_interaction_columns(session)
    report("reading", 1, 1)
    data = await asyncio.to_thread(pair_rows, columns, store_confidence())
    written = await _precompute(
        store,
        artifact.served,
        seen=data.seen(),
        version=artifact.version,
        report=report,
        cache=cache,
    )
    return PrecomputeReport(artifact.version, written)


__all__ = [
    "PRECOMPUTE_DEPTH",
    "SHOP_ALS_PARAMS",
    "PrecomputeReport",
    "TrainingReport",
    "als_dir",
    "precompute_serving",
    "store_confidence",
    "train_associations",
    "train_content",
    "train_from_store",
]


def _one_blas_thread() -> threadpool_limits:
    """BLAS on one thread while ranking customers one by one (search, guardrail,
    precompute): each is one small matrix-vector product, which BLAS threads slow down
    instead (2.5 ms against 0.2 ms at 50,000 products on the two busy cores of the
    million bench). Scores may differ in the last bit from a threaded product (at most
    1.5e-8 there), as they do between machines with other core counts; the top 50 of
    5,000 customers sampled came out the same."""
    return threadpool_limits(limits=1, user_api="blas")


async def _precompute(
    store: SqlStore,
    model: ServedModel,
    *,
    seen: SeenItems,
    version: str,
    report: Progress,
    cache: PrecomputedCache | None,
    active_days: int | None = None,
) -> int:
    """Top ``PRECOMPUTE_DEPTH`` items per customer in the model, seen items excluded.

    Written to SQL, and to Redis too when a cache is given (keyed by customer key).
    With ``active_days``, only for the customers with an interaction in that many last
    days (the others' lists are dropped: the hot path scores them when they come back).
    """
    keys = [str(key) for key in model.als.user_ids_.ids]
    if active_days is not None:
        async with store.sessions() as session:
            active = await active_customer_keys(session, utc_now() - timedelta(days=active_days))
        keys = [key for key in keys if key in active]
    lists: list[tuple[int, list[list[object]]]] = []
    by_key: list[tuple[str, list[list[object]]]] = []
    async with store.sessions.begin() as session:
        ids = await customer_ids_by_key(session, keys)
        batch = 2_000
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            with _one_blas_thread():
                results = model.top_batch(
                    chunk, PRECOMPUTE_DEPTH, exclude=[seen.of(key) for key in chunk]
                )
            for key, (skus, scores) in zip(chunk, results, strict=True):
                items: list[list[object]] = [
                    [sku, round(score, 6)] for sku, score in zip(skus, scores, strict=True)
                ]
                by_key.append((key, items))
                if key in ids:
                    lists.append((ids[key], items))
            report("precomputing", min(start + batch, len(keys)), len(keys))
        written = await replace_precomputed(session, lists, version)
    if cache is not None:
        await cache.write(by_key, version)
    return written
