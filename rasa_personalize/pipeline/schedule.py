"""The pipeline on a schedule: durations, and the loop that runs it every so often.

``personalize pipeline schedule --every 24h`` is a long-running process: the first run
starts at once, the next ones every ``--every`` after the previous one *started* (a fixed
rate, so the runs do not drift later by their own length). A run that takes longer than
the interval is followed by the next one at once; the starts it missed are not made up.
A failed run is logged and the schedule goes on. A stop request (SIGTERM, SIGINT) is
honoured between runs: a run in progress finishes first, so no stage is cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, TypeVar

from rasa_personalize.errors import InvalidInputError

logger = logging.getLogger(__name__)

T = TypeVar("T")

UNITS: Final = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
# Shorter than a run of the pipeline on any real store: almost certainly a typo.
MIN_INTERVAL: Final = timedelta(minutes=1)
_PART: Final = re.compile(r"(\d+)([smhd])")


def parse_duration(text: str, *, minimum: timedelta = MIN_INTERVAL) -> timedelta:
    """A duration such as ``30m``, ``6h``, ``24h``, ``1d`` or ``1h30m``.

    Whole numbers with a unit each: ``s`` seconds, ``m`` minutes, ``h`` hours, ``d`` days.

    Raises:
        InvalidInputError: anything else, or a duration shorter than ``minimum``; the
            message says what was wrong and shows the form.
    """
    compact = text.strip().lower().replace(" ", "")
    form = "write a number and a unit, e.g. 30m, 6h, 24h, 1d or 1h30m (s, m, h, d)"
    if not compact:
        raise InvalidInputError(f"empty duration: {form}")
    if compact.isdigit():
        raise InvalidInputError(f"duration {text!r} has no unit: {form}")
    position, seconds = 0, 0
    for match in _PART.finditer(compact):
        if match.start() != position:
            break
        seconds += int(match.group(1)) * UNITS[match.group(2)]
        position = match.end()
    if position != len(compact):
        raise InvalidInputError(f"cannot read duration {text!r}: {form}")
    duration = timedelta(seconds=seconds)
    if duration < minimum:
        raise InvalidInputError(
            f"duration {text!r} is shorter than {_describe(minimum)}: the pipeline would "
            "hardly finish one run before the next"
        )
    return duration


def _describe(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class StopSignal:
    """A stop request that a signal handler sets and the schedule waits on."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        """Ask the schedule to stop after the current run (safe from a signal handler)."""
        self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was requested."""
        return self._event.is_set()

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when a stop was requested meanwhile."""
        if seconds > 0:
            # asyncio's TimeoutError, not the builtin before Python 3.11.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=seconds)
        return self._event.is_set()


async def run_schedule(
    run_once: Callable[[], Awaitable[T]],
    every: timedelta,
    *,
    stop: StopSignal,
    runs: int | None = None,
    on_result: Callable[[T], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_wait: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], Awaitable[bool]] | None = None,
) -> int:
    """Call ``run_once`` at once and then every ``every`` until ``stop`` is set.

    Args:
        run_once: one run of the pipeline.
        every: the interval between the starts of two runs.
        stop: set to stop; honoured between runs only.
        runs: stop after this many runs (None: until stopped).
        on_result: told each run's result.
        on_error: told each run's exception (it is also logged); the schedule goes on.
        on_wait: told the seconds until the next run, before waiting for it.
        clock: monotonic seconds (tests give a fake one).
        wait: waits up to the given seconds, True when stopped meanwhile (default:
            ``stop.wait``; tests give one that moves their fake clock instead).

    Returns:
        The number of runs started.
    """
    interval = every.total_seconds()
    if interval <= 0:
        raise InvalidInputError(f"the interval must be positive, got {every}")
    pause = wait or stop.wait
    started = 0
    next_start = clock()
    while not stop.is_set() and (runs is None or started < runs):
        delay = next_start - clock()
        if delay > 0:
            if on_wait is not None:
                on_wait(delay)
            if await pause(delay):
                break
        began = clock()
        started += 1
        try:
            result = await run_once()
        # The schedule outlives a failed run: logged in full, reported, and on to the next.
        except Exception as error:
            logger.exception("scheduled pipeline run %d failed", started)
            if on_error is not None:
                on_error(error)
        else:
            if on_result is not None:
                on_result(result)
        # One interval after this run began: after a run longer than that, the next
        # starts at once, and the starts it overlapped are not made up.
        next_start = began + interval
    return started
