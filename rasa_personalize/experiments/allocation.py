"""Adaptive allocation (``allocation: thompson``): weights that follow the results.

An adaptive experiment's arms get the probability that each is the best under its Beta
posterior (Thompson sampling, :func:`rasa_personalize.experiments.stats.thompson_weights`),
computed from the exposures and conversions the store holds, with a floor of
:data:`~rasa_personalize.rules.experiments.THOMPSON_FLOOR` per arm so that every arm keeps
being measured. Until every arm has ``min_exposures_per_arm`` exposures the configured
weights serve.

Three parts, so that answering a customer never waits for any of the work:

- :class:`AdaptiveAllocation` recomputes the weights of every running adaptive
  experiment in a background task of the action server, once per ``refresh_minutes``,
  and swaps in a new immutable mapping experiment -> :class:`Allocation`. The request
  path reads that mapping (:meth:`AdaptiveAllocation.current`) and cuts the customer's
  hash position by it: no statistics, no I/O. When the store fails, the last weights stay
  and the failure is logged by its class (never its message, which may quote keys).
- :class:`KeptArms` keeps "the same arm in every session": a customer already exposed
  keeps the arm stored with their exposure, whatever the weights say now. Each process
  reads it once per customer and experiment (a primary-key read) and then remembers it;
  a customer found not yet exposed is remembered with the arm just dealt for
  :data:`DEALT_ARM_TTL_S`, then read again (by then their exposure is stored).
- :func:`allocation_of` is the computation itself, deterministic given the counts: the
  counts are read as of the latest multiple of ``refresh_minutes`` since the epoch
  (:func:`as_of`) and the random draws are seeded by the experiment and its counts. So
  every replica reading the store in the same interval computes the same weights, and
  ``personalize experiments list`` shows them too.

``stats`` (numpy, scipy) is imported only when weights are computed: a server without
an adaptive experiment never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Final

from rasa_personalize.errors import StoreUnavailableError
from rasa_personalize.rules.experiments import THOMPSON_FLOOR, Allocation, Experiment
from rasa_personalize.rules.ruleset import RuleSet
from rasa_personalize.store.errors import DatabaseError

logger = logging.getLogger(__name__)

# After a refresh boundary, wait this long before reading: the writes of the interval
# that just ended are committed by then.
SETTLE_S: Final = 5.0
# A rule file that gains or changes an adaptive experiment is picked up within this.
MAX_SLEEP_S: Final = 60.0
# After a failed refresh, try again this soon (the last weights serve meanwhile).
RETRY_S: Final = 30.0
# One refresh may take this long (a big experiment on a busy database).
REFRESH_TIMEOUT_S: Final = 60.0
# How long an arm dealt to a customer not yet exposed is remembered before the store is
# asked again; their exposure is written in the background within a second or two.
DEALT_ARM_TTL_S: Final = 60.0
# Customers whose arms a process remembers (a few hundred bytes each); when full it
# starts again, and each customer's next answer reads their arm once more.
REMEMBERED_ARMS: Final = 100_000

Allocations = Mapping[str, Allocation]
# (experiment, as of) -> arm -> (exposures, conversions).
CountsReader = Callable[[Experiment, datetime], Awaitable[Mapping[str, tuple[int, int]]]]
# (experiment name, customer key) -> the stored arm; raises StoreUnavailableError.
ArmReader = Callable[[str, str], Awaitable[str | None]]

_NONE: Final[Allocations] = MappingProxyType({})
_NO_PINS: Final[Mapping[str, str]] = MappingProxyType({})


def as_of(now: datetime, refresh_minutes: int) -> datetime:
    """The latest multiple of ``refresh_minutes`` since 1970-01-01 UTC, at or before ``now``."""
    step = refresh_minutes * 60
    seconds = int(now.timestamp()) // step * step
    return datetime.fromtimestamp(seconds, timezone.utc)


def allocation_of(
    experiment: Experiment, counts: Mapping[str, tuple[int, int]], counted_at: datetime
) -> Allocation:
    """The weights for ``experiment`` from its ``counts`` (arm -> exposures, conversions).

    Arms of the counts that the experiment no longer has are ignored; an arm without
    counts has none. The same counts always give the same weights.
    """
    names = experiment.arm_names
    exposures = tuple(counts.get(name, (0, 0))[0] for name in names)
    conversions = tuple(counts.get(name, (0, 0))[1] for name in names)
    if min(exposures) < experiment.min_exposures_per_arm:
        total = sum(arm.weight for arm in experiment.arms)
        shares = tuple(arm.weight / total for arm in experiment.arms)
        return Allocation(names, shares, False, counted_at, exposures, conversions)
    # numpy and scipy: only a process that runs an adaptive experiment loads them.
    from rasa_personalize.experiments.stats import ArmCounts, thompson_weights  # noqa: PLC0415

    arms = [
        ArmCounts(name, 1.0, exposed, converted)
        for name, exposed, converted in zip(names, exposures, conversions, strict=True)
    ]
    weights = thompson_weights(
        arms, seed=_seed(experiment.name, exposures, conversions), min_share=THOMPSON_FLOOR
    )
    shares = tuple(weights[name] for name in names)
    return Allocation(names, shares, True, counted_at, exposures, conversions)


def _seed(name: str, exposures: tuple[int, ...], conversions: tuple[int, ...]) -> int:
    """The draws' seed: the same experiment and counts draw the same samples everywhere."""
    text = f"{name}\x00{exposures}\x00{conversions}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


async def read_allocation(
    experiment: Experiment, read_counts: CountsReader, now: datetime
) -> Allocation:
    """The weights a server computes for ``experiment`` at ``now``: the counts as of
    :func:`as_of`, then the draws in a worker thread (a few milliseconds of numpy)."""
    counted_at = as_of(now, experiment.refresh_minutes)
    counts = await read_counts(experiment, counted_at)
    return await asyncio.to_thread(allocation_of, experiment, counts, counted_at)


def store_counts(
    arm_counts: Callable[[str, str, timedelta, datetime], Awaitable[Mapping[str, tuple[int, int]]]],
) -> CountsReader:
    """A :data:`CountsReader` on a store's ``arm_counts`` (``SqlStore.arm_counts``)."""

    async def read(experiment: Experiment, until: datetime) -> Mapping[str, tuple[int, int]]:
        window = timedelta(days=experiment.window_days)
        return await arm_counts(experiment.name, experiment.goal, window, until)

    return read


def adaptive_experiments(rules: RuleSet) -> tuple[Experiment, ...]:
    """The running adaptive experiments of ``rules``."""
    return tuple(e for e in rules.experiments if e.running and e.adaptive)


class AdaptiveAllocation:
    """The weights in force of every running adaptive experiment, for one process.

    Args:
        read_counts: reads an experiment's counts as of a time (from the store).
        rules: the rules in service now (``RuleBook.current``).
        clock: the current UTC time (tests pass a fixed one).

    Creating it starts nothing: the first :meth:`current` that sees a running adaptive
    experiment, or :meth:`start`, starts the background task; :meth:`close` stops it.
    """

    def __init__(
        self,
        read_counts: CountsReader,
        rules: Callable[[], RuleSet],
        clock: Callable[[], datetime],
    ) -> None:
        self._read_counts = read_counts
        self._rules = rules
        self._clock = clock
        self._allocations: Allocations = _NONE
        # Experiment -> (its definition, the as-of time) the weights in force came from.
        self._computed: dict[str, tuple[Experiment, datetime]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._seen: RuleSet | None = None
        self._failing = False
        self._passes = 0
        self._passed: asyncio.Event | None = None

    def current(self, rules: RuleSet) -> Allocations:
        """The weights in force, by experiment name (the request path: a read).

        A new version of the rules (an identity check) wakes the background task, and
        starts it if the rules have a running adaptive experiment.
        """
        if rules is not self._seen:
            self._seen = rules
            if self.running and self._wake is not None:
                self._wake.set()
            elif adaptive_experiments(rules):
                self.start()
        return self._allocations

    @property
    def in_force(self) -> Allocations:
        """The weights in force, by experiment name (starts nothing)."""
        return self._allocations

    @property
    def running(self) -> bool:
        """Whether the background task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the background task in the running loop (once)."""
        if self.running:
            return
        self._wake = asyncio.Event()
        self._passed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_for_pass(self) -> int:
        """Wait until the background task has ended its first refresh (tests, warm-ups).

        Returns:
            The number of refreshes the task has ended so far.

        Raises:
            RuntimeError: the task is not running.
        """
        if not self.running or self._passed is None:
            raise RuntimeError("the adaptive allocation task is not running")
        await self._passed.wait()
        return self._passes

    async def close(self) -> None:
        """Stop the background task (the weights in force stay readable)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self, *, force: bool = False) -> bool:
        """Recompute the weights that are due (all of them with ``force``) and swap them in.

        Returns:
            True if every due experiment was recomputed; False if the store failed (the
            last weights stay, and the failure is logged once until a refresh succeeds).
        """
        experiments = adaptive_experiments(self._rules())
        now = self._clock()
        fresh: dict[str, Allocation] = {}
        computed: dict[str, tuple[Experiment, datetime]] = {}
        try:
            for experiment in experiments:
                counted_at = as_of(now, experiment.refresh_minutes)
                kept = self._allocations.get(experiment.name)
                if (
                    not force
                    and kept is not None
                    and self._computed.get(experiment.name) == (experiment, counted_at)
                ):
                    fresh[experiment.name] = kept
                    computed[experiment.name] = (experiment, counted_at)
                    continue
                fresh[experiment.name] = await asyncio.wait_for(
                    read_allocation(experiment, self._read_counts, now), REFRESH_TIMEOUT_S
                )
                computed[experiment.name] = (experiment, counted_at)
        except (StoreUnavailableError, DatabaseError, OSError, asyncio.TimeoutError) as error:
            if not self._failing:
                # The class only: a driver's message may quote SQL parameters.
                logger.warning(
                    "Adaptive experiment weights could not be refreshed (%s); the last "
                    "weights stay in force.",
                    type(error).__name__,
                )
            self._failing = True
            return False
        if self._failing:
            logger.info("Adaptive experiment weights are refreshed again.")
            self._failing = False
        self._computed = computed
        self._allocations = MappingProxyType(fresh)
        return True

    def _next_wait(self, succeeded: bool) -> float:
        """Seconds until the next refresh is due: just after the soonest boundary."""
        if not succeeded:
            return RETRY_S
        now = self._clock()
        waits = [
            (
                as_of(now, e.refresh_minutes) + timedelta(minutes=e.refresh_minutes) - now
            ).total_seconds()
            + SETTLE_S
            for e in adaptive_experiments(self._rules())
        ]
        return max(1.0, min([MAX_SLEEP_S, *waits]))

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            try:
                succeeded = await self.refresh()
            except Exception:  # a bug: logged, and the last weights serve on
                logger.exception("Refreshing adaptive experiment weights failed")
                succeeded = False
            self._passes += 1
            if self._passed is not None:
                self._passed.set()
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait(succeeded))


class KeptArms:
    """The arm each customer keeps in adaptive experiments, remembered by this process.

    Args:
        read_arm: the arm stored with a customer's exposure (through the store's breaker:
            it raises :class:`StoreUnavailableError` when the store cannot answer).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, read_arm: ArmReader, clock: Callable[[], float] = time.monotonic) -> None:
        self._read_arm = read_arm
        self._clock = clock
        # Key -> experiment -> arm: handed to the decision as it is (no copy per answer).
        self._pins: dict[str, dict[str, str]] = {}
        # (experiment, key) -> until when a dealt arm is remembered; a stored arm has none.
        self._dealt_until: dict[tuple[str, str], float] = {}

    def pins(self, key: str) -> Mapping[str, str]:
        """The arms remembered for ``key``, by experiment (a dictionary read).

        A dealt arm may be past its time here: :meth:`arm` checks it before it counts.
        """
        return self._pins.get(key, _NO_PINS)

    async def arm(self, experiment: str, key: str, dealt: str) -> str:
        """The arm the customer keeps: the stored one if they were exposed, else ``dealt``
        (the arm the weights in force give them), which they keep for a while too.

        A store that cannot answer leaves ``dealt`` without remembering it.
        """
        pins = self._pins.get(key)
        if pins is not None and experiment in pins:
            until = self._dealt_until.get((experiment, key))
            if until is None or until > self._clock():
                return pins[experiment]
        try:
            stored = await self._read_arm(experiment, key)
        except StoreUnavailableError:
            return dealt
        if len(self._pins) >= REMEMBERED_ARMS:
            self._pins.clear()
            self._dealt_until.clear()
        if stored is not None:
            self._dealt_until.pop((experiment, key), None)  # the first exposure never changes
        else:
            self._dealt_until[(experiment, key)] = self._clock() + DEALT_ARM_TTL_S
        self._pins.setdefault(key, {})[experiment] = stored or dealt
        return stored or dealt
