"""Training from the store: the content model and ALS, their artifacts, optional precompute.

``personalize train`` runs this. A running action server picks the new artifacts up by
itself (its holders check the ``CURRENT`` pointers), so training never restarts it.
Everything a server needs from scikit-learn is computed here and stored in the content
artifact, so serving never imports it.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import numpy as np

from rasa_personalize.cache.precomputed import PrecomputedCache
from rasa_personalize.errors import InvalidInputError
from rasa_personalize.recommend.als import AlsParams, AlsRecommender
from rasa_personalize.recommend.artifacts import als_dir, content_dir, save_artifact
from rasa_personalize.recommend.confidence import store_confidence
from rasa_personalize.recommend.content import ContentRecommender, ProductText
from rasa_personalize.recommend.content_artifacts import ContentArtifact, save_content_artifact
from rasa_personalize.recommend.interactions import InteractionData
from rasa_personalize.recommend.versions import prune_artifacts
from rasa_personalize.store.catalogue import (
    customer_ids_by_key,
    read_training_rows,
    replace_precomputed,
)
from rasa_personalize.store.sql_store import SqlStore

Progress = Callable[[str, int, int], None]

# Shop data: implicit signals of mixed strength, so BM25 evens out heavy and light users.
SHOP_ALS_PARAMS: Final = AlsParams(
    factors=64, regularization=1.0, iterations=15, alpha=2.0, weighting="bm25"
)
PRECOMPUTE_DEPTH: Final = 50
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


async def train_from_store(
    store: SqlStore,
    model_dir: Path,
    *,
    params: AlsParams = SHOP_ALS_PARAMS,
    precompute: bool = False,
    progress: Progress | None = None,
    cache: PrecomputedCache | None = None,
) -> TrainingReport:
    """Fit the content model on the catalogue and ALS on the store's interactions, write a
    new artifact of each, optionally precompute.

    The content model comes first: it needs products only, so a shop without
    interactions yet still gets one before the error below.

    Raises:
        InvalidInputError: the store has no interactions with products to learn from.
    """
    started = time.perf_counter()
    report = progress or (lambda stage, done, total: None)
    content = await train_content(store, model_dir, progress=report)
    report("reading", 0, 1)
    async with store.sessions() as session:
        rows = await read_training_rows(session)
    report("reading", 1, 1)
    if not rows.skus:
        raise InvalidInputError(
            "the store has no interactions with products: run `personalize seed-demo` "
            "or import interactions first"
        )
    values = [np.nan if value is None else value for value in rows.values]
    data = InteractionData.from_events(
        rows.customer_keys, rows.skus, rows.kinds, values, store_confidence()
    )
    model = AlsRecommender(**asdict(params))
    model.fit(data, callback=lambda done, total: report("training", done, total))
    artifact = save_artifact(
        model,
        als_dir(model_dir),
        counts={"interactions": len(rows.skus), "pairs": len(data)},
        # What a customer does after this is new to the model (see recommend/incremental).
        data_cutoff=rows.newest_at,
    )
    prune_artifacts(als_dir(model_dir), keep=KEEP_VERSIONS)
    precomputed = 0
    if precompute:
        precomputed = await _precompute(
            store,
            model,
            seen=_seen_by_user(data),
            version=artifact.version,
            report=report,
            cache=cache,
        )
    return TrainingReport(
        version=artifact.version,
        customers=len(model.user_ids_),
        products=len(model.item_ids_),
        interactions=len(rows.skus),
        seconds=time.perf_counter() - started,
        precomputed=precomputed,
        content_version=content.version if content is not None else None,
        content_products=len(content.model.item_ids_) if content is not None else 0,
    )


async def train_content(
    store: SqlStore, model_dir: Path, *, progress: Progress | None = None
) -> ContentArtifact | None:
    """Fit the content model (TF-IDF) on the catalogue and write its artifact.

    Returns None when the store has no products (nothing to index, nothing written).

    Raises:
        InvalidInputError: the products have no indexable text at all.
    """
    report = progress or (lambda stage, done, total: None)
    report("content", 0, 1)
    # The popularity rows come along; the catalogue is what counts here.
    products, _ = await store.read_recommendation_inputs()
    if not products:
        return None
    texts = [
        ProductText(p.sku, p.title, p.description, p.category, p.brand or "") for p in products
    ]
    # scikit-learn's fit is CPU work: keep the event loop (and progress bars) responsive.
    model = await asyncio.to_thread(ContentRecommender().fit, texts)
    artifact = save_content_artifact(model, content_dir(model_dir))
    prune_artifacts(content_dir(model_dir), keep=KEEP_VERSIONS)
    report("content", 1, 1)
    return artifact


__all__ = [
    "PRECOMPUTE_DEPTH",
    "SHOP_ALS_PARAMS",
    "TrainingReport",
    "als_dir",
    "store_confidence",
    "train_content",
    "train_from_store",
]


def _seen_by_user(data: InteractionData) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for user, item in zip(data.user_ids.tolist(), data.item_ids.tolist(), strict=True):
        seen[user].add(item)
    return seen


async def _precompute(
    store: SqlStore,
    model: AlsRecommender,
    *,
    seen: dict[str, set[str]],
    version: str,
    report: Progress,
    cache: PrecomputedCache | None,
) -> int:
    """Top ``PRECOMPUTE_DEPTH`` items per customer in the model, seen items excluded.

    Written to SQL, and to Redis too when a cache is given (keyed by customer key).
    """
    keys = [str(key) for key in model.user_ids_.ids]
    lists: list[tuple[int, list[list[object]]]] = []
    by_key: list[tuple[str, list[list[object]]]] = []
    async with store.sessions.begin() as session:
        ids = await customer_ids_by_key(session, keys)
        batch = 2_000
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            results = model.recommend_batch(
                chunk, PRECOMPUTE_DEPTH, exclude=[seen.get(key, ()) for key in chunk]
            )
            for key, scored in zip(chunk, results, strict=True):
                items: list[list[object]] = [[s.item_id, round(float(s.score), 6)] for s in scored]
                by_key.append((key, items))
                if key in ids:
                    lists.append((ids[key], items))
            report("precomputing", min(start + batch, len(keys)), len(keys))
        written = await replace_precomputed(session, lists, version)
    if cache is not None:
        await cache.write(by_key, version)
    return written
