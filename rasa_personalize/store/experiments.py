"""Experiment exposures and the goal events that follow them, for the experiment report.

An exposure is stored once per (experiment, customer key) by the chat writer
(:mod:`rasa_personalize.store.catalogue`). A conversion is an event of the goal's kind by
the same customer (through an alias too) in the window after the exposure; each exposed
customer converts at most once, and their revenue is the value of the purchases in the
window.

Two reads serve adaptive allocation (``allocation: thompson``) in the action server:
:func:`read_arm_counts`, the same counts as the report's but computed by the database
(one grouped statement) and as of a given time, and :func:`read_exposed_arm`, one
customer's stored arm (a primary-key read).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Connection

from rasa_personalize.store.dialect import count_where
from rasa_personalize.store.functions import EpochSeconds
from rasa_personalize.store.models import Customer, CustomerAlias, ExperimentExposure, Interaction
from rasa_personalize.store.types import Session

# The interaction each goal counts; "accept" is a recommendation the customer said yes to.
GOAL_KINDS: Final[Mapping[str, str]] = {
    "accept": "feedback",
    "chat_click": "chat_click",
    "cart": "cart",
    "purchase": "purchase",
}
# Rows fetched per round trip: an experiment can expose many customers.
FETCH_SIZE: Final = 5_000


@dataclass(frozen=True)
class ArmOutcome:
    """One arm's exposed customers, those who converted in the window, and their revenue."""

    arm: str
    exposures: int
    conversions: int
    revenue: float


@dataclass(frozen=True)
class DailyOutcome:
    """Cumulative counts per arm up to and including ``day`` (by exposure date)."""

    day: date
    arms: Mapping[str, tuple[int, int]]  # arm -> (exposures, conversions)


@dataclass(frozen=True)
class ExperimentOutcomes:
    """What an experiment's report is computed from."""

    arms: Mapping[str, ArmOutcome]
    daily: tuple[DailyOutcome, ...]


@dataclass
class _Exposed:
    arm: str
    exposed_at: datetime
    converted: bool = False
    revenue: float = 0.0


async def count_exposures(session: Session) -> dict[tuple[str, str], int]:
    """(experiment, arm) -> customers exposed, for every stored exposure."""
    rows = await session.execute(
        select(ExperimentExposure.experiment, ExperimentExposure.arm, func.count()).group_by(
            ExperimentExposure.experiment, ExperimentExposure.arm
        )
    )
    return {(str(name), str(arm)): int(count) for name, arm, count in rows.all()}


async def experiment_outcomes(
    session: Session, experiment: str, goal: str, window: timedelta
) -> ExperimentOutcomes:
    """Per arm: exposures, conversions within ``window`` of the exposure, and revenue.

    Raises:
        ValueError: ``goal`` is not one of :data:`GOAL_KINDS`.
    """
    if goal not in GOAL_KINDS:
        raise ValueError(f"unknown goal {goal!r}; it is one of {', '.join(GOAL_KINDS)}")
    exposures = ExperimentExposure.__table__
    customers, aliases = Customer.__table__, CustomerAlias.__table__
    interactions = Interaction.__table__
    customer_id = func.coalesce(customers.c.id, aliases.c.customer_id)
    goal_event = and_(
        interactions.c.customer_id == customer_id,
        interactions.c.kind == GOAL_KINDS[goal],
        interactions.c.occurred_at >= exposures.c.exposed_at,
    )
    if goal == "accept":
        goal_event = and_(goal_event, interactions.c.value > 0)
    statement = (
        select(
            exposures.c.customer_key,
            exposures.c.arm,
            exposures.c.exposed_at,
            interactions.c.occurred_at,
            interactions.c.price,
            interactions.c.quantity,
        )
        .select_from(
            exposures.outerjoin(customers, customers.c.customer_key == exposures.c.customer_key)
            .outerjoin(aliases, aliases.c.alias_key == exposures.c.customer_key)
            .outerjoin(interactions, goal_event)
        )
        .where(exposures.c.experiment == experiment)
        .execution_options(yield_per=FETCH_SIZE)
    )
    exposed: dict[str, _Exposed] = {}
    result = await session.stream(statement)
    async for key, arm, exposed_at, occurred_at, price, quantity in result:
        entry = exposed.setdefault(key, _Exposed(arm, exposed_at))
        if occurred_at is None or occurred_at >= exposed_at + window:
            continue
        entry.converted = True
        if goal == "purchase":
            entry.revenue += float(price or 0.0) * int(quantity or 1)
    return _outcomes(exposed.values())


def read_arm_counts(
    connection: Connection, experiment: str, goal: str, window: timedelta, until: datetime
) -> dict[str, tuple[int, int]]:
    """Arm -> (exposures, conversions) as the store stood at ``until``.

    The report's counts (:func:`experiment_outcomes`), restricted to exposures and goal
    events before ``until``: any two readers with the same ``until`` and the same rows get
    the same counts, whenever they read. Grouped by the database, so the answer is one
    row per arm however many customers were exposed.

    Raises:
        ValueError: ``goal`` is not one of :data:`GOAL_KINDS`.
    """
    if goal not in GOAL_KINDS:
        raise ValueError(f"unknown goal {goal!r}; it is one of {', '.join(GOAL_KINDS)}")
    exposures = ExperimentExposure.__table__
    customers, aliases = Customer.__table__, CustomerAlias.__table__
    interactions = Interaction.__table__
    goal_event = and_(
        interactions.c.customer_id == func.coalesce(customers.c.id, aliases.c.customer_id),
        interactions.c.kind == GOAL_KINDS[goal],
        interactions.c.occurred_at >= exposures.c.exposed_at,
        interactions.c.occurred_at < until,
        # Seconds on every backend: a timestamp plus an interval is spelt three ways.
        EpochSeconds(interactions.c.occurred_at)
        < EpochSeconds(exposures.c.exposed_at) + window.total_seconds(),
    )
    if goal == "accept":
        goal_event = and_(goal_event, interactions.c.value > 0)
    statement = (
        select(exposures.c.arm, func.count(), count_where(exists().where(goal_event)))
        .select_from(
            exposures.outerjoin(
                customers, customers.c.customer_key == exposures.c.customer_key
            ).outerjoin(aliases, aliases.c.alias_key == exposures.c.customer_key)
        )
        .where(exposures.c.experiment == experiment, exposures.c.exposed_at < until)
        .group_by(exposures.c.arm)
    )
    return {
        str(arm): (int(exposed), int(converted))
        for arm, exposed, converted in connection.execute(statement).all()
    }


def read_exposed_arm(connection: Connection, experiment: str, customer_key: str) -> str | None:
    """The arm ``customer_key`` was first exposed to in ``experiment``, if they were."""
    arm = connection.execute(
        select(ExperimentExposure.arm).where(
            ExperimentExposure.experiment == experiment,
            ExperimentExposure.customer_key == customer_key,
        )
    ).scalar_one_or_none()
    return None if arm is None else str(arm)


def _outcomes(exposed: Any) -> ExperimentOutcomes:
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0])
    per_day: dict[date, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for entry in exposed:
        total = totals[entry.arm]
        total[0] += 1
        total[1] += int(entry.converted)
        total[2] += entry.revenue
        day = per_day[entry.exposed_at.date()][entry.arm]
        day[0] += 1
        day[1] += int(entry.converted)
    arms = {
        arm: ArmOutcome(arm, int(total[0]), int(total[1]), float(total[2]))
        for arm, total in sorted(totals.items())
    }
    return ExperimentOutcomes(arms, _cumulative(per_day))


def _cumulative(per_day: Mapping[date, Mapping[str, Sequence[int]]]) -> tuple[DailyOutcome, ...]:
    running: dict[str, tuple[int, int]] = {}
    days: list[DailyOutcome] = []
    for day in sorted(per_day):
        for arm, (exposures, conversions) in per_day[day].items():
            before = running.get(arm, (0, 0))
            running[arm] = (before[0] + exposures, before[1] + conversions)
        days.append(DailyOutcome(day, dict(running)))
    return tuple(days)
