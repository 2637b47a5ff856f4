"""A segmentation report a person can read: a table (CSV and Markdown) and a picture (PNG).

- ``segments.csv`` / ``segments.md``: per segment, customers, share, mean recency (over
  customers who bought: the never-bought cap would say nothing), mean frequency, mean
  monetary, mean discount share and mean sessions.
- ``segments.png``: left, every customer (a random sample of at most ``max_points``)
  projected on the first two principal components of the scaled clustering features,
  coloured by segment, with each cluster's centre marked by its id; right, segment sizes.

Matplotlib draws through its object API onto an Agg canvas: no pyplot, no global state,
no display needed. It is imported only when a picture is drawn: rasa-sdk imports every
module under ``actions/`` at server start, and importing matplotlib builds a font cache.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from sklearn.decomposition import PCA

from rasa_personalize.segments.assign import SegmentationRun
from rasa_personalize.segments.errors import SegmentationError
from rasa_personalize.slots import CUSTOMER_SEGMENTS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

UNASSIGNED: Final = "unassigned"
# One colour per segment, the same in every report (colour-blind friendly, Okabe-Ito).
SEGMENT_COLOURS: Final[Mapping[str, str]] = {
    "new_visitor": "#999999",
    "frequent_buyer": "#0072B2",
    "price_sensitive": "#E69F00",
    "loyal": "#009E73",
    "at_risk": "#D55E00",
    "browser": "#CC79A7",
    UNASSIGNED: "#000000",
}
MAX_POINTS: Final = 20_000


@dataclass(frozen=True)
class SegmentSummary:
    """One row of the summary table."""

    segment: str
    customers: int
    share: float
    mean_recency_days: float | None  # over customers who bought; None if nobody did
    mean_frequency: float
    mean_monetary: float
    mean_discount_share: float
    mean_sessions: float


@dataclass(frozen=True)
class ReportFiles:
    """Where the report was written."""

    table_csv: Path
    table_markdown: Path
    picture: Path


def summarize(run: SegmentationRun) -> list[SegmentSummary]:
    """Per-segment figures in contract order (then ``unassigned``), empty segments left out."""
    features, segmentation = run.features, run.segmentation
    column = {name: features.column(name) for name in _SUMMARY_COLUMNS}
    rows = []
    for code, name in [*enumerate(CUSTOMER_SEGMENTS), (-1, UNASSIGNED)]:
        members = segmentation.segment_codes == code
        count = int(members.sum())
        if not count:
            continue
        bought = members & (column["frequency"] > 0)
        rows.append(
            SegmentSummary(
                segment=name,
                customers=count,
                share=count / len(segmentation),
                mean_recency_days=(
                    float(column["recency_days"][bought].mean()) if bought.any() else None
                ),
                mean_frequency=float(column["frequency"][members].mean()),
                mean_monetary=float(column["monetary"][members].mean()),
                mean_discount_share=float(column["discount_share"][members].mean()),
                mean_sessions=float(column["sessions"][members].mean()),
            )
        )
    return rows


_SUMMARY_COLUMNS: Final = ("recency_days", "frequency", "monetary", "discount_share", "sessions")
_HEADERS: Final = (
    "segment",
    "customers",
    "share",
    "mean recency (days, buyers)",
    "mean frequency",
    "mean monetary",
    "mean discount share",
    "mean sessions",
)


def _cells(row: SegmentSummary) -> list[str]:
    return [
        row.segment,
        str(row.customers),
        f"{row.share:.3f}",
        "" if row.mean_recency_days is None else f"{row.mean_recency_days:.1f}",
        f"{row.mean_frequency:.2f}",
        f"{row.mean_monetary:.2f}",
        f"{row.mean_discount_share:.3f}",
        f"{row.mean_sessions:.1f}",
    ]


def write_report(
    run: SegmentationRun, directory: Path, *, max_points: int = MAX_POINTS, seed: int = 0
) -> ReportFiles:
    """Write ``segments.csv``, ``segments.md`` and ``segments.png`` into ``directory``.

    Raises:
        SegmentationError: the directory cannot be created or written.
    """
    rows = summarize(run)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        table_csv = directory / "segments.csv"
        with table_csv.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(_HEADERS)
            writer.writerows(_cells(row) for row in rows)
        table_markdown = directory / "segments.md"
        table_markdown.write_text(_markdown(run, rows), encoding="utf-8")
        picture = directory / "segments.png"
        _picture(run, rows, max_points=max_points, seed=seed).savefig(picture, format="png")
    except OSError as error:
        raise SegmentationError(f"cannot write the report to {directory}: {error}") from None
    return ReportFiles(table_csv, table_markdown, picture)


def _title(run: SegmentationRun) -> str:
    metrics = run.model.metrics
    parts = [f"{run.model.method}", f"k={metrics.get('k')}", f"{len(run.segmentation):,} customers"]
    if run.agreement is not None:
        parts.append(f"ARI {run.agreement.adjusted_rand:.2f} vs true groups")
    return ", ".join(parts)


def _markdown(run: SegmentationRun, rows: Sequence[SegmentSummary]) -> str:
    lines = [
        f"# Customer segments ({_title(run)})",
        "",
        f"Model `{run.model.version}`, trained {run.model.trained_at}.",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(_HEADERS))) + "|",
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += ["", "Clusters:", ""]
    lines += [
        f"- cluster {cluster_id}: {archetype}, {count} customers"
        for cluster_id, archetype, count in sorted(
            zip(run.model.cluster_ids, run.model.archetypes, run.model.counts, strict=True)
        )
    ]
    return "\n".join(lines) + "\n"


def _picture(
    run: SegmentationRun, rows: Sequence[SegmentSummary], *, max_points: int, seed: int
) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  # see module doc
    from matplotlib.figure import Figure  # noqa: PLC0415  # see module doc

    model, segmentation = run.model, run.segmentation
    scaled = model.scaler.transform(run.features)
    if len(scaled) < 2:  # a projection needs two points
        raise SegmentationError("report: at least two customers are needed for the picture")
    pca = PCA(n_components=min(2, scaled.shape[1]), random_state=seed).fit(scaled)
    projected = pca.transform(scaled)
    if projected.shape[1] == 1:
        projected = np.column_stack([projected[:, 0], np.zeros(len(projected))])
    rng = np.random.default_rng(seed)
    shown = np.arange(len(scaled))
    if len(shown) > max_points:
        shown = np.sort(rng.choice(len(shown), size=max_points, replace=False))

    figure = Figure(figsize=(14, 7), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg, no pyplot
    scatter, bars = figure.subplots(1, 2, width_ratios=(2.2, 1))
    names = [row.segment for row in rows]
    codes = segmentation.segment_codes[shown]
    handles = {}
    # Biggest segments first, so that small ones are drawn on top and stay visible.
    for row in sorted(rows, key=lambda r: -r.customers):
        code = -1 if row.segment == UNASSIGNED else CUSTOMER_SEGMENTS.index(row.segment)
        points = projected[shown][codes == code]
        # Identical customers (every new visitor) are one dot: say so, or it looks empty.
        stacked = len(points) > 1 and len(np.unique(points.round(9), axis=0)) == 1
        label = f"{row.segment} ({row.customers:,}{', all at one point' if stacked else ''})"
        handles[row.segment] = scatter.scatter(
            points[:, 0],
            points[:, 1],
            s=9,
            alpha=0.55,
            color=SEGMENT_COLOURS[row.segment],
            marker="x" if row.segment == UNASSIGNED else "o",
            linewidths=0.6 if row.segment == UNASSIGNED else 0,
            label=label,
        )
    centres = pca.transform(model.centroid_array) if len(model.cluster_ids) else np.zeros((0, 2))
    if centres.shape[1] == 1:
        centres = np.column_stack([centres[:, 0], np.zeros(len(centres))])
    for (x, y), cluster_id, archetype in zip(
        centres, model.cluster_ids, model.archetypes, strict=True
    ):
        scatter.scatter(
            [x], [y], s=140, color=SEGMENT_COLOURS[archetype], edgecolors="black", linewidths=1.2
        )
        scatter.annotate(
            str(cluster_id), (x, y), ha="center", va="center", fontsize=7, fontweight="bold"
        )
    explained = pca.explained_variance_ratio_
    scatter.set_xlabel(f"principal component 1 ({explained[0]:.0%} of variance)")
    if len(explained) > 1:
        scatter.set_ylabel(f"principal component 2 ({explained[1]:.0%} of variance)")
    subtitle = "" if len(shown) == len(scaled) else f" (random {len(shown):,} shown)"
    scatter.set_title(f"Customers by segment{subtitle}; circles: cluster centres with ids")
    scatter.legend(
        handles=[handles[name] for name in names],  # contract order, as in the table
        title="segment (customers)",
        loc="best",
        markerscale=2.5,
        fontsize=9,
    )
    scatter.grid(alpha=0.3)

    counts = [row.customers for row in rows]
    positions = np.arange(len(rows))
    bars.barh(positions, counts, color=[SEGMENT_COLOURS[name] for name in names])
    bars.set_yticks(positions, labels=names)
    bars.invert_yaxis()
    bars.set_xlabel("customers")
    bars.set_title("Segment sizes")
    for position, row in zip(positions, rows, strict=True):
        bars.annotate(
            f" {row.customers:,} ({row.share:.0%})",
            (row.customers, position),
            va="center",
            fontsize=9,
        )
    bars.set_xlim(0, max(counts) * 1.35)
    bars.grid(axis="x", alpha=0.3)
    figure.suptitle(f"Customer segments: {_title(run)}", fontsize=13)
    return figure
