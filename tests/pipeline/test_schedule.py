"""The schedule: durations, and the loop on a fake clock (nothing here sleeps)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rasa_personalize.errors import InvalidInputError
from rasa_personalize.pipeline.schedule import StopSignal, parse_duration, run_schedule

HOUR = 3_600.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1_800),
        ("6h", 21_600),
        ("24h", 86_400),
        ("1d", 86_400),
        ("1h30m", 5_400),  # parts add up
        (" 2D ", 172_800),  # case and spaces around do not matter
        ("90s", 90),  # seconds, above the minimum
    ],
)
def test_durations(text: str, seconds: int) -> None:
    """Whole numbers, each with a unit: s, m, h, d."""
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("24", "duration '24' has no unit"),  # the most likely slip: hours meant
        ("1w", "cannot read duration '1w'"),  # weeks are not a unit
        ("1.5h", "cannot read duration '1.5h'"),  # whole numbers only
        ("h", "cannot read duration 'h'"),
        ("-1h", "cannot read duration '-1h'"),
        ("10s", "shorter than 1m"),
        ("0m", "shorter than 1m"),
    ],
)
def test_bad_durations_say_what_is_wrong(text: str, message: str) -> None:
    """Each error names the input and shows the form (30m, 6h, 24h, 1d)."""
    with pytest.raises(InvalidInputError, match=message) as raised:
        parse_duration(text)
    if "shorter" not in message:
        assert "e.g. 30m, 6h, 24h, 1d" in str(raised.value)


class FakeTime:
    """A clock that only moves when the schedule waits or a run takes time."""

    def __init__(self, stop: StopSignal) -> None:
        self.now = 0.0
        self.stop = stop
        self.waits: list[float] = []
        self.starts: list[float] = []
        # Stop once the clock reaches this (a signal arriving while waiting).
        self.stop_at: float | None = None

    def clock(self) -> float:
        return self.now

    async def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        if self.stop_at is not None and self.now + seconds >= self.stop_at:
            self.now = self.stop_at
            self.stop.set()
            return True
        self.now += seconds
        return False


async def test_runs_at_once_then_every_interval_until_the_count() -> None:
    """First run at 0, then at 1 h and 2 h from the previous start; a run's own length
    (10 min) does not push the next one later."""
    stop = StopSignal()
    time = FakeTime(stop)
    results: list[int] = []

    async def run_once() -> int:
        time.starts.append(time.now)
        time.now += 600.0
        return len(time.starts)

    started = await run_schedule(
        run_once,
        timedelta(hours=1),
        stop=stop,
        runs=3,
        on_result=results.append,
        clock=time.clock,
        wait=time.wait,
    )
    assert started == 3
    assert time.starts == [0.0, HOUR, 2 * HOUR]
    assert time.waits == [HOUR - 600.0, HOUR - 600.0]
    assert results == [1, 2, 3]


async def test_a_stop_while_waiting_ends_the_schedule_between_runs() -> None:
    """A signal during the wait: no further run starts, and the loop returns."""
    stop = StopSignal()
    time = FakeTime(stop)
    time.stop_at = 1.5 * HOUR

    async def run_once() -> None:
        time.starts.append(time.now)

    started = await run_schedule(
        run_once, timedelta(hours=1), stop=stop, clock=time.clock, wait=time.wait
    )
    assert started == 2
    assert time.starts == [0.0, HOUR]
    assert time.now == 1.5 * HOUR


async def test_a_stop_during_a_run_lets_it_finish() -> None:
    """The run in progress completes (its result is reported); none starts after it."""
    stop = StopSignal()
    time = FakeTime(stop)
    results: list[str] = []

    async def run_once() -> str:
        stop.set()  # SIGTERM arrives mid-run
        time.now += 60.0
        return "finished"

    started = await run_schedule(
        run_once,
        timedelta(hours=1),
        stop=stop,
        on_result=results.append,
        clock=time.clock,
        wait=time.wait,
    )
    assert (started, results, time.waits) == (1, ["finished"], [])


async def test_a_failed_run_is_reported_and_the_schedule_goes_on() -> None:
    """The second run raises: it is reported (and logged) and the third still runs."""
    stop = StopSignal()
    time = FakeTime(stop)
    failures: list[str] = []

    async def run_once() -> None:
        time.starts.append(time.now)
        if len(time.starts) == 2:
            raise RuntimeError("the store went away")

    started = await run_schedule(
        run_once,
        timedelta(hours=1),
        stop=stop,
        runs=3,
        on_error=lambda error: failures.append(str(error)),
        clock=time.clock,
        wait=time.wait,
    )
    assert started == 3
    assert failures == ["the store went away"]
    assert time.starts == [0.0, HOUR, 2 * HOUR]


async def test_a_run_longer_than_the_interval_skips_the_starts_it_missed() -> None:
    """A 2.5 h run on a 1 h schedule: the next starts at once (2.5 h), not once for each
    start it overlapped, and the one after it an hour after that (3.5 h)."""
    stop = StopSignal()
    time = FakeTime(stop)
    lengths = iter([2.5 * HOUR, 0.0, 0.0])

    async def run_once() -> None:
        time.starts.append(time.now)
        time.now += next(lengths)

    await run_schedule(
        run_once, timedelta(hours=1), stop=stop, runs=3, clock=time.clock, wait=time.wait
    )
    assert time.starts == [0.0, 2.5 * HOUR, 3.5 * HOUR]


async def test_the_real_stop_signal_wakes_the_wait() -> None:
    """StopSignal.wait returns True at once when the stop was requested."""
    stop = StopSignal()
    assert not await stop.wait(0)
    stop.set()
    assert await stop.wait(3_600)
