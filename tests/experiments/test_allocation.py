"""Adaptive allocation: weights from the stored outcomes, refreshed in the background,
kept when the store fails, and the arm an exposed customer keeps."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from rasa_personalize.errors import StoreUnavailableError
from rasa_personalize.experiments.allocation import (
    DEALT_ARM_TTL_S,
    AdaptiveAllocation,
    KeptArms,
    allocation_of,
    as_of,
    read_allocation,
    store_counts,
)
from rasa_personalize.identity import customer_key
from rasa_personalize.rules import parse_rules
from rasa_personalize.rules.experiments import Experiment
from rasa_personalize.rules.ruleset import RuleSet
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.experiments import experiment_outcomes
from rasa_personalize.store.models import CustomerAlias, ExperimentExposure
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW, add_customer, add_interactions, add_product

RULES = """\
rules:
  - name: everyone
    when: {segment: [new_visitor, frequent_buyer, price_sensitive, loyal, at_risk, browser]}
    then: {offer_type: discount, discount_pct: 10}
experiments:
  - name: bigger_discount
    status: running
    arms:
      - {name: control, weight: 50}
      - {name: twenty, weight: 50, then: {discount_pct: 20}}
    goal: purchase
    window_days: 7
    allocation: thompson
    min_exposures_per_arm: 20
"""


def rules_of(text: str = RULES) -> RuleSet:
    return parse_rules(text, "personalization.yml")


def experiment_of(text: str = RULES) -> Experiment:
    return rules_of(text).experiments[0]


async def seed_outcomes(
    store: SqlStore, arms: Mapping[str, tuple[int, int]], *, exposed_at: datetime
) -> None:
    """Per arm, ``exposures`` customers exposed at ``exposed_at``, of whom ``conversions``
    buy one day later."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes", price=30.0)
        for arm, (exposures, conversions) in arms.items():
            for index in range(exposures):
                customer = await add_customer(session, f"{arm}-{index}")
                session.add(
                    ExperimentExposure(
                        experiment="bigger_discount",
                        customer_key=customer.customer_key,
                        arm=arm,
                        exposed_at=exposed_at,
                    )
                )
                if index < conversions:
                    days_ago = (NOW - exposed_at).total_seconds() / 86_400 - 1
                    await add_interactions(
                        session, customer, shoes, "purchase", 1, days_ago=days_ago
                    )


def test_as_of_is_the_latest_multiple_of_the_interval() -> None:
    """Every replica in the same interval reads the counts as of the same moment."""
    assert as_of(datetime(2026, 6, 1, 12, 7, 59, tzinfo=timezone.utc), 5) == datetime(
        2026, 6, 1, 12, 5, tzinfo=timezone.utc
    )
    assert as_of(datetime(2026, 6, 1, 12, 5, tzinfo=timezone.utc), 5) == datetime(
        2026, 6, 1, 12, 5, tzinfo=timezone.utc
    )
    assert as_of(datetime(2026, 6, 1, 23, 59, tzinfo=timezone.utc), 1440) == datetime(
        2026, 6, 1, tzinfo=timezone.utc
    )


def test_configured_weights_serve_until_every_arm_has_its_minimum() -> None:
    experiment = experiment_of(RULES.replace("weight: 50}", "weight: 75}", 1))
    few = allocation_of(experiment, {"control": (19, 0), "twenty": (300, 90)}, NOW)
    assert (few.adapted, few.shares) == (False, (0.6, 0.4))  # 75 / 125 and 50 / 125
    assert (few.exposures, few.conversions) == ((19, 300), (0, 90))


def test_thompson_weights_favour_the_better_arm_keep_the_floor_and_repeat() -> None:
    """30% against 3% after 100 each: the better arm gets all but the 5% floor; the same
    counts give the same weights (replicas agree); arms gone from the file are ignored."""
    experiment = experiment_of()
    counts = {"control": (100, 3), "twenty": (100, 30), "renamed_arm": (50, 50)}
    adapted = allocation_of(experiment, counts, NOW)
    assert adapted.adapted
    assert adapted.shares == pytest.approx((0.05, 0.95), abs=1e-3)
    assert allocation_of(experiment, counts, NOW) == adapted
    close = allocation_of(experiment, {"control": (1000, 50), "twenty": (1000, 55)}, NOW)
    # P(twenty best) is about 0.69 (normal approximation): 0.05 + 0.9 * 0.69.
    assert close.share_of("twenty") == pytest.approx(0.67, abs=0.02)
    assert sum(close.shares) == pytest.approx(1.0)


async def test_arm_counts_are_the_reports_counts_as_of_a_time(store: SqlStore) -> None:
    """The servers' grouped counts equal the report's; exposures and goal events after
    ``until`` do not count yet; an alias's exposure reaches the merged customer."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes", price=50.0)
        buyer = await add_customer(session, "buyer")
        late = await add_customer(session, "late")
        merged = await add_customer(session, "merged")
        recent = await add_customer(session, "recent")
        await add_customer(session, "idle")
        old_key = customer_key(TEST_SECRET, "merged-old-id")
        session.add(CustomerAlias(alias_key=old_key, customer_id=merged.id, match="exact"))
        for key, arm, days_ago in (
            (buyer.customer_key, "twenty", 10),
            (late.customer_key, "twenty", 10),
            (old_key, "control", 10),
            (customer_key(TEST_SECRET, "idle"), "control", 10),
            (recent.customer_key, "control", 0.5),  # after the 'until' below
        ):
            session.add(
                ExperimentExposure(
                    experiment="bigger_discount",
                    customer_key=key,
                    arm=arm,
                    exposed_at=NOW - timedelta(days=days_ago),
                )
            )
        await add_interactions(session, buyer, shoes, "purchase", 2, days_ago=8)
        await add_interactions(session, late, shoes, "purchase", 1, days_ago=1)  # day 9: late
        await add_interactions(session, late, shoes, "purchase", 1, days_ago=11)  # before
        await add_interactions(session, merged, shoes, "purchase", 1, days_ago=5)
        await add_interactions(session, recent, shoes, "purchase", 1, days_ago=0.25)
        await add_interactions(session, buyer, shoes, "view", 3, days_ago=9)  # not the goal
    week = timedelta(days=7)
    now = await store.arm_counts("bigger_discount", "purchase", week, NOW)
    async with store.sessions() as session:
        report = await experiment_outcomes(session, "bigger_discount", "purchase", week)
    assert now == {arm: (o.exposures, o.conversions) for arm, o in report.arms.items()}
    assert now == {"twenty": (2, 1), "control": (3, 2)}
    # A day earlier: the recent exposure is not there yet.
    assert await store.arm_counts("bigger_discount", "purchase", week, NOW - timedelta(days=1)) == {
        "twenty": (2, 1),
        "control": (2, 1),
    }
    # Six days before NOW the merged customer's purchase (day 5 after exposure) has not
    # happened yet.
    earlier = NOW - timedelta(days=6)
    assert await store.arm_counts("bigger_discount", "purchase", week, earlier) == {
        "twenty": (2, 1),
        "control": (2, 0),
    }
    assert await store.arm_counts("bigger_discount", "accept", week, NOW) == {
        "twenty": (2, 0),
        "control": (3, 0),
    }
    assert await store.arm_counts("other", "purchase", week, NOW) == {}
    assert await store.exposed_arm("bigger_discount", old_key) == "control"
    assert await store.exposed_arm("bigger_discount", customer_key(TEST_SECRET, "nobody")) is None
    assert await store.exposed_arm("other", old_key) is None


async def test_the_refresher_favours_the_better_arm_from_stored_outcomes(store: SqlStore) -> None:
    """40 customers per arm, 12 of twenty's and 1 of control's bought: the refresh puts
    about 95% of new customers on twenty; within the same interval nothing is read again;
    the next interval reads again."""
    await seed_outcomes(
        store, {"control": (40, 1), "twenty": (40, 12)}, exposed_at=NOW - timedelta(days=3)
    )
    rules = rules_of()
    reads: list[datetime] = []
    counts = store_counts(store.arm_counts)

    async def counted(experiment: Experiment, until: datetime) -> Mapping[str, tuple[int, int]]:
        reads.append(until)
        return await counts(experiment, until)

    clock = [NOW + timedelta(minutes=2)]
    allocation = AdaptiveAllocation(counted, lambda: rules, lambda: clock[0])
    assert allocation.in_force == {}  # nothing computed yet: the configured weights
    assert await allocation.refresh()
    weights = allocation.in_force["bigger_discount"]
    assert weights.adapted
    assert weights.exposures == (40, 40)
    assert weights.conversions == (1, 12)
    assert weights.as_of == NOW  # 12:00 is a multiple of 5 minutes
    assert weights.share_of("twenty") == pytest.approx(0.95, abs=0.01)
    assert await allocation.refresh()
    assert reads == [NOW]
    clock[0] = NOW + timedelta(minutes=5)
    assert await allocation.refresh()
    assert reads == [NOW, NOW + timedelta(minutes=5)]
    await allocation.close()


async def test_a_failing_store_keeps_the_last_weights_and_logs_no_personal_data(
    sqlite_store: SqlStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store goes down (a database that cannot be opened, then an error quoting a
    customer key): the weights in force stay, one warning names the error's class only,
    and the recovery is logged once."""
    await seed_outcomes(
        sqlite_store, {"control": (30, 0), "twenty": (30, 9)}, exposed_at=NOW - timedelta(days=2)
    )
    rules = rules_of()
    key = customer_key(TEST_SECRET, "twenty-0")
    down = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'store.db'}", StoreTimeouts(1.0, 1.0))
    source = [store_counts(sqlite_store.arm_counts)]

    async def read(experiment: Experiment, until: datetime) -> Mapping[str, tuple[int, int]]:
        return await source[0](experiment, until)

    async def quoting(experiment: Experiment, until: datetime) -> Mapping[str, tuple[int, int]]:
        raise OperationalError(
            f"SELECT ... WHERE customer_key = '{key}'", {"key": key}, OSError(key)
        )

    allocation = AdaptiveAllocation(read, lambda: rules, lambda: NOW)
    assert await allocation.refresh()
    before = allocation.in_force
    caplog.set_level(logging.INFO, logger="rasa_personalize.experiments.allocation")
    source[0] = store_counts(down.arm_counts)
    assert not await allocation.refresh(force=True)
    source[0] = quoting
    assert not await allocation.refresh(force=True)
    assert allocation.in_force is before
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "Adaptive experiment weights could not be refreshed (OperationalError); the last "
        "weights stay in force."
    ]
    assert key not in caplog.text
    source[0] = store_counts(sqlite_store.arm_counts)
    assert await allocation.refresh(force=True)
    assert allocation.in_force == before  # the same counts, the same weights
    assert "refreshed again" in caplog.text
    await down.dispose()


async def test_the_background_task_starts_with_the_first_adaptive_rules_and_stops(
    sqlite_store: SqlStore,
) -> None:
    """No task for rules without an adaptive experiment; the first ``current`` that sees
    one starts it, and it computes the weights without being asked; ``close`` stops it."""
    await seed_outcomes(
        sqlite_store, {"control": (25, 1), "twenty": (25, 8)}, exposed_at=NOW - timedelta(days=2)
    )
    fixed = rules_of(RULES.replace("    allocation: thompson\n    min_exposures_per_arm: 20\n", ""))
    adaptive = rules_of()
    serving = [fixed]
    allocation = AdaptiveAllocation(
        store_counts(sqlite_store.arm_counts), lambda: serving[0], lambda: NOW
    )
    allocation.current(fixed)
    assert not allocation.running
    serving[0] = adaptive
    allocation.current(adaptive)
    assert allocation.running
    assert await allocation.wait_for_pass() == 1
    assert allocation.current(adaptive)["bigger_discount"].adapted
    await allocation.close()
    assert not allocation.running


async def test_read_allocation_is_what_every_replica_computes(sqlite_store: SqlStore) -> None:
    """Two readers a few minutes apart in one interval get equal weights."""
    await seed_outcomes(
        sqlite_store, {"control": (25, 2), "twenty": (25, 5)}, exposed_at=NOW - timedelta(days=2)
    )
    experiment = experiment_of()
    read = store_counts(sqlite_store.arm_counts)
    first = await read_allocation(experiment, read, NOW + timedelta(seconds=10))
    second = await read_allocation(experiment, read, NOW + timedelta(minutes=4, seconds=50))
    assert first == second
    assert 0.5 < first.share_of("twenty") < 0.95


async def test_kept_arms_read_once_remember_and_expire_a_dealt_arm() -> None:
    """A stored arm wins and is read once; a customer not exposed keeps the dealt arm for
    the TTL, then the store is asked again; an outage deals without remembering."""
    stored: dict[tuple[str, str], str] = {("e", "exposed"): "control"}
    reads: list[str] = []
    down = [False]

    async def read_arm(experiment: str, key: str) -> str | None:
        reads.append(key)
        if down[0]:
            raise StoreUnavailableError("store unavailable")
        return stored.get((experiment, key))

    clock = [0.0]
    kept = KeptArms(read_arm, clock=lambda: clock[0])
    assert kept.pins("exposed") == {}
    assert await kept.arm("e", "exposed", "twenty") == "control"
    assert await kept.arm("e", "exposed", "twenty") == "control"
    assert reads == ["exposed"]
    assert kept.pins("exposed") == {"e": "control"}  # what the next decision starts from
    assert await kept.arm("e", "new", "twenty") == "twenty"
    assert await kept.arm("e", "new", "control") == "twenty"  # the weights moved: kept
    stored[("e", "new")] = "twenty"  # their exposure was stored meanwhile
    clock[0] = DEALT_ARM_TTL_S + 1
    assert await kept.arm("e", "new", "control") == "twenty"
    assert reads == ["exposed", "new", "new"]
    down[0] = True
    assert await kept.arm("e", "other", "control") == "control"
    assert await kept.arm("e", "other", "twenty") == "twenty"  # not remembered
    assert await kept.arm("e", "exposed", "twenty") == "control"  # still remembered
