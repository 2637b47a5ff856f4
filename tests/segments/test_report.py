"""The segmentation report: summary figures, CSV and Markdown tables, a PNG picture."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rasa_personalize.segments.assign import SegmentationRun, segment_customers
from rasa_personalize.segments.report import summarize, write_report
from rasa_personalize.slots import CUSTOMER_SEGMENTS
from rasa_personalize.store.sql_store import SqlStore
from tests.shops import NOW

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def run(demo_store: SqlStore) -> SegmentationRun:
    """A default run on the demo shop."""
    async with demo_store.sessions.begin() as session:
        return await segment_customers(session, now=NOW)


def test_the_summary_has_one_row_per_segment_with_rfm_means(run: SegmentationRun) -> None:
    """Sizes add up; new visitors bought nothing (no recency); loyal customers spend most."""
    rows = {row.segment: row for row in summarize(run)}
    assert list(rows) == list(CUSTOMER_SEGMENTS)
    assert sum(row.customers for row in rows.values()) == 2000
    assert sum(row.share for row in rows.values()) == pytest.approx(1.0)
    assert rows["new_visitor"].mean_frequency == 0.0
    assert rows["new_visitor"].mean_recency_days is None
    assert max(rows.values(), key=lambda row: row.mean_monetary).segment == "loyal"
    recency = rows["at_risk"].mean_recency_days
    assert recency is not None
    assert recency > 90
    assert rows["price_sensitive"].mean_discount_share > 0.6


def test_the_report_writes_three_readable_files(run: SegmentationRun, tmp_path: Path) -> None:
    """CSV and Markdown tables agree with the summary; the picture is a real PNG."""
    files = write_report(run, tmp_path / "report")
    with files.table_csv.open(encoding="utf-8") as stream:
        table = list(csv.DictReader(stream))
    assert [row["segment"] for row in table] == list(CUSTOMER_SEGMENTS)
    assert sum(int(row["customers"]) for row in table) == 2000
    assert {"mean recency (days, buyers)", "mean frequency", "mean monetary"} <= set(table[0])
    markdown = files.table_markdown.read_text(encoding="utf-8")
    assert markdown.startswith("# Customer segments (kmeans, k=")
    assert "| loyal |" in markdown
    assert f"`{run.model.version}`" in markdown
    picture = files.picture.read_bytes()
    assert picture.startswith(PNG_SIGNATURE)
    assert len(picture) > 50_000  # a 1540x770 scatter plot, not an empty canvas
