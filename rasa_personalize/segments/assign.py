"""One segmentation run: features -> clustering -> ``segment_assignments`` rows -> model file.

:func:`segment_customers` is what ``personalize segment`` runs. Assignments are upserted
per (customer, method) in batches, so each method keeps one current row per customer;
the engine reads the latest row of any method (:func:`rasa_personalize.engine.segment_of`).
Where the store knows the true groups (``customers.synthetic_group``, set by the demo
generator), the run is scored against them with the adjusted Rand index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import adjusted_rand_score

from rasa_personalize.clock import utc_now
from rasa_personalize.segments.clustering import CustomerSegmenter, Segmentation
from rasa_personalize.segments.features import CustomerFeatures, compute_features
from rasa_personalize.segments.model import SegmentModel, load_previous, save_model
from rasa_personalize.slots import CUSTOMER_SEGMENTS
from rasa_personalize.store.segments import (
    delete_segment_assignments,
    read_synthetic_groups,
    write_segment_assignments,
)
from rasa_personalize.store.types import Session

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Agreement:
    """How well segments recover known true groups.

    Attributes:
        adjusted_rand: adjusted Rand index of segments vs. true groups (1: identical
            partitions, about 0: no better than chance).
        cluster_adjusted_rand: the same for the raw clusters (several clusters may share a
            segment, so this is lower when the naming merges clusters correctly).
        customers: customers with a known true group.
    """

    adjusted_rand: float
    cluster_adjusted_rand: float
    customers: int


@dataclass(frozen=True, eq=False)
class SegmentationRun:
    """What :func:`segment_customers` did.

    Attributes:
        model: the new model (also saved under ``model_dir`` when one was given).
        model_path: where it was saved, or None.
        features: the customers' features the model was fitted on.
        segmentation: each customer's cluster, segment and score.
        stored: assignment rows written.
        removed: assignment rows of this method deleted (unassigned DBSCAN noise).
        agreement: scores against true groups, None when the store has none.
    """

    model: SegmentModel
    model_path: Path | None
    features: CustomerFeatures
    segmentation: Segmentation
    stored: int
    removed: int
    agreement: Agreement | None


async def segment_customers(
    session: Session,
    *,
    method: str = "kmeans",
    seed: int = 0,
    model_dir: Path | None = None,
    now: datetime | None = None,
    segmenter: CustomerSegmenter | None = None,
    progress: ProgressCallback | None = None,
) -> SegmentationRun:
    """Segment every customer and store the assignments.

    Args:
        session: a session in the caller's transaction; nothing is committed here.
        method: ``kmeans``, ``gmm`` or ``dbscan`` (ignored when ``segmenter`` is given).
        seed: random seed (ignored when ``segmenter`` is given).
        model_dir: where models live: the previous model of the method is read from it
            (for stable labels) and the new one written to it, after the rows. None: no
            previous model, nothing saved.
        now: when recency is measured from (default: now).
        segmenter: a configured segmenter, for non-default parameters.
        progress: called as ``progress(stage, done, total)``.

    Raises:
        SegmentationError: no customers, or bad parameters.
        SegmentModelError: the new model cannot be saved.
    """
    now = now or utc_now()
    segmenter = segmenter or CustomerSegmenter(method, random_state=seed)
    features = await compute_features(session, now=now, progress=progress)
    previous = load_previous(model_dir, segmenter.method) if model_dir is not None else None
    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    notify("clustering", 0, 1)
    segmenter.fit(features, previous=previous)
    notify("clustering", 1, 1)
    segmentation = segmenter.segmentation_
    stored, removed = await store_assignments(session, segmentation, now=now, progress=progress)
    truth = await true_groups(session, features.customer_ids)
    agreement = score_against_truth(truth, segmentation)
    path = save_model(segmenter.model_, model_dir) if model_dir is not None else None
    logger.info(
        "segmented %d customers with %s (model %s): %s",
        len(features), segmentation.method, segmentation.model_version, segmentation.sizes(),
    )  # fmt: skip
    return SegmentationRun(
        model=segmenter.model_,
        model_path=path,
        features=features,
        segmentation=segmentation,
        stored=stored,
        removed=removed,
        agreement=agreement,
    )


async def store_assignments(
    session: Session,
    segmentation: Segmentation,
    *,
    now: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[int, int]:
    """Upsert one row per assigned customer for the segmentation's method.

    Unassigned customers (DBSCAN noise with no noise segment) lose their row of this
    method, so the engine falls back to the archetype rule for them.

    Returns:
        (rows written, rows deleted).
    """
    now = now or utc_now()
    notify: ProgressCallback = progress or (lambda _stage, _done, _total: None)
    assigned = segmentation.segment_codes >= 0
    ids = segmentation.customer_ids[assigned].tolist()
    total = len(ids)
    notify("assignments", 0, total)
    stored = await write_segment_assignments(
        session,
        method=segmentation.method,
        model_version=segmentation.model_version,
        customer_ids=ids,
        segments=[CUSTOMER_SEGMENTS[c] for c in segmentation.segment_codes[assigned].tolist()],
        scores=np.round(segmentation.scores[assigned], 6).tolist(),
        now=now,
        on_written=lambda done: notify("assignments", done, total),
    )
    removed = await delete_segment_assignments(
        session, segmentation.method, segmentation.customer_ids[~assigned].tolist()
    )
    return stored, removed


async def true_groups(session: Session, customer_ids: NDArray[np.int64]) -> list[str | None]:
    """``customers.synthetic_group`` of each id (None where unknown), in the given order."""
    groups: list[str | None] = [None] * len(customer_ids)
    known = await read_synthetic_groups(session)
    order = np.argsort(customer_ids, kind="stable")
    ordered = customer_ids[order]
    positions = np.searchsorted(ordered, known.customer_ids)
    for position, customer_id, group in zip(
        positions.tolist(), known.customer_ids.tolist(), known.groups, strict=True
    ):
        if position < len(ordered) and ordered[position] == customer_id:
            groups[int(order[position])] = group
    return groups


def score_against_truth(
    truth: Sequence[str | None], segmentation: Segmentation
) -> Agreement | None:
    """Adjusted Rand indices over the customers whose true group is known; None if none."""
    known = np.array([group is not None for group in truth], dtype=np.bool_)
    if not known.any():
        return None
    labels = [group for group in truth if group is not None]
    return Agreement(
        adjusted_rand=float(adjusted_rand_score(labels, segmentation.segment_codes[known])),
        cluster_adjusted_rand=float(adjusted_rand_score(labels, segmentation.clusters[known])),
        customers=int(known.sum()),
    )
