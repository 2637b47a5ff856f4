"""Prometheus metrics of the action server, the stream worker and the broker consumer,
defined in one place.

The hot path records at a few choke points through the small functions below (an action
run, a fallback to the default slots, a profile cache lookup, a served recommendation
list); each costs about a microsecond. ``GET /metrics`` on the action server
(:func:`attach_metrics_route`) and on ``personalize worker --metrics-port`` and
``personalize broker --metrics-port`` (:mod:`rasa_personalize.events.probes`) render them
with :func:`exposition`.

No label ever holds a customer id, a customer key or any other value from a request:
labels are action names (only those the executor has registered), the fixed reasons,
results, sources and outcomes named here, the model version and the event stream's key.
(The broker's Rasa queue is no label: one consumer process reads one queue.)

**Several server processes.** ``personalize serve --workers N`` runs N processes on one
port, and a scrape reaches one of them. :func:`multiprocess_directory` sets up
prometheus_client's multi-process mode before the workers start: every process writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR``, and a scrape of any of them sums the
counters and histograms of all (gauges take the largest value of the live processes).
Without that variable (rasa-sdk's own server, a single process) the process's own
registry answers.

Nothing runs at import: prometheus_client is imported, and the metrics are registered,
when a process first records or renders one. That is also what lets
:func:`multiprocess_directory` choose the mode before prometheus_client is loaded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

from rasa_personalize.store.errors import is_outage

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector
    from sanic import Request, Sanic
    from sanic.response import HTTPResponse

logger = logging.getLogger(__name__)

T = TypeVar("T")

METRICS_PATH: Final = "/metrics"
# prometheus_client reads this variable when it is first imported, in every process.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

DefaultsReason = Literal["store_down", "timeout", "store_error", "unknown_customer", "no_consent"]
DEFAULTS_REASONS: Final[tuple[DefaultsReason, ...]] = (
    "store_down",
    "timeout",
    "store_error",
    "unknown_customer",
    "no_consent",
)
Dependency = Literal["store", "redis"]
DEPENDENCIES: Final[tuple[Dependency, ...]] = ("store", "redis")
# "local": answered from the process's own copy, which Redis's change feed vouches for.
CacheResult = Literal["hit", "local", "miss", "error"]
CACHE_RESULTS: Final[tuple[CacheResult, ...]] = ("hit", "local", "miss", "error")
RECOMMENDATION_SOURCES: Final = (
    "als",
    "session",
    "content",
    "segment_popular",
    "popular",
    "bought_together",
)
EventStage = Literal["api", "worker", "broker"]
EVENT_STAGES: Final[tuple[EventStage, ...]] = ("api", "worker", "broker")
EVENT_OUTCOMES: Final = ("accepted", "duplicate", "rejected", "suppressed")
# What became of each message `personalize broker` took from Rasa's queue.
BrokerMessageResult = Literal["interaction", "ignored", "dead_letter"]
BROKER_MESSAGE_RESULTS: Final[tuple[BrokerMessageResult, ...]] = (
    "interaction",
    "ignored",
    "dead_letter",
)

# Actions answer in milliseconds; the action budget (1.5 s by default) caps store waits.
ACTION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5, 5.0,
)  # fmt: skip
# A worker batch is one SQL transaction of up to a few thousand events.
BATCH_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

MODEL_TRAINED: Final = "personalize_model_trained_timestamp_seconds"
MODEL_AGE: Final = "personalize_model_age_seconds"
MODEL_AGE_HELP: Final = (
    "Seconds since the newest recommendation model any server process serves was trained."
)


class _Once(Generic[T]):
    """A group of metrics built on first use, once per process: registering twice fails."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            # Model loads record from a worker thread, the rest from the event loop.
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value


def _registry() -> CollectorRegistry:
    from prometheus_client import REGISTRY  # noqa: PLC0415  # imported on first use (module docstring)

    return REGISTRY


class ServerMetrics:
    """The action server's metrics. CLI jobs that share its code record them too; nobody
    scrapes those."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415  # first use

        self.action_seconds = Histogram(
            "personalize_action_seconds",
            "Time to run one custom action, by action name.",
            ["action"],
            buckets=ACTION_BUCKETS,
            registry=registry,
        )
        self.defaults = Counter(
            "personalize_defaults",
            "Answers that fell back to the default slots, by reason.",
            ["reason"],
            registry=registry,
        )
        self.breaker_open = Gauge(
            "personalize_breaker_open",
            "1 while a circuit breaker of this dependency is open (an outage not yet over).",
            ["dependency"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.cache_requests = Counter(
            "personalize_cache_requests",
            "Profile cache lookups, by result: hit (Redis), local (this process's copy), "
            "miss, error.",
            ["result"],
            registry=registry,
        )
        self.recommendations = Counter(
            "personalize_recommendations",
            "Recommendation lists served, by the strategy that chose them.",
            ["source"],
            registry=registry,
        )
        self.experiment_exposures = Counter(
            "personalize_experiment_exposures",
            "First exposures to an experiment's arm this process stored (the store drops "
            "those of customers without tracking consent).",
            ["experiment", "arm"],
            registry=registry,
        )
        self.model_info = Gauge(
            "personalize_model_info",
            "1 for the recommendation model version a server process serves.",
            ["version"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.model_trained = Gauge(
            MODEL_TRAINED,
            "When the served recommendation model was trained (Unix time), by version.",
            ["version"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        # Children resolved once: labels() takes a lock and builds a key on every call.
        self.defaults_by_reason = {r: self.defaults.labels(reason=r) for r in DEFAULTS_REASONS}
        self.cache_by_result = {r: self.cache_requests.labels(result=r) for r in CACHE_RESULTS}
        self.recommendations_by_source = {
            source: self.recommendations.labels(source=source) for source in RECOMMENDATION_SOURCES
        }
        self.breaker_by_dependency = {
            d: self.breaker_open.labels(dependency=d) for d in DEPENDENCIES
        }
        for child in self.breaker_by_dependency.values():
            child.set(0)
        self.action_by_name: dict[str, Histogram] = {}
        # The breakers of each dependency that are open now (weakly: a service that is
        # dropped takes its breakers along).
        self.open_breakers: dict[str, weakref.WeakSet[object]] = {
            dependency: weakref.WeakSet() for dependency in DEPENDENCIES
        }
        self.model_version: str | None = None
        # The age is derived when scraped; multi-process scrapes derive it themselves.
        registry.register(_ModelAge(self.model_trained, pass_through=False))


class EventMetrics:
    """Events by outcome: counted by the events API and by the stream worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter  # noqa: PLC0415  # first use

        self.events = Counter(
            "personalize_events",
            "Interaction events by outcome: stage api is what the events API answered "
            "(accepted: stored or queued), stage worker what the stream worker stored, "
            "stage broker what personalize broker stored of Rasa's events.",
            ["stage", "outcome"],
            registry=registry,
        )
        self.by_stage: dict[str, dict[str, Counter]] = {
            stage: {outcome: self.events.labels(stage=stage, outcome=outcome)
                    for outcome in EVENT_OUTCOMES}
            for stage in EVENT_STAGES
        }  # fmt: skip


class WorkerMetrics:
    """The stream worker's metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Gauge, Histogram  # noqa: PLC0415  # first use

        self.batch_seconds = Histogram(
            "personalize_worker_batch_seconds",
            "Time to store and acknowledge one batch of stream messages.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.stream_pending = Gauge(
            "personalize_stream_pending",
            "Messages in the event stream still to be stored (delivered or not).",
            ["stream"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.stream_dead_letters = Gauge(
            "personalize_stream_dead_letters",
            "Messages in the stream's dead letters, waiting for a person.",
            ["stream"],
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.stream_dirty = Gauge(
            "personalize_stream_dirty_customers",
            "Customers with stored events whose metrics and tags are not refreshed yet.",
            ["stream"],
            multiprocess_mode="livemax",
            registry=registry,
        )


class BrokerMetrics:
    """The metrics of ``personalize broker`` besides its events by outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415  # first use

        self.batch_seconds = Histogram(
            "personalize_broker_batch_seconds",
            "Time to store, dead-letter and acknowledge one batch of Rasa's messages.",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.messages = Counter(
            "personalize_broker_messages",
            "Messages taken from Rasa's queue and acknowledged, by result: interaction "
            "(it made one), ignored (bot utterances, actions, slots) or dead_letter (moved "
            "to <queue>.dead_letters).",
            ["result"],
            registry=registry,
        )
        self.conversations = Gauge(
            "personalize_broker_conversations",
            "Conversations whose sessions the consumer follows in memory (at the cap, the "
            "quietest are forgotten with their lengths).",
            multiprocess_mode="livemax",
            registry=registry,
        )
        self.by_result: dict[str, Counter] = {
            r: self.messages.labels(result=r) for r in BROKER_MESSAGE_RESULTS
        }


_server: Final = _Once(lambda: ServerMetrics(_registry()))
_events: Final = _Once(lambda: EventMetrics(_registry()))
_worker: Final = _Once(lambda: WorkerMetrics(_registry()))
_broker: Final = _Once(lambda: BrokerMetrics(_registry()))


def server_metrics() -> ServerMetrics:
    """This process's action server metrics (registered on first use)."""
    return _server.get()


def event_metrics() -> EventMetrics:
    """This process's event metrics (registered on first use)."""
    return _events.get()


def worker_metrics() -> WorkerMetrics:
    """This process's stream worker metrics (registered on first use)."""
    return _worker.get()


def broker_metrics() -> BrokerMetrics:
    """This process's broker consumer metrics (registered on first use)."""
    return _broker.get()


# -- recording: the action server --------------------------------------------------------


def observe_action(action: str, seconds: float) -> None:
    """One run of ``action`` took ``seconds``. ``action`` must be a registered name."""
    metrics = _server.get()
    child = metrics.action_by_name.get(action)
    if child is None:
        child = metrics.action_by_name[action] = metrics.action_seconds.labels(action=action)
    child.observe(seconds)


class _TimedRun:
    """An executor's ``run`` that times each call (see :func:`time_actions`).

    A class rather than a closure: rasa-sdk's server pickles the executor, with what is
    set on it, to start its worker processes.
    """

    def __init__(self, executor: Any) -> None:
        self.executor = executor

    async def __call__(self, action_call: Any, *args: Any, **kwargs: Any) -> Any:
        executor = self.executor
        started = time.perf_counter()
        try:
            # The class's run, looked up at each call: tracing may instrument it later.
            return await type(executor).run(executor, action_call, *args, **kwargs)
        finally:
            name = action_call.get("next_action") if isinstance(action_call, dict) else None
            if isinstance(name, str) and name in executor.actions:
                observe_action(name, time.perf_counter() - started)


def time_actions(executor: Any) -> None:
    """Time every action ``executor`` (rasa-sdk's ActionExecutor) runs. Idempotent.

    At the executor's ``run``, the one entry point of every action call (the plugin's
    actions and the user's, plain or streaming). Only names the executor has registered
    are recorded: the name comes from the request, and the label set must stay bounded.
    """
    if not isinstance(vars(executor).get("run"), _TimedRun):
        # rasa-sdk's webhook calls ``executor.run(action_call)``: the instance's wins.
        executor.run = _TimedRun(executor)


def count_defaults(reason: DefaultsReason) -> None:
    """An answer fell back to the default slots, for ``reason``."""
    _server.get().defaults_by_reason[reason].inc()


def store_failure_reason(error: BaseException) -> DefaultsReason:
    """Why a store read failed, from the ``StoreUnavailableError`` the engine raised.

    ``timeout``: the read waited out the action budget. ``store_error``: the store refused
    this request's values (the breaker stays closed). ``store_down``: everything else, an
    outage (refused or lost connection, a statement timeout in the database) or a breaker
    that is open after one, so the store was not even asked.
    """
    cause = error.__cause__
    if isinstance(cause, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if cause is not None and not is_outage(cause):
        return "store_error"
    return "store_down"


def breaker_changed(dependency: Dependency, breaker: object, *, is_open: bool) -> None:
    """``breaker`` (of ``dependency``) opened or closed: the gauge is 1 while any is open.

    Called on the transitions only (rare), never per call.
    """
    metrics = _server.get()
    failing = metrics.open_breakers[dependency]
    if is_open:
        failing.add(breaker)
    else:
        failing.discard(breaker)
    metrics.breaker_by_dependency[dependency].set(1 if failing else 0)


def count_cache(result: CacheResult) -> None:
    """One profile cache lookup: ``hit`` (Redis), ``local`` (this process's copy), ``miss``
    or ``error`` (Redis could not help)."""
    _server.get().cache_by_result[result].inc()


def count_recommendation(source: str) -> None:
    """A recommendation list chosen by strategy ``source`` was served."""
    metrics = _server.get()
    child = metrics.recommendations_by_source.get(source)
    if child is None:  # a strategy added to the code later: still a fixed name, never input
        child = metrics.recommendations_by_source[source] = metrics.recommendations.labels(
            source=source
        )
    child.inc()


def count_exposure(experiment: str, arm: str) -> None:
    """A first exposure to ``experiment``'s ``arm`` was stored. Both names come from the
    rule file (validated, at most 64 characters), never from a request."""
    _server.get().experiment_exposures.labels(experiment=experiment, arm=arm).inc()


def model_loaded(version: str, trained_at: str) -> None:
    """This process now serves model ``version``, trained at ``trained_at`` (ISO 8601).

    The previous version's series drop to 0 rather than disappear: a multi-process
    directory cannot forget a series, and 0 is what a dashboard should show for it.
    """
    metrics = _server.get()
    previous = metrics.model_version
    if previous is not None and previous != version:
        metrics.model_info.labels(version=previous).set(0)
        metrics.model_trained.labels(version=previous).set(0)
    metrics.model_info.labels(version=version).set(1)
    metrics.model_version = version
    try:
        when = datetime.fromisoformat(trained_at)
    except ValueError:  # a stamp edited by hand: the model serves, its age is unknown
        logger.warning("Model %s has an unreadable trained_at; its age is not reported.", version)
        return
    if when.tzinfo is None:  # written in UTC; a naive stamp (edited by hand) too
        when = when.replace(tzinfo=timezone.utc)
    metrics.model_trained.labels(version=version).set(when.timestamp())


# -- recording: events and the stream worker -----------------------------------------------


def count_events(
    stage: EventStage, *, accepted: int, duplicate: int, rejected: int, suppressed: int
) -> None:
    """What became of a batch of events at ``stage`` (api, worker or broker)."""
    counters = _events.get().by_stage[stage]
    for outcome, count in (
        ("accepted", accepted),
        ("duplicate", duplicate),
        ("rejected", rejected),
        ("suppressed", suppressed),
    ):
        if count:
            counters[outcome].inc(count)


def observe_worker_batch(seconds: float) -> None:
    """One batch was stored and acknowledged in ``seconds``."""
    _worker.get().batch_seconds.observe(seconds)


def stream_sizes(stream: str, *, pending: int, dead_letters: int, dirty: int) -> None:
    """The event stream's backlog, dead letters and customers waiting for a refresh."""
    metrics = _worker.get()
    metrics.stream_pending.labels(stream=stream).set(pending)
    metrics.stream_dead_letters.labels(stream=stream).set(dead_letters)
    metrics.stream_dirty.labels(stream=stream).set(dirty)


def count_broker_messages(*, interaction: int, ignored: int, dead_letter: int) -> None:
    """Messages of Rasa's queue acknowledged, by what became of them."""
    counters = _broker.get().by_result
    for result, count in (
        ("interaction", interaction),
        ("ignored", ignored),
        ("dead_letter", dead_letter),
    ):
        if count:
            counters[result].inc(count)


def observe_broker_batch(seconds: float) -> None:
    """One batch of Rasa's messages was stored, dead-lettered and acknowledged in ``seconds``."""
    _broker.get().batch_seconds.observe(seconds)


def broker_conversations(followed: int) -> None:
    """The broker consumer follows ``followed`` conversations in memory now."""
    _broker.get().conversations.set(followed)


# -- rendering -------------------------------------------------------------------------------


class _ModelAge:
    """Adds ``personalize_model_age_seconds``, derived when scraped from the trained time.

    Derived rather than stored, so that it grows between model swaps without a timer.
    With ``pass_through`` the source's own families are yielded too (a multi-process
    collector, read once per scrape).
    """

    def __init__(self, source: Collector, *, pass_through: bool) -> None:
        self._source = source
        self._pass_through = pass_through

    def describe(self) -> Iterable[Metric]:
        # Registration asks for the names; the age alone is this collector's own.
        return [] if self._pass_through else [self._age(None)]

    def collect(self) -> Iterable[Metric]:
        newest = 0.0
        for family in self._source.collect():
            if self._pass_through:
                yield family
            if family.name == MODEL_TRAINED:
                newest = max([newest, *(sample.value for sample in family.samples)])
        if newest > 0:  # 0: no process serves a model
            yield self._age(time.time() - newest)

    @staticmethod
    def _age(seconds: float | None) -> Metric:
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415  # first use

        return GaugeMetricFamily(MODEL_AGE, MODEL_AGE_HELP, value=seconds)


def multiprocess() -> bool:
    """Whether this process writes its metrics to a multi-process directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition() -> tuple[bytes, str]:
    """Every metric in Prometheus' text format, and its content type.

    In multi-process mode, the values of every process that wrote to the directory (it
    reads files: call it off the event loop); else this process's registry.
    """
    from prometheus_client import (  # noqa: PLC0415  # first use
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
    )
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(_registry()), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    # prometheus_client leaves these two unannotated.
    collector = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]
    registry.register(_ModelAge(collector, pass_through=True))
    return generate_latest(registry), CONTENT_TYPE_LATEST


@contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """Multi-process mode for a server whose worker processes start inside this block.

    Workers inherit the environment, so this must come before they start (and before
    this process records anything). ``PROMETHEUS_MULTIPROC_DIR`` when it is set (its
    ``*.db`` files are deleted first: an earlier run's values would add to this one's),
    else a new temporary directory, removed at the end.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix="personalize-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def attach_metrics_route(app: Sanic[Any, Any]) -> Sanic[Any, Any]:
    """Add ``GET /metrics`` to a rasa-sdk app and register the metrics in each worker.

    Open like ``/health`` (no webhook token), for the scraper: it holds no customer data,
    but keep it off the public internet all the same (it tells how the shop is doing).
    """
    from sanic.response import raw  # noqa: PLC0415  # only servers attach it; Sanic is loaded

    async def serve_metrics(_request: Request) -> HTTPResponse:
        body, content_type = await asyncio.to_thread(exposition)
        return raw(body, content_type=content_type)

    async def register_metrics(_app: Sanic[Any, Any]) -> None:
        # In each worker once it serves: a scrape before the first call lists every
        # family at 0, so rates start from the first event.
        server_metrics()
        event_metrics()

    async def forget_this_process(_app: Sanic[Any, Any]) -> None:
        if multiprocess():
            from prometheus_client.multiprocess import mark_process_dead  # noqa: PLC0415

            # Its gauges leave the maximum; its counters stay in the sums.
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    workers = os.environ.get("ACTION_SERVER_SANIC_WORKERS", "1")
    if not multiprocess() and workers.strip() not in {"", "1"}:
        logger.warning(
            "ACTION_SERVER_SANIC_WORKERS=%s without %s: each scrape of /metrics sees one "
            "worker's values only. Set %s to an empty directory to sum them.",
            workers,
            MULTIPROC_ENV,
            MULTIPROC_ENV,
        )
    app.add_route(serve_metrics, METRICS_PATH, methods=["GET"], name="personalize_metrics")
    app.after_server_start(register_metrics)
    app.after_server_stop(forget_this_process)
    return app
