"""Segmentation runs against the store: assignments, model files, scores against the truth."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from rasa_personalize.engine import segment_of
from rasa_personalize.identity import customer_key
from rasa_personalize.segments.assign import (
    score_against_truth,
    segment_customers,
    store_assignments,
)
from rasa_personalize.segments.clustering import CustomerSegmenter, Segmentation
from rasa_personalize.segments.errors import SegmentModelError
from rasa_personalize.segments.features import CustomerFeatures
from rasa_personalize.segments.model import load_model, load_previous, model_path, save_model
from rasa_personalize.slots import CUSTOMER_SEGMENTS
from rasa_personalize.store.models import SegmentAssignment
from rasa_personalize.store.repository import load_customer_snapshot
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.segments.conftest import features_from
from tests.shops import NOW, build_tiny_shop


async def test_a_run_stores_one_assignment_per_customer_and_scores_it(
    demo_store: SqlStore, tmp_path: Path
) -> None:
    """The default run on the demo shop: every customer assigned, model saved, ARI >= 0.7."""
    async with demo_store.sessions.begin() as session:
        run = await segment_customers(session, model_dir=tmp_path, now=NOW)
    assert run.agreement is not None
    assert run.agreement.adjusted_rand >= 0.7
    assert run.agreement.customers == 2000
    assert run.stored == 2000
    assert run.model_path == model_path(tmp_path, "kmeans")
    assert load_model(run.model_path) == run.model
    async with demo_store.sessions() as session:
        rows = (
            await session.execute(
                select(SegmentAssignment.segment, func.count())
                .where(SegmentAssignment.method == "kmeans")
                .where(SegmentAssignment.model_version == run.model.version)
                .group_by(SegmentAssignment.segment)
            )
        ).all()
    assert dict(rows) == {k: v for k, v in run.segmentation.sizes().items() if v}


async def test_the_engine_reads_the_stored_segment(demo_store: SqlStore, tmp_path: Path) -> None:
    """After a run, a demo customer's snapshot carries the clustering segment."""
    async with demo_store.sessions.begin() as session:
        await segment_customers(session, model_dir=tmp_path, now=NOW)
        snapshot = await load_customer_snapshot(session, customer_key(TEST_SECRET, "demo-loyal"))
    assert snapshot is not None
    assert snapshot.segment is not None
    assert snapshot.segment.method == "kmeans"
    assert segment_of(snapshot, NOW) == snapshot.segment.segment == "loyal"


async def test_a_rerun_updates_rows_and_keeps_labels(demo_store: SqlStore, tmp_path: Path) -> None:
    """Running twice keeps one row per customer and method; the second run matches the first
    model's clusters, so nobody changes segment."""
    async with demo_store.sessions.begin() as session:
        first = await segment_customers(session, model_dir=tmp_path, now=NOW, seed=0)
    async with demo_store.sessions.begin() as session:
        second = await segment_customers(session, model_dir=tmp_path, now=NOW, seed=7)
        count = await session.scalar(select(func.count()).select_from(SegmentAssignment))
    assert count == 2000
    assert second.model.metrics["previous_version"] == first.model.version
    assert second.model.metrics["matched_previous"] == len(first.model.cluster_ids)
    np.testing.assert_array_equal(
        first.segmentation.segment_codes, second.segmentation.segment_codes
    )


async def test_methods_keep_separate_rows(demo_store: SqlStore) -> None:
    """K-Means and mixture assignments live side by side (unique per customer and method)."""
    async with demo_store.sessions.begin() as session:
        await segment_customers(session, method="kmeans", now=NOW)
        gmm = await segment_customers(session, method="gmm", now=NOW)
        count = await session.scalar(select(func.count()).select_from(SegmentAssignment))
    assert count == 4000
    assert gmm.agreement is not None
    assert gmm.agreement.adjusted_rand >= 0.7


async def test_assignments_upsert_on_both_backends(store: SqlStore) -> None:
    """Writing twice for one method updates segment, version and score in place."""
    async with store.sessions.begin() as session:
        shop = await build_tiny_shop(session)
        ids = np.array(sorted(shop.customers.values()), dtype=np.int64)

        def segmentation(version: str, codes: list[int]) -> Segmentation:
            return Segmentation(
                customer_ids=ids,
                clusters=np.array([0, 1, 2]),
                segment_codes=np.array(codes),
                scores=np.array([0.5, 0.25, 1.0]),
                model_version=version,
                method="kmeans",
            )

        assert await store_assignments(session, segmentation("v1", [0, 1, 2]), now=NOW) == (3, 0)
        # The third customer becomes DBSCAN-style unassigned: their row goes.
        assert await store_assignments(session, segmentation("v2", [3, 3, -1]), now=NOW) == (2, 1)
        rows = (
            await session.execute(
                select(
                    SegmentAssignment.customer_id,
                    SegmentAssignment.segment,
                    SegmentAssignment.model_version,
                    SegmentAssignment.score,
                ).order_by(SegmentAssignment.customer_id)
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (int(ids[0]), CUSTOMER_SEGMENTS[3], "v2", 0.5),
        (int(ids[1]), CUSTOMER_SEGMENTS[3], "v2", 0.25),
    ]


async def test_no_truth_means_no_score(sqlite_store: SqlStore) -> None:
    """A store without synthetic groups gets no adjusted Rand index, and no error."""
    async with sqlite_store.sessions.begin() as session:
        await build_tiny_shop(session)
        run = await segment_customers(session, now=NOW, segmenter=CustomerSegmenter(k_range=(2, 2)))
    assert run.agreement is None
    assert run.model_path is None
    assert score_against_truth([None, None, None], run.segmentation) is None


def test_saving_replaces_the_model_atomically(tmp_path: Path) -> None:
    """The model file is replaced whole; no temporary file is left next to it."""
    path = model_path(tmp_path, "kmeans")
    path.parent.mkdir(parents=True)
    path.write_text("old", encoding="utf-8")
    features = _tiny_features()
    model = CustomerSegmenter(k_range=(2, 2)).fit(features).model_
    assert save_model(model, tmp_path) == path
    assert load_model(path) == model
    assert sorted(p.name for p in path.parent.iterdir()) == ["kmeans.json"]


def test_a_broken_previous_model_is_ignored_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Retraining must not fail because the last model file is damaged."""
    path = model_path(tmp_path, "gmm")
    path.parent.mkdir(parents=True)
    path.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert load_previous(tmp_path, "gmm") is None
    assert "ignoring the previous segment model" in caplog.text
    assert load_previous(tmp_path, "kmeans") is None  # none at all: no warning needed
    with pytest.raises(SegmentModelError, match="not a readable segment model"):
        load_model(path)


def test_a_model_of_another_format_is_refused(tmp_path: Path) -> None:
    """A future layout is not misread: the error says to retrain."""
    path = tmp_path / "model.json"
    path.write_text('{"format": 99}', encoding="utf-8")
    with pytest.raises(SegmentModelError, match="retrain"):
        load_model(path)


def _tiny_features() -> CustomerFeatures:
    """Forty customers in two obvious groups."""
    rng = np.random.default_rng(1)
    return features_from(
        {
            "frequency": np.concatenate([rng.uniform(0, 1, 20), rng.uniform(8, 9, 20)]),
            "recency_days": np.concatenate([rng.uniform(200, 300, 20), rng.uniform(1, 9, 20)]),
        }
    )
