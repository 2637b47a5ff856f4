"""``personalize pipeline run|schedule``: the offline jobs in order, once or every so often.

Progress goes to stderr; ``run --json`` prints exactly one JSON object on stdout. The
stages are the plain functions the separate commands call (:mod:`rasa_personalize.pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rasa_personalize.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    PANEL_MODELS,
    DatabaseOption,
    batch_store,
    console,
    errors,
    fail,
    load_cli_settings,
)
from rasa_personalize.cli.train import ValidationName
from rasa_personalize.errors import PersonalizeError
from rasa_personalize.pipeline import STAGES

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from rasa_personalize.pipeline.run import PipelineOptions, PipelineReport, StageResult
    from rasa_personalize.recommend.protocols import Validation
    from rasa_personalize.settings import Settings

pipeline_app = typer.Typer(
    help="The offline jobs in order (metrics, train, segment, tag, propensity, precompute), "
    "once or on a schedule.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


class Stage(str, Enum):
    """The pipeline's stages, in order (``rasa_personalize.pipeline.STAGES``)."""

    metrics = "metrics"
    train = "train"
    segment = "segment"
    tag = "tag"
    propensity = "propensity"
    precompute = "precompute"


SkipOption = Annotated[
    list[Stage] | None,
    typer.Option(
        "--skip",
        metavar="STAGE",
        help="Do not run this stage (repeat for several): " + ", ".join(STAGES) + ".",
        case_sensitive=False,
        show_default=False,
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Serve newly trained models even when the guardrail would keep them as "
        "candidates (below 95% of the serving model's precision@10 or ROC AUC).",
    ),
]
TagRulesOption = Annotated[
    Path | None,
    typer.Option(
        "--tag-rules",
        help="Tag rule file (default: $PERSONALIZE_TAGS_PATH or tags.yml; no file: the "
        "tag stage is skipped).",
        show_default=False,
    ),
]
ValidationOption = Annotated[
    ValidationName,
    typer.Option(
        "--validation",
        help="How the train stage chooses the recommender, as `personalize train "
        "--validation` does. random: seeded 80/20 splits of the interactions; time: each "
        "customer's newest 20% of interactions, in the order they were stored (EASE's "
        "recency is then tried too). The default, random, assumes nothing about that "
        "order; take time when the store receives its events as they happen.",
        case_sensitive=False,
    ),
]

_STATUS_STYLE = {
    "ok": "green",
    "refused": "yellow",
    "skipped": "dim",
    "failed": "red",
    "not run": "dim",
}


def register_commands(app: typer.Typer) -> None:
    """Add the ``pipeline`` group to ``app``."""
    app.add_typer(pipeline_app, name="pipeline", rich_help_panel=PANEL_MODELS)


def _options(
    skip: list[Stage] | None,
    force: bool,
    tag_rules: Path | None,
    now: datetime | None = None,
    validation: ValidationName = ValidationName.random,
) -> PipelineOptions:
    from rasa_personalize.pipeline.run import PipelineOptions

    return PipelineOptions(
        skip=frozenset(stage.value for stage in skip or ()),
        force=force,
        tag_rules=tag_rules,
        now=now,
        validation=_protocol(validation),
    )


def _protocol(name: ValidationName) -> Validation:
    """The option as the protocol name ``train_from_store`` takes."""
    return "time" if name is ValidationName.time else "random"


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO time such as 2026-06-01T12:00:00+00:00",
            param_hint="--as-of",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _check_before_running(settings: Settings, options: PipelineOptions) -> None:
    """Exit 2 now, before minutes of training, if the tag rule file has problems."""
    from rasa_personalize.pipeline.run import PipelineError, load_stage_rules

    try:
        load_stage_rules(settings, options)
    except PipelineError as error:
        fail(error, EXIT_USAGE)


class _Display:
    """The progress on stderr: the stage running, its steps, a line per finished stage."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        )
        self.overall: TaskID = self.progress.add_task("pipeline", total=len(STAGES))
        self.steps: dict[str, TaskID] = {}

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def stage_started(self, name: str) -> None:
        self.progress.update(self.overall, description=f"pipeline: {name}")

    def stage_progress(self, name: str, step: str, done: int, total: int) -> None:
        label = f"  {name}: {step}"
        if label not in self.steps:
            self.steps[label] = self.progress.add_task(label, total=total)
        self.progress.update(self.steps[label], completed=done, total=total)

    def stage_finished(self, result: StageResult) -> None:
        for label in [label for label in self.steps if label.startswith(f"  {result.name}:")]:
            self.progress.remove_task(self.steps.pop(label))
        self.progress.advance(self.overall)
        _print_stage(result)


def _print_stage(result: StageResult) -> None:
    style = _STATUS_STYLE.get(result.status, "")
    timing = f" in {result.seconds:.1f} s" if result.status in {"ok", "refused", "failed"} else ""
    detail = f": {escape(result.detail)}" if result.detail else ""
    errors.print(
        f"[{style}]{result.status:>8}[/{style}] {result.name}{timing}{detail}", highlight=False
    )


async def _run_once(settings: Settings, options: PipelineOptions, display: Any) -> PipelineReport:
    from rasa_personalize.pipeline.run import run_pipeline

    store = batch_store(settings)
    try:
        return await run_pipeline(store, settings, options, listener=display)
    finally:
        await store.dispose()


@pipeline_app.command("run")
def run(
    skip: SkipOption = None,
    force: ForceOption = False,
    tag_rules: TagRulesOption = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Treat this ISO time as now (UTC if no zone) for metrics, segments, tags "
            "and propensity, e.g. to replay a past day.",
            show_default=False,
        ),
    ] = None,
    validation: ValidationOption = ValidationName.random,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Run the offline jobs once, in order: metrics, train, segment, tag, propensity,
    precompute.

    Each stage is what its own command does (`personalize profile rebuild`, `train`,
    `segment`, `tag`, `propensity train`, the lists of `train --precompute`). A new
    recommender serves only if its precision@10 on each customer's most recent
    interactions is at least 95% of the serving model's on the same hold-out (the
    propensity model likewise on ROC AUC); otherwise it is kept as a candidate, the
    stage ends `refused`, and precompute is skipped. A failed stage is named and stops
    the run (exit 1); a refusal is not a failure (exit 0). See docs/pipeline.md.
    """
    now = _as_of(as_of)
    settings = load_cli_settings(database_url)
    options = _options(skip, force, tag_rules, now, validation)
    _check_before_running(settings, options)
    if force:
        errors.print(
            "[yellow]warning:[/yellow] --force: new models serve whatever the guardrails measure.",
            highlight=False,
        )
    try:
        with _Display() as display:
            report = asyncio.run(_run_once(settings, options, display))
    except PersonalizeError as error:
        fail(error)
    for warning in report.warnings:
        errors.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    if as_json:
        typer.echo(json.dumps(report.to_json_dict()))
    else:
        _print_summary(report)
    failed = report.failed
    if failed is not None:
        fail(f"stage {failed.name} failed: {failed.detail}", EXIT_FAILED)


def _print_summary(report: PipelineReport) -> None:
    table = Table(title=f"Pipeline: {report.seconds:.1f} s")
    table.add_column("stage", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    table.add_column("detail")
    for stage in report.stages:
        style = _STATUS_STYLE.get(stage.status, "")
        table.add_row(
            stage.name,
            f"[{style}]{stage.status}[/{style}]",
            f"{stage.seconds:.1f}" if stage.status in {"ok", "refused", "failed"} else "-",
            escape(stage.detail),
        )
    console.print(table)
    for model, (version, verdict) in report.promoted.items():
        state = (
            "[yellow]kept as a candidate[/yellow]"
            if not verdict.promoted
            else "[yellow]serves (forced)[/yellow]"
            if verdict.forced
            else "[green]serves[/green]"
        )
        console.print(f"{model} {version}: {state}", highlight=False)
        if not verdict.promoted:
            console.print(
                f"  `personalize models promote {version}` serves it anyway"
                if model == "recommender"
                else "  train it again with `--force` to store its scores anyway",
                highlight=False,
                markup=False,
            )


# -- schedule ---------------------------------------------------------------------------


def _interval(value: str) -> timedelta:
    from rasa_personalize.errors import InvalidInputError
    from rasa_personalize.pipeline.schedule import parse_duration

    try:
        return parse_duration(value)
    except InvalidInputError as error:
        raise typer.BadParameter(str(error), param_hint="--every") from None


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3_600)
    minutes, seconds_left = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds_left:02d}s" if minutes else f"{seconds_left}s"


class _Lines:
    """Progress of a scheduled run as log lines: one per finished stage, with the time."""

    def stage_started(self, name: str) -> None:
        pass

    def stage_progress(self, name: str, step: str, done: int, total: int) -> None:
        pass

    def stage_finished(self, result: StageResult) -> None:
        if result.status != "not run":
            errors.print(f"[dim]{_stamp()}[/dim]", end=" ", highlight=False)
            _print_stage(result)


@pipeline_app.command("schedule")
def schedule(
    every: Annotated[
        str,
        typer.Option(
            "--every",
            help="Time from the start of one run to the next: 30m, 6h, 24h, 1d, 1h30m "
            "(at least 1m).",
            show_default=False,
        ),
    ],
    runs: Annotated[
        int | None,
        typer.Option(
            "--runs",
            min=1,
            help="Stop after this many runs (default: run until stopped).",
            show_default=False,
        ),
    ] = None,
    skip: SkipOption = None,
    force: ForceOption = False,
    tag_rules: TagRulesOption = None,
    validation: ValidationOption = ValidationName.random,
    database_url: DatabaseOption = None,
) -> None:
    """Run the pipeline now and then every `--every`, until SIGTERM or Ctrl-C.

    The first run starts at once; each next one `--every` after the previous one
    started (a run longer than that is followed by the next at once). A failed run is
    logged and the schedule goes on. SIGTERM or Ctrl-C stops the schedule between runs:
    a run in progress finishes first (a second signal stops it at once). For cron or a
    systemd timer instead, call `personalize pipeline run`: see docs/pipeline.md.
    """
    interval = _interval(every)
    settings = load_cli_settings(database_url)
    options = _options(skip, force, tag_rules, validation=validation)
    _check_before_running(settings, options)
    first = f"{runs} run{'s' if runs != 1 else ''}, " if runs else ""
    errors.print(
        f"{_stamp()} pipeline every {every.strip()} ({first}the first now); SIGTERM or "
        "Ctrl-C stops it between runs.",
        highlight=False,
    )
    state = asyncio.run(_schedule(settings, options, interval, runs))
    if state.cut_short:
        fail(
            f"schedule stopped during run {state.runs}: the stage it was in was rolled back",
            EXIT_FAILED,
        )
    errors.print(
        f"{_stamp()} schedule stopped after {state.runs} run{'s' if state.runs != 1 else ''}.",
        highlight=False,
    )


@dataclass
class _ScheduleState:
    """What the signal handler needs to know about the schedule."""

    running: bool = False
    signals: int = 0
    runs: int = 0
    cut_short: bool = False  # a second signal stopped a run in progress


async def _schedule(
    settings: Settings, options: PipelineOptions, interval: timedelta, runs: int | None
) -> _ScheduleState:
    from rasa_personalize.pipeline.schedule import StopSignal, run_schedule

    stop = StopSignal()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    state = _ScheduleState()

    def on_signal(name: str) -> None:
        state.signals += 1
        stop.set()
        if state.signals > 1 and main is not None:
            state.cut_short = state.running
            errors.print(f"{_stamp()} {name} again: stopping now.", highlight=False)
            main.cancel()
        elif state.running:
            errors.print(
                f"{_stamp()} {name}: stopping after the current run (again: at once).",
                highlight=False,
            )

    handled: list[signal.Signals] = []
    for number in (signal.SIGTERM, signal.SIGINT):
        # Not on Windows' event loop: there Ctrl-C interrupts the run as usual.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(number, on_signal, number.name)
            handled.append(number)

    async def run_once() -> PipelineReport:
        state.running = True
        state.runs += 1
        errors.print(f"{_stamp()} run {state.runs} starts.", highlight=False)
        try:
            return await _run_once(settings, options, _Lines())
        finally:
            state.running = False

    def on_result(report: PipelineReport) -> None:
        failed = report.failed
        outcome = (
            f"[red]failed[/red] at stage {failed.name}: {escape(failed.detail)}"
            if failed is not None
            else "[green]done[/green]"
        )
        errors.print(
            f"{_stamp()} run {state.runs} {outcome} ({report.seconds:.1f} s).",
            highlight=False,
        )

    def on_error(error: BaseException) -> None:
        reason = str(error) if isinstance(error, PersonalizeError) else type(error).__name__
        errors.print(
            f"{_stamp()} run {state.runs} [red]failed[/red]: {escape(reason)}", highlight=False
        )

    def on_wait(seconds: float) -> None:
        errors.print(f"{_stamp()} next run in {_duration(seconds)}.", highlight=False)

    try:
        await run_schedule(
            run_once,
            interval,
            stop=stop,
            runs=runs,
            on_result=on_result,
            on_error=on_error,
            on_wait=on_wait,
        )
    except asyncio.CancelledError:
        pass  # a second signal: stopped at once (on_signal noted whether a run was cut)
    finally:
        for number in handled:
            loop.remove_signal_handler(number)
    return state
