"""The experiment report as one self-contained HTML page: a table and two pictures.

- The table: per arm, exposures (observed and expected share of traffic), conversions,
  rate with its interval, uplift against control with its interval, p-value, the
  probability of beating control, the always-valid p-value and the sequential decision.
  A sample ratio mismatch is announced in red above it, and the exposures are shown in red.
- "Conversion rate by arm": each rate with its Wilson interval.
- "Cumulative uplift": each arm's uplift over control, in percentage points, day by day
  from the cumulative counts, with a star where the sequential test decided.

The pictures are PNG files embedded as ``data:`` URIs, so the page needs no network and
no other file. Matplotlib draws through its object API onto an Agg canvas, as the segment
report does, and is imported only when a page is rendered (the ``reports`` extra).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from itertools import pairwise
from typing import TYPE_CHECKING, Final

import numpy as np

from rasa_personalize.experiments.stats import (
    ArmResult,
    ExperimentAnalysis,
    ExperimentInputError,
    Verdict,
    sequential_decision,
)
from rasa_personalize.extras import REPORTS, require_extra

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# One day of cumulative counts: (exposures, conversions) per arm name.
CumulativeDay = tuple[date, Mapping[str, tuple[int, int]]]

# Okabe-Ito, colour-blind friendly; control is always grey.
CONTROL_COLOUR: Final = "#555555"
ARM_COLOURS: Final = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442")
SRM_RED: Final = "#B00020"

_STYLE: Final = f"""
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ padding: 0.35em 0.7em; border-bottom: 1px solid #ddd; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
.srm-flagged {{ color: {SRM_RED}; font-weight: bold; }}
.verdict-better {{ color: #007A3D; font-weight: bold; }}
.verdict-worse {{ color: {SRM_RED}; font-weight: bold; }}
.note {{ color: #555; max-width: 60em; }}
img {{ max-width: 100%; display: block; margin: 1em 0; }}
"""


def render_html(
    analysis: ExperimentAnalysis, experiment: str, cumulative: Sequence[CumulativeDay]
) -> str:
    """The report page of ``experiment``.

    Args:
        analysis: what :func:`~rasa_personalize.experiments.stats.analyze` returned.
        experiment: the experiment's name, for the title.
        cumulative: (day, cumulative (exposures, conversions) per arm), oldest first; may
            be empty (the picture over time is then left out).

    Raises:
        MissingExtraError: matplotlib (the ``reports`` extra) is not installed.
        ExperimentInputError: the days are not in increasing order.
    """
    require_extra("matplotlib", feature="the experiment report's HTML page", extra=REPORTS)
    days = [day for day, _ in cumulative]
    if any(later <= earlier for earlier, later in pairwise(days)):
        raise ExperimentInputError("cumulative counts: days must be in increasing order")
    title = f"Experiment {experiment}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{_text(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_text(title)}</h1>",
        f'<p class="note">Control arm: <strong>{_text(analysis.control)}</strong>. '
        f"Intervals at {1 - analysis.alpha:.0%}; decisions at an error budget of "
        f"{analysis.alpha:g} (each arm: {analysis.decision_alpha:.3g}).</p>",
        _srm_paragraph(analysis),
        _table(analysis),
        _decision_note(),
        "<h2>Conversion rate by arm</h2>",
        _image_or_note(_rates_picture(analysis), "No arm has exposures yet.", "rates by arm"),
        "<h2>Cumulative uplift over control</h2>",
        _image_or_note(
            _uplift_picture(analysis, cumulative),
            "No daily counts with exposures in control and another arm yet.",
            "cumulative uplift by day",
        ),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _percent(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}%}"


def _points(value: float | None) -> str:
    """A difference of rates in percentage points, signed."""
    return "" if value is None else f"{value * 100:+.2f}"


def _p_value(value: float | None) -> str:
    if value is None:
        return ""
    return "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def _srm_paragraph(analysis: ExperimentAnalysis) -> str:
    if analysis.srm_p_value is None:
        return (
            '<p class="srm">Sample ratio not tested (one arm, too few exposures, or weights '
            "that follow the results).</p>"
        )
    if analysis.srm_flagged:
        return (
            '<p class="srm srm-flagged">Sample ratio mismatch: the exposures do not follow '
            f"the configured weights (chi-square p = {analysis.srm_p_value:.2g} &lt; 0.001). "
            "Assignment or logging is broken somewhere; do not trust the comparisons below "
            "until it is explained.</p>"
        )
    return (
        '<p class="srm">The exposures follow the configured weights '
        f"(sample ratio p = {analysis.srm_p_value:.3f}).</p>"
    )


_HEADERS: Final = (
    "arm",
    "exposures",
    "share (expected)",
    "conversions",
    "rate",
    "rate interval",
    "uplift (pp)",
    "uplift interval (pp)",
    "p-value",
    "P(beats control)",
    "always-valid p",
    "decision",
    "revenue / exposed",
)


def _table(analysis: ExperimentAnalysis) -> str:
    total = sum(arm.exposures for arm in analysis.arms)
    rows = ["<table>", "<tr>" + "".join(f"<th>{name}</th>" for name in _HEADERS) + "</tr>"]
    flagged = ' class="srm-flagged"' if analysis.srm_flagged else ""
    for arm in analysis.arms:
        share = arm.exposures / total if total else None
        is_control = arm.name == analysis.control
        cells = [
            f"<td>{_text(arm.name)}{' (control)' if is_control else ''}</td>",
            f"<td{flagged}>{arm.exposures:,}</td>",
            f"<td{flagged}>{_percent(share, 1)} ({arm.expected_share:.1%})</td>",
            f"<td>{arm.conversions:,}</td>",
            f"<td>{_percent(arm.rate)}</td>",
            f"<td>{_interval(arm.rate_ci_low, arm.rate_ci_high, _percent)}</td>",
            f"<td>{_points(arm.uplift)}</td>",
            f"<td>{_interval(arm.ci_low, arm.ci_high, _points)}</td>",
            f"<td>{_p_value(arm.p_value)}</td>",
            f"<td>{_percent(arm.prob_beat_control, 1)}</td>",
            f"<td>{_p_value(arm.always_valid_p_value)}</td>",
            _verdict_cell(arm),
            "<td>"
            + ("" if arm.revenue_per_exposed is None else f"{arm.revenue_per_exposed:,.2f}")
            + "</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _interval(low: float | None, high: float | None, show: Callable[[float], str]) -> str:
    if low is None or high is None:
        return ""
    return f"[{show(low)}, {show(high)}]"


def _verdict_cell(arm: ArmResult) -> str:
    if arm.verdict is None:
        return "<td></td>"
    return f'<td class="verdict-{arm.verdict.value}">{arm.verdict.value}</td>'


def _decision_note() -> str:
    return (
        '<p class="note">The p-value and intervals hold for one look at a sample size fixed '
        "in advance. The decision column comes from the always-valid p-value, which may be "
        "read every day: <em>better</em> or <em>worse</em> is safe to act on now, "
        "<em>inconclusive</em> means keep the experiment running.</p>"
    )


def _image_or_note(figure: Figure | None, note: str, alt: str) -> str:
    if figure is None:
        return f'<p class="note">{_text(note)}</p>'
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_text(alt)}" src="data:image/png;base64,{encoded}">'


def _colours(analysis: ExperimentAnalysis) -> dict[str, str]:
    treatments = [arm.name for arm in analysis.arms if arm.name != analysis.control]
    colours = {name: ARM_COLOURS[index % len(ARM_COLOURS)] for index, name in enumerate(treatments)}
    return {analysis.control: CONTROL_COLOUR, **colours}


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415  # see module doc
    from matplotlib.figure import Figure  # noqa: PLC0415  # see module doc

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg, no pyplot
    return figure


def _rates_picture(analysis: ExperimentAnalysis) -> Figure | None:
    shown = [(arm, arm.rate) for arm in analysis.arms if arm.rate is not None]
    if not shown:
        return None
    colours = _colours(analysis)
    figure = _new_figure(8, 1.2 + 0.5 * len(shown))
    axes = figure.subplots()
    for position, (arm, rate) in enumerate(shown):
        low = rate if arm.rate_ci_low is None else arm.rate_ci_low
        high = rate if arm.rate_ci_high is None else arm.rate_ci_high
        axes.errorbar(
            [rate * 100],
            [position],
            xerr=[[(rate - low) * 100], [(high - rate) * 100]],
            fmt="o",
            color=colours[arm.name],
            capsize=5,
            markersize=7,
        )
        axes.annotate(
            f"{rate:.2%}",
            (rate * 100, position),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            fontsize=9,
        )
    labels = [
        f"{arm.name} (control)" if arm.name == analysis.control else arm.name for arm, _ in shown
    ]
    axes.set_yticks(range(len(shown)), labels=labels)
    axes.invert_yaxis()
    axes.set_ylim(len(shown) - 0.5, -0.7)
    axes.set_xlabel(f"conversion rate, % (bars: {1 - analysis.alpha:.0%} interval)")
    axes.grid(axis="x", alpha=0.3)
    return figure


def _uplift_picture(
    analysis: ExperimentAnalysis, cumulative: Sequence[CumulativeDay]
) -> Figure | None:
    control = analysis.control
    colours = _colours(analysis)
    series = []
    for arm in analysis.arms:
        if arm.name == control:
            continue
        looks = [
            (*counts.get(arm.name, (0, 0)), *counts.get(control, (0, 0)))
            for _, counts in cumulative
        ]
        points = [
            (day, (x1 / n1 - x0 / n0) * 100)
            for (day, _), (n1, x1, n0, x0) in zip(cumulative, looks, strict=True)
            if n1 > 0 and n0 > 0
        ]
        if not points:
            continue
        decision = sequential_decision(
            looks,
            alpha=analysis.decision_alpha,
            planned_exposures=analysis.sequential_planned_exposures,
        )
        series.append((arm.name, points, decision.verdict, decision.decided_at))
    if not series:
        return None
    figure = _new_figure(8, 4)
    axes = figure.subplots()
    axes.axhline(0, color=CONTROL_COLOUR, linewidth=1, linestyle="--", label=f"{control} (control)")
    for name, points, verdict, decided_at in series:
        days = np.array([day for day, _ in points], dtype="datetime64[D]")
        uplifts = np.array([uplift for _, uplift in points])
        axes.plot(days, uplifts, marker=".", color=colours[name], label=name)
        if decided_at is not None and verdict is not Verdict.INCONCLUSIVE:
            decided = np.array([cumulative[decided_at][0]], dtype="datetime64[D]")
            uplift = uplifts[days == decided[0]]
            axes.plot(decided, uplift, marker="*", markersize=16, color=colours[name])
            axes.annotate(
                f"decided: {verdict.value}",
                (decided[0], uplift[0]),
                textcoords="offset points",
                xytext=(10, -4),
                va="top",
                fontsize=9,
            )
    axes.margins(y=0.12)  # room for the star and its label under the title
    axes.set_ylabel("uplift over control (percentage points)")
    axes.set_title("Cumulative uplift by day (star: the sequential test decided)", fontsize=11)
    axes.legend(loc="best", fontsize=9)
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    return figure
