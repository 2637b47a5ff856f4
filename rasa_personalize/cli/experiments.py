"""``personalize experiments list|report``: the rule file's experiments and how each arm does."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    EXIT_USAGE,
    PANEL_DECISIONS,
    DatabaseOption,
    batch_store,
    console,
    errors,
    fail,
    guarded,
    load_cli_settings,
    run_job,
)

if TYPE_CHECKING:
    from rasa_personalize.experiments.stats import ExperimentAnalysis
    from rasa_personalize.rules.experiments import Allocation, Experiment
    from rasa_personalize.settings import Settings
    from rasa_personalize.store.experiments import ExperimentOutcomes

experiments_app = typer.Typer(
    help="A/B experiments of the rule file: arms, exposures and results.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

RulesOption = Annotated[
    Path | None,
    typer.Option(
        "--rules", help="Rule file (default: $PERSONALIZE_RULES_PATH).", show_default=False
    ),
]


def register_commands(app: typer.Typer) -> None:
    """Add the ``experiments`` group to ``app``."""
    app.add_typer(experiments_app, name="experiments", rich_help_panel=PANEL_DECISIONS)


def _experiments(settings: Settings, path: Path | None) -> tuple[Experiment, ...]:
    """The rule file's experiments; a file with problems is one clear error."""
    from rasa_personalize.rules import RulesError, load_rules

    try:
        return load_rules(path or settings.rules_path).experiments
    except RulesError as error:
        fail(str(error), EXIT_USAGE)


@experiments_app.command("list")
def list_experiments(
    rules_path: RulesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Every experiment: status, who is eligible, arms with weights, goal, exposures so far;
    for a running ``allocation: thompson`` one, the weights the servers use now."""
    from rasa_personalize.experiments.report import allocation_json

    settings = load_cli_settings(database_url)
    experiments = _experiments(settings, rules_path)
    counts, allocations = (
        run_job(lambda: _counts_and_allocations(settings, experiments)) if experiments else ({}, {})
    )
    rows: list[dict[str, Any]] = [
        {
            "name": experiment.name,
            "status": experiment.status,
            "goal": experiment.goal,
            "window_days": experiment.window_days,
            "arms": [
                {
                    "name": arm.name,
                    "weight": arm.weight,
                    "then": dict(arm.then),
                    "exposures": counts.get((experiment.name, arm.name), 0),
                }
                for arm in experiment.arms
            ],
            **allocation_json(experiment, allocations.get(experiment.name)),
        }
        for experiment in experiments
    ]
    if as_json:
        typer.echo(json.dumps({"experiments": rows}))
        return
    if not rows:
        console.print("No experiments in the rule file (see docs/experiments.md).")
        return
    table = Table("experiment", "status", "goal", "allocation", "arms (weight: exposures)")
    for row in rows:
        now = row.get("current_weights") or {}
        # One arm per line; an adaptive experiment's arms with their share now.
        arms = "\n".join(
            f"{arm['name']} ({arm['weight']:g}: {arm['exposures']}"
            + (f"; now {now[arm['name']]:.1%})" if arm["name"] in now else ")")
            for arm in row["arms"]
        )
        allocation = row["allocation"]
        if allocation == "thompson" and not now:
            allocation += "\n(not running)"
        elif allocation == "thompson":
            minimum = row["min_exposures_per_arm"]
            allocation += "\nadapting" if row["adapted"] else f"\nfixed until {minimum}/arm"
        table.add_row(
            escape(row["name"]),
            row["status"],
            f"{row['goal']}, {row['window_days']} d",
            allocation,
            escape(arms),
        )
    console.print(table)


async def _counts_and_allocations(
    settings: Settings, experiments: tuple[Experiment, ...]
) -> tuple[dict[tuple[str, str], int], dict[str, Allocation]]:
    """Exposures per (experiment, arm), and the weights in force of the running adaptive
    experiments: computed as every server computes them (the same counts, the same draws)."""
    from rasa_personalize.clock import utc_now
    from rasa_personalize.experiments.allocation import read_allocation, store_counts
    from rasa_personalize.store.experiments import count_exposures

    store = batch_store(settings)
    try:
        async with store.sessions() as session:
            counts = await guarded(count_exposures(session))
        read_counts, now = store_counts(store.arm_counts), utc_now()
        allocations = {
            experiment.name: await guarded(read_allocation(experiment, read_counts, now))
            for experiment in experiments
            if experiment.running and experiment.adaptive
        }
        return counts, allocations
    finally:
        await store.dispose()


@experiments_app.command("report")
def report(
    name: Annotated[str, typer.Argument(help="The experiment's name in the rule file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write an HTML report with pictures."),
    ] = None,
    rules_path: RulesOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Each arm against the control: exposures, conversions, rate, revenue per exposed
    customer, uplift with its 95% interval, p-value, probability of beating control, the
    sequential decision, and a sample-ratio-mismatch check of the split.
    """
    from rasa_personalize.rules.problems import did_you_mean

    settings = load_cli_settings(database_url)
    experiments = _experiments(settings, rules_path)
    chosen = next((e for e in experiments if e.name == name), None)
    if chosen is None:
        known = [experiment.name for experiment in experiments]
        hint = did_you_mean(name, known) if known else ""
        listed = f"; experiments: {', '.join(known)}" if known else "; the rule file has none"
        fail(f"no experiment named {name!r}{hint}{listed}", EXIT_USAGE)
    outcomes, allocation = run_job(lambda: _outcomes(settings, chosen))
    analysis = _analysis(chosen, outcomes)
    if html is not None:
        _write_html(html, chosen, analysis, outcomes)
    from rasa_personalize.experiments.report import allocation_json, print_report

    if as_json:
        document = {**analysis.as_json(chosen.name), **allocation_json(chosen, allocation)}
        typer.echo(json.dumps(document))
        return
    print_report(console, chosen, analysis, outcomes, allocation)
    if html is not None:
        console.print(f"HTML report: {escape(str(html))}")


async def _outcomes(
    settings: Settings, experiment: Experiment
) -> tuple[ExperimentOutcomes, Allocation | None]:
    """The outcomes, and for a running adaptive experiment the weights in force."""
    from rasa_personalize.clock import utc_now
    from rasa_personalize.experiments.allocation import read_allocation, store_counts
    from rasa_personalize.store.experiments import experiment_outcomes

    store = batch_store(settings)
    try:
        async with store.sessions() as session:
            outcomes = await guarded(
                experiment_outcomes(
                    session,
                    experiment.name,
                    experiment.goal,
                    timedelta(days=experiment.window_days),
                )
            )
        allocation = None
        if experiment.running and experiment.adaptive:
            read_counts = store_counts(store.arm_counts)
            allocation = await guarded(read_allocation(experiment, read_counts, utc_now()))
        return outcomes, allocation
    finally:
        await store.dispose()


def _analysis(experiment: Experiment, outcomes: ExperimentOutcomes) -> ExperimentAnalysis:
    from rasa_personalize.experiments.report import analysis_of, stray_arms

    gone = stray_arms(experiment, outcomes)
    if gone:
        # An arm renamed or removed: its customers are not in the comparison.
        errors.print(
            f"[yellow]warning:[/yellow] exposures of arms no longer in the file are left "
            f"out: {escape(', '.join(gone))}"
        )
    return analysis_of(experiment, outcomes)


def _write_html(
    path: Path, experiment: Experiment, analysis: ExperimentAnalysis, outcomes: ExperimentOutcomes
) -> None:
    from rasa_personalize.errors import PersonalizeError
    from rasa_personalize.experiments.report import write_html_report

    try:
        write_html_report(path, experiment, analysis, outcomes)
    except PersonalizeError as error:  # matplotlib missing, or an unwritable path
        fail(error)
