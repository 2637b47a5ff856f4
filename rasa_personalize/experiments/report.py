"""An experiment's report from what the store holds: the arms of the rule file compared,
printed as a table or written as an HTML page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.experiments.report_html import render_html
from rasa_personalize.experiments.stats import ArmCounts, ExperimentAnalysis, analyze
from rasa_personalize.rules.experiments import Allocation, Experiment
from rasa_personalize.store.experiments import ExperimentOutcomes


class ReportWriteError(PersonalizeError):
    """The report file could not be written; the message names it."""


def analysis_of(experiment: Experiment, outcomes: ExperimentOutcomes) -> ExperimentAnalysis:
    """Every configured arm against the control, with the daily history for the
    sequential decision. Arms no longer in the file are left out (see
    :func:`stray_arms`); an arm nobody was exposed to counts zero."""
    counts = []
    for arm in experiment.arms:
        outcome = outcomes.arms.get(arm.name)
        counts.append(
            ArmCounts(
                arm.name,
                arm.weight,
                outcome.exposures if outcome else 0,
                outcome.conversions if outcome else 0,
                outcome.revenue if outcome else 0.0,
            )
        )
    history = [day.arms for day in outcomes.daily]
    analysis = analyze(counts, experiment.control.name, history=history)
    if experiment.adaptive:
        # The exposures follow the results, not the configured weights: no split to check.
        analysis = replace(analysis, srm_p_value=None, srm_flagged=False)
    return analysis


def allocation_json(experiment: Experiment, allocation: Allocation | None) -> dict[str, Any]:
    """How ``experiment`` allocates, and for an adaptive one the weights in force."""
    document: dict[str, Any] = {"allocation": experiment.allocation}
    if not experiment.adaptive:
        return document
    document.update(
        min_exposures_per_arm=experiment.min_exposures_per_arm,
        refresh_minutes=experiment.refresh_minutes,
        current_weights=None,
    )
    if allocation is not None:
        document.update(
            current_weights=dict(zip(allocation.arms, allocation.shares, strict=True)),
            adapted=allocation.adapted,
            counted_as_of=allocation.as_of.isoformat(),
        )
    return document


def describe_allocation(experiment: Experiment, allocation: Allocation | None) -> str:
    """One line on how ``experiment`` allocates now (for the terminal)."""
    if not experiment.adaptive:
        return "Allocation: fixed (the configured weights)."
    every = f"recomputed every {experiment.refresh_minutes} min"
    if allocation is None:
        return f"Allocation: thompson ({every}); not running, so no weights in force."
    shares = ", ".join(
        f"{escape(arm)} {share:.1%}"
        for arm, share in zip(allocation.arms, allocation.shares, strict=True)
    )
    counted = f"counts as of {allocation.as_of:%Y-%m-%d %H:%M} UTC"
    if allocation.adapted:
        return f"Allocation: thompson, weights in force {shares} ({counted}, {every})."
    return (
        f"Allocation: thompson, the configured weights {shares} until every arm has "
        f"{experiment.min_exposures_per_arm} exposures ({counted}, {every})."
    )


def stray_arms(experiment: Experiment, outcomes: ExperimentOutcomes) -> list[str]:
    """Arms with exposures that the rule file no longer names (renamed or removed)."""
    return sorted(set(outcomes.arms) - {arm.name for arm in experiment.arms})


def _percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def _probability(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_report(
    console: Console,
    experiment: Experiment,
    analysis: ExperimentAnalysis,
    outcomes: ExperimentOutcomes,
    allocation: Allocation | None = None,
) -> None:
    """The report as a table with a legend, the split check and the reading advice;
    ``allocation``: the weights in force of an adaptive experiment."""
    console.print(
        f"[bold]{escape(experiment.name)}[/bold] ({experiment.status}): goal "
        f"{experiment.goal} within {experiment.window_days} days of the first exposure; "
        f"control: {escape(analysis.control)}"
    )
    console.print(describe_allocation(experiment, allocation))
    # Short headers: the table fits an 80-column terminal; the legend below explains them.
    table = Table(
        "arm",
        "exposed",
        "conv.",
        "rate",
        "rev./exp.",
        "uplift",
        "95% CI",
        "p",
        "P(>ctl)",
        "decision",
    )
    table.columns[0].no_wrap = True
    for arm in analysis.arms:
        interval = (
            "-"
            if arm.ci_low is None or arm.ci_high is None
            else f"{_percent(arm.ci_low, signed=True)} to {_percent(arm.ci_high, signed=True)}"
        )
        table.add_row(
            escape(arm.name),
            str(arm.exposures),
            str(arm.conversions),
            _percent(arm.rate),
            "-" if arm.revenue_per_exposed is None else f"{arm.revenue_per_exposed:.2f}",
            _percent(arm.uplift, signed=True),
            interval,
            _probability(arm.p_value),
            _probability(arm.prob_beat_control),
            "control" if arm.verdict is None else arm.verdict.value,
        )
    # In a narrow terminal a cell wraps rather than losing its digits.
    for column in table.columns[1:]:
        column.overflow = "fold"
    console.print(table)
    console.print(
        "conv.: converted within the window; rev./exp.: revenue per exposed customer; "
        "uplift and its 95% CI: the rate minus control's; p: two-sided p-value against "
        "control; P(>ctl): probability of beating control (Beta-Binomial)."
    )
    srm = analysis.srm_p_value
    if experiment.adaptive:
        console.print(
            "Sample ratio: not checked (the weights follow the results). With adaptive "
            "allocation the p-value, the interval and the decision assume a fixed split and "
            "are only indicative; P(>ctl) reads as usual."
        )
    elif srm is None:
        console.print("Sample ratio: not enough exposures to check.")
    elif analysis.srm_flagged:
        console.print(
            f"[bold red]Sample ratio mismatch[/bold red] (p = {srm:.2g} < 0.001): the arms' "
            "exposures do not follow the weights; find the cause before reading the results."
        )
    else:
        console.print(f"Sample ratio: consistent with the weights (p = {srm:.3f}).")
    console.print(
        "The decision column is safe to read at any time (an always-valid sequential test); "
        "the p-value and interval assume the sample size was fixed in advance."
    )
    if not outcomes.arms:
        console.print("No exposures yet: the experiment has not been shown to anyone.")


def write_html_report(
    path: Path, experiment: Experiment, analysis: ExperimentAnalysis, outcomes: ExperimentOutcomes
) -> None:
    """The HTML report with its pictures, written to ``path``.

    Raises:
        MissingExtraError: matplotlib (the ``reports`` extra) is not installed.
        ReportWriteError: ``path`` cannot be written.
    """
    cumulative: list[Any] = [(day.day, dict(day.arms)) for day in outcomes.daily]
    page = render_html(analysis, experiment.name, cumulative)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ReportWriteError(f"{path}: cannot be written ({reason})") from None
