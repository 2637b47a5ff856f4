"""The calibration picture of a propensity run (PNG).

Left, a reliability diagram: for groups of held-out customers with similar scores (tenths
by score), the mean predicted probability against the share that really bought, for the
model and both baselines; a calibrated model lies on the diagonal. Right, how the model's
test scores spread, buyers and non-buyers apart: the further apart, the better it ranks.

Matplotlib draws through its object API onto an Agg canvas: no pyplot, no global state,
no display needed. It is imported only when the picture is drawn (the ``reports`` extra),
as for the segment report.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from rasa_personalize.propensity.errors import PropensityError
from rasa_personalize.propensity.training import PropensityRun

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Okabe-Ito colours, as in the segment report: colour-blind friendly.
COLOURS: Final[Mapping[str, str]] = {
    "model": "#0072B2",
    "recency": "#E69F00",
    "segment_rule": "#009E73",
}
LABELS: Final[Mapping[str, str]] = {
    "model": "gradient boosting, calibrated",
    "recency": "recency-only logistic regression",
    "segment_rule": "segment rule",
}


def write_calibration_picture(run: PropensityRun, path: Path) -> Path:
    """Draw the picture into ``path`` (PNG); returns the path.

    Raises:
        PropensityError: the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        calibration_figure(run).savefig(path, format="png")
    except OSError as error:
        raise PropensityError(f"cannot write the calibration picture to {path}: {error}") from None
    return path


def calibration_figure(run: PropensityRun) -> Figure:
    """The figure described in the module docstring."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  # see module doc
    from matplotlib.figure import Figure  # noqa: PLC0415  # see module doc

    report = run.report
    figure = Figure(figsize=(13, 6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg, no pyplot
    reliability, spread = figure.subplots(1, 2, width_ratios=(1.15, 1))
    reliability.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="ideal")
    for name, groups in report.calibration.items():
        figures = report.model if name == "model" else report.baselines[name]
        reliability.plot(
            [group.mean_score for group in groups],
            [group.observed_rate for group in groups],
            marker="o",
            color=COLOURS.get(name, "#000000"),
            label=f"{LABELS.get(name, name)} (AUC {figures.auc:.3f}, Brier {figures.brier:.3f})",
        )
    top = max(
        [0.05]
        + [
            max(g.mean_score, g.observed_rate)
            for groups in report.calibration.values()
            for g in groups
        ]
    )
    limit = min(1.0, top * 1.1)
    reliability.set_xlim(0, limit)
    reliability.set_ylim(0, limit)
    reliability.set_xlabel("predicted probability (mean of a tenth of customers)")
    reliability.set_ylabel("share that bought")
    reliability.set_title(f"Calibration on {report.test_customers:,} held-out customers")
    reliability.legend(loc="upper left", fontsize=9)
    reliability.grid(alpha=0.3)

    scores = run.test_scores["model"]
    labels = run.test_labels
    bins = np.linspace(0.0, 1.0, 41)
    spread.hist(scores[~labels], bins=bins, alpha=0.6, color="#999999", label="did not buy")
    spread.hist(scores[labels], bins=bins, alpha=0.7, color=COLOURS["model"], label="bought")
    for cut in (report.cutoffs.low, report.cutoffs.high):
        spread.axvline(cut, color="#D55E00", linestyle=":", linewidth=1.2)
    spread.set_xlabel(
        f"model score (dotted: band cut-offs {report.cutoffs.low:.2f} and "
        f"{report.cutoffs.high:.2f}, {report.cutoffs.source})"
    )
    spread.set_ylabel("held-out customers")
    spread.set_title("Scores of buyers and non-buyers")
    spread.legend(fontsize=9)
    spread.grid(alpha=0.3)
    figure.suptitle(
        f"Purchase propensity ({report.target}), model {report.model_version}: label week "
        f"{report.cutoff:%Y-%m-%d} to {report.as_of:%Y-%m-%d}",
        fontsize=12,
    )
    return figure
