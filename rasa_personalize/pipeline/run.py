"""One run of the offline pipeline: each stage timed, a failure named, promotions reported.

The stages, in order (:data:`STAGES`), each the function its own command calls:

1. ``metrics``: every profile's behavioural metrics (``personalize profile rebuild``);
2. ``train``: the content, recommender and bought-together models (``personalize
   train``); the recommender serves only if the guardrail lets it
   (:mod:`rasa_personalize.recommend.guardrail`), else the stage ends ``refused``;
3. ``segment``: k-means segments (``personalize segment``);
4. ``tag``: the tag rules (``personalize tag``); without a rule file the stage is
   skipped, as the event worker does;
5. ``propensity``: purchase propensity, behind the same guardrail on ROC AUC
   (``personalize propensity train``);
6. ``precompute``: each customer's top items from the serving recommender (``personalize
   train --precompute``); skipped when ``train`` was refused, as the serving model and
   its lists did not change.

A stage that fails ends the run: the stages after it are reported ``not run``, because
each may rely on what the failed one should have written. A refusal is not a failure.
Each stage commits its own work, so a failure never undoes the stages before it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from rasa_personalize.cache.precomputed import PrecomputedCache
from rasa_personalize.cache.profiles import profile_cache_for
from rasa_personalize.errors import InvalidInputError, PersonalizeError
from rasa_personalize.pipeline import STAGES
from rasa_personalize.propensity.training import train_propensity
from rasa_personalize.recommend.training import precompute_serving, train_from_store
from rasa_personalize.segments.assign import segment_customers
from rasa_personalize.segments.clustering import CustomerSegmenter
from rasa_personalize.segments.errors import TagRulesError
from rasa_personalize.segments.tag_rules import TagRules, load_ingest_tag_rules
from rasa_personalize.segments.tags import apply_tag_rules
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.repository import rebuild_profile_metrics

if TYPE_CHECKING:
    from rasa_personalize.recommend.als import AlsParams
    from rasa_personalize.recommend.guardrail import Verdict
    from rasa_personalize.recommend.protocols import Validation
    from rasa_personalize.settings import Settings
    from rasa_personalize.store.sql_store import SqlStore

logger = logging.getLogger(__name__)

# How a stage ended.
OK: Final = "ok"
REFUSED: Final = "refused"  # trained, but the guardrail kept the new model as a candidate
SKIPPED: Final = "skipped"
FAILED: Final = "failed"
NOT_RUN: Final = "not run"  # after a failed stage


class PipelineError(InvalidInputError):
    """The pipeline cannot start: an unknown stage, or a tag rule file with problems."""


@dataclass(frozen=True)
class StageResult:
    """How one stage ended, in how many seconds, and one line about it."""

    name: str
    status: str
    seconds: float
    detail: str

    def to_json_dict(self) -> dict[str, Any]:
        """The stage as JSON-ready values."""
        return {
            "name": self.name,
            "seconds": round(self.seconds, 2),
            "status": self.status,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class PipelineReport:
    """What a run did: every stage in order, and the guardrails' verdicts.

    Attributes:
        stages: one result per stage of :data:`STAGES`, in order.
        promoted: per guarded model (``recommender``, ``propensity``), its new version
            and verdict; absent when the stage did not train one.
        warnings: things that went wrong without failing a stage (Redis unreachable).
    """

    stages: tuple[StageResult, ...]
    promoted: Mapping[str, tuple[str, Verdict]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> StageResult | None:
        """The stage that failed, if one did."""
        return next((stage for stage in self.stages if stage.status == FAILED), None)

    @property
    def seconds(self) -> float:
        """The stages' time together."""
        return sum(stage.seconds for stage in self.stages)

    def to_json_dict(self) -> dict[str, Any]:
        """``{"stages": [{"name", "seconds", "status", "detail"}], "promoted": {...}}``."""
        failed = self.failed
        return {
            "stages": [stage.to_json_dict() for stage in self.stages],
            "promoted": {
                model: {"version": version, **verdict.to_json_dict()}
                for model, (version, verdict) in self.promoted.items()
            },
            "failed": failed.name if failed is not None else None,
            "warnings": list(self.warnings),
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class PipelineOptions:
    """How to run the pipeline.

    Attributes:
        skip: stages not to run (reported ``skipped``).
        force: promote newly trained models whatever the guardrails say.
        tag_rules: the tag rule file (None: ``settings.tags_path``).
        now: the moment the run treats as now (None: the clock); for replays and tests.
        train_params: fit the recommender with these ALS parameters instead of choosing
            them on validation (for tests and experiments; the command never sets it).
        validation: how the ``train`` stage chooses the recommender, as ``personalize
            train --validation`` does: "random" or "time" (``train_from_store``).
    """

    skip: frozenset[str] = frozenset()
    force: bool = False
    tag_rules: Path | None = None
    now: datetime | None = None
    train_params: AlsParams | None = None
    validation: Validation = "random"


class PipelineListener(Protocol):
    """Told what the pipeline does while it runs (a progress display, logs)."""

    def stage_started(self, name: str) -> None:
        """A stage begins."""

    def stage_progress(self, name: str, step: str, done: int, total: int) -> None:
        """A step of a stage moved on: ``done`` of ``total``."""

    def stage_finished(self, result: StageResult) -> None:
        """A stage ended (also a skipped one, and each not run after a failure)."""


class _Silent:
    def stage_started(self, name: str) -> None:
        pass

    def stage_progress(self, name: str, step: str, done: int, total: int) -> None:
        pass

    def stage_finished(self, result: StageResult) -> None:
        pass


def check_stages(names: Collection[str]) -> frozenset[str]:
    """The stage names as a set.

    Raises:
        PipelineError: a name is not a stage (the message lists the stages).
    """
    unknown = sorted(set(names) - set(STAGES))
    if unknown:
        raise PipelineError(
            f"unknown stage {', '.join(map(repr, unknown))}; the stages are {', '.join(STAGES)}"
        )
    return frozenset(names)


def load_stage_rules(settings: Settings, options: PipelineOptions) -> TagRules | None:
    """The tag rules of the ``tag`` stage, read before anything runs: None when the stage
    is skipped or there is no rule file.

    Raises:
        PipelineError: the file exists but has problems (all listed, with their lines).
    """
    if "tag" in options.skip:
        return None
    try:
        return load_ingest_tag_rules(options.tag_rules or settings.tags_path)
    except TagRulesError as error:
        raise PipelineError(f"stage tag: {error}") from None


@dataclass
class _Job:
    """What the stages share within one run."""

    store: SqlStore
    settings: Settings
    options: PipelineOptions
    rules: TagRules | None
    progress: Callable[[str, int, int], None]
    promoted: dict[str, tuple[str, Verdict]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    train_refused: bool = False

    async def invalidate_profiles(self) -> None:
        """Outdate cached profile snapshots after a stage changed profiles (no Redis: nothing)."""
        cache = profile_cache_for(self.settings, timeout_s=5.0)
        if cache is None:
            return
        try:
            if not await cache.invalidate_all():
                self.warnings.append(
                    "Redis did not answer, so the profile cache was not invalidated: servers "
                    "may answer from the old profiles for up to "
                    f"{self.settings.profile_cache_ttl_s:.0f} s (PERSONALIZE_PROFILE_CACHE_TTL_S)"
                )
        finally:
            await cache.close()


async def _metrics(job: _Job) -> tuple[str, str]:
    job.progress("profiles", 0, 1)
    async with job.store.sessions.begin() as session:
        written = await rebuild_profile_metrics(session, job.options.now)
    job.progress("profiles", 1, 1)
    await job.invalidate_profiles()
    return OK, f"{written:,} profiles changed"


async def _train(job: _Job) -> tuple[str, str]:
    report = await train_from_store(
        job.store,
        job.settings.model_dir,
        params=job.options.train_params,
        progress=job.progress,
        force=job.options.force,
        validation=job.options.validation,
    )
    figures = (
        f"{report.interactions:,} interactions, {report.customers:,} customers x "
        f"{report.products:,} products"
    )
    verdict = report.guardrail
    if verdict is None:  # training always judges; this keeps the type checker informed
        return OK, f"recommender {report.version} serves ({figures})"
    job.promoted["recommender"] = (report.version, verdict)
    if not report.promoted:
        job.train_refused = True
        return REFUSED, f"recommender {report.version} {verdict.reason}"
    return OK, f"recommender {report.version} serves ({figures}): {verdict.reason}"


async def _segment(job: _Job) -> tuple[str, str]:
    async with job.store.sessions.begin() as session:
        run = await segment_customers(
            session,
            segmenter=CustomerSegmenter("kmeans", random_state=0, n_threads=1),
            model_dir=job.settings.model_dir,
            now=job.options.now,
            progress=job.progress,
        )
    await job.invalidate_profiles()
    return OK, (
        f"{len(run.segmentation):,} customers in {run.model.metrics.get('k')} clusters "
        f"(k-means, model {run.model.version}); {run.stored:,} assignments stored"
    )


async def _tag(job: _Job) -> tuple[str, str]:
    if job.rules is None:
        path = job.options.tag_rules or job.settings.tags_path
        return SKIPPED, f"no tag rule file at {path}"
    job.progress("rules", 0, 1)
    async with job.store.sessions.begin() as session:
        run = await apply_tag_rules(session, job.rules, now=job.options.now)
    job.progress("rules", 1, 1)
    await job.invalidate_profiles()
    job.warnings.extend(str(warning) for warning in run.warnings)
    tagged = sum(outcome.tagged for outcome in run.outcomes)
    removed = sum(outcome.removed for outcome in run.outcomes) + run.removed_orphans
    return OK, f"{len(run.outcomes)} rules: {tagged:,} rule tags held, {removed:,} removed"


async def _propensity(job: _Job) -> tuple[str, str]:
    async with job.store.sessions.begin() as session:
        run = await train_propensity(
            session,
            now=job.options.now,
            model_dir=job.settings.model_dir,
            progress=job.progress,
            force=job.options.force,
        )
    report = run.report
    verdict = report.guardrail
    if verdict is not None:
        job.promoted["propensity"] = (report.model_version, verdict)
    if not report.promoted and verdict is not None:
        return REFUSED, f"propensity model {report.model_version} {verdict.reason}"
    await job.invalidate_profiles()
    return OK, (
        f"propensity model {report.model_version}: ROC AUC {report.model.auc:.3f} on "
        f"{report.test_customers:,} held-out customers; {report.customers:,} customers scored"
    )


async def _precompute(job: _Job) -> tuple[str, str]:
    if job.train_refused:
        return SKIPPED, "the new recommender was refused: the serving one and its lists stay"
    redis_url = job.settings.redis_url
    cache = PrecomputedCache(redis_url, timeout_s=5.0) if redis_url else None
    try:
        report = await precompute_serving(
            job.store, job.settings.model_dir, progress=job.progress, cache=cache
        )
    finally:
        if cache is not None:
            await cache.close()
    return OK, f"{report.lists:,} lists from recommender {report.version}"


_RUNNERS: Final = {
    "metrics": _metrics,
    "train": _train,
    "segment": _segment,
    "tag": _tag,
    "propensity": _propensity,
    "precompute": _precompute,
}


def _failure(error: Exception) -> str:
    """One line about a failure, without personal data."""
    if isinstance(error, PersonalizeError):
        return str(error)
    if isinstance(error, DatabaseError):
        # Its message may quote SQL parameters: the class name only.
        return (
            f"the store cannot answer ({type(error).__name__}); is it running, and did you "
            "run `personalize db upgrade`?"
        )
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error.strerror or error}"
    return f"unexpected {type(error).__name__} (the log has the traceback)"


async def run_pipeline(
    store: SqlStore,
    settings: Settings,
    options: PipelineOptions | None = None,
    *,
    listener: PipelineListener | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> PipelineReport:
    """Run the stages in order (see the module docstring); never raises for a stage's
    failure: the report names it.

    Args:
        store: the store every stage reads and writes (the caller disposes of it).
        settings: the model directory, Redis, the tag rule file.
        options: what to skip, ``force``, ``now``.
        listener: told about each stage as it starts, moves on and ends.
        clock: seconds, for the stages' times.

    Raises:
        PipelineError: before any stage runs: an unknown stage to skip, or a tag rule
            file with problems.
    """
    options = options or PipelineOptions()
    check_stages(options.skip)
    rules = load_stage_rules(settings, options)
    told: PipelineListener = listener or _Silent()
    current = {"stage": STAGES[0]}
    job = _Job(
        store,
        settings,
        options,
        rules,
        progress=lambda step, done, total: told.stage_progress(current["stage"], step, done, total),
    )
    results: list[StageResult] = []
    failed = False
    for name in STAGES:
        if failed or name in options.skip:
            result = StageResult(
                name, NOT_RUN if failed else SKIPPED, 0.0, "" if failed else "--skip"
            )
            results.append(result)
            told.stage_finished(result)
            continue
        current["stage"] = name
        told.stage_started(name)
        started = clock()
        try:
            status, detail = await _RUNNERS[name](job)
        # Every failure ends the run with its stage named; our own errors and the
        # store's carry their message, anything else is a bug: logged with its traceback.
        except Exception as error:
            if not isinstance(error, PersonalizeError):
                logger.exception("pipeline stage %s failed", name)
            status, detail = FAILED, _failure(error)
            failed = True
        result = StageResult(name, status, clock() - started, detail)
        logger.info("pipeline stage %s: %s in %.1f s: %s", name, status, result.seconds, detail)
        results.append(result)
        told.stage_finished(result)
    return PipelineReport(tuple(results), dict(job.promoted), tuple(job.warnings))
