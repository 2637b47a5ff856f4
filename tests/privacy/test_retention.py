"""Retention: old interactions and audit rows go, profiles and tags follow, a dry run
deletes nothing, tombstones stay, and the worker's schedule runs it until stopped."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from redis import asyncio as redis_asyncio
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from rasa_personalize.events.worker import StreamWorker, WorkerOptions
from rasa_personalize.privacy import retention
from rasa_personalize.privacy.retention import (
    RETENTION_ACTION,
    RetentionReport,
    RetentionSchedule,
    apply_retention,
)
from rasa_personalize.segments.tag_rules import parse_tag_rules
from rasa_personalize.store.audit import append_audit_entry, list_audit_entries
from rasa_personalize.store.models import (
    CustomerProfile,
    CustomerTag,
    ErasureTombstone,
    ExperimentExposure,
    Interaction,
    OfferExposure,
)
from rasa_personalize.store.records import ProfileMetrics
from rasa_personalize.store.repository import write_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import NOW, add_customer, add_interactions, add_product

RULES = parse_tag_rules(
    "tags:\n  - tag: shopper\n    when: {count: {kind: purchase, at_least: 2}}\n", "tags.yml"
)


async def seed(store: SqlStore) -> dict[str, int]:
    """ada: two recent views and two purchases 100 days ago (a "shopper" by the rule);
    bob: only old views. Old and recent audit rows, and one tombstone."""
    async with store.sessions.begin() as session:
        product = await add_product(session, "SKU-1", "shoes", price=10.0)
        ada = await add_customer(session, "ada")
        bob = await add_customer(session, "bob")
        await add_interactions(session, ada, product, "view", 2, days_ago=1)
        await add_interactions(session, ada, product, "purchase", 2, days_ago=100)
        await add_interactions(session, bob, product, "view", 3, days_ago=200)
        session.add(CustomerTag(customer_id=ada.id, tag="shopper", source="rule"))
        session.add(CustomerTag(customer_id=ada.id, tag="vip", source="manual"))
        session.add(ErasureTombstone(customer_key="e" * 64, erased_at=NOW - timedelta(days=900)))
        # Shown an arm and an offer long ago, and an arm recently.
        for experiment, days in (("old_test", 120), ("new_test", 3)):
            at = NOW - timedelta(days=days)
            session.add(
                ExperimentExposure(
                    experiment=experiment, customer_key=ada.customer_key, arm="a", exposed_at=at
                )
            )
        old_offer = NOW - timedelta(days=120)
        session.add(
            OfferExposure(
                customer_key=ada.customer_key,
                offer="bundle",
                shown_on=old_offer.date(),
                segment="loyal",
                shown_at=old_offer,
            )
        )
        for days in (2, 800):
            await append_audit_entry(
                session,
                occurred_at=NOW - timedelta(days=days),
                actor="cli",
                action="profile.read",
                outcome="ok",
            )
        ids = {"ada": ada.id, "bob": bob.id}
    async with store.sessions.begin() as session:
        await write_profile_metrics(session, NOW, None)
    return ids


async def metrics_of(store: SqlStore, customer_id: int) -> ProfileMetrics:
    async with store.sessions() as session:
        document = await session.scalar(
            select(CustomerProfile.metrics).where(CustomerProfile.customer_id == customer_id)
        )
    return ProfileMetrics.from_document(document or {})


async def test_old_data_goes_and_profiles_follow(store: SqlStore) -> None:
    """Interactions older than 90 days and audit rows older than 730 go in batches; ada's
    metrics count what is left, bob's are empty, the rule tag no longer holds (the manual
    one stays), the tombstone stays, and the run is audited."""
    ids = await seed(store)
    stages: list[tuple[str, int, int]] = []
    report = await apply_retention(
        store.sessions,
        retention_days=90,
        audit_retention_days=730,
        now=NOW,
        tag_rules=RULES,
        batch_size=2,
        progress=lambda stage, done, total: stages.append((stage, done, total)),
    )
    assert (report.interactions, report.customers, report.profiles) == (5, 2, 2)
    assert (report.tags_removed, report.audit_entries, report.exposures) == (1, 1, 2)
    assert report.interactions_cutoff == NOW - timedelta(days=90)
    assert ("interactions", 5, 5) in stages
    assert ("profiles", 2, 2) in stages
    ada, bob = await metrics_of(store, ids["ada"]), await metrics_of(store, ids["bob"])
    assert (ada.interaction_count, ada.purchase_count, ada.view_count) == (2, 0, 2)
    assert bob == ProfileMetrics()
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Interaction)) == 2
        tags = (await session.scalars(select(CustomerTag.tag))).all()
        assert await session.scalar(select(func.count()).select_from(ErasureTombstone)) == 1
        kept = (await session.scalars(select(ExperimentExposure.experiment))).all()
        assert await session.scalar(select(func.count()).select_from(OfferExposure)) == 0
        audit = await list_audit_entries(session)
    assert tags == ["vip"]
    assert kept == ["new_test"]
    assert [(e.action, e.outcome) for e in audit] == [
        ("profile.read", "ok"),
        (RETENTION_ACTION, "ok"),
    ]
    assert audit[1].detail["interactions"] == 5
    assert audit[1].detail["trigger"] == "command"
    assert report.customer_keys  # their cached profiles are invalidated by the caller


async def test_a_dry_run_counts_and_deletes_nothing(store: SqlStore) -> None:
    """The counts of a real run, nothing deleted, the dry run audited as such."""
    await seed(store)
    report = await apply_retention(
        store.sessions, retention_days=90, audit_retention_days=730, now=NOW, dry_run=True
    )
    assert report.dry_run
    assert (report.interactions, report.audit_entries, report.profiles) == (5, 1, 0)
    assert report.exposures == 2
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Interaction)) == 7
        assert await session.scalar(select(func.count()).select_from(ExperimentExposure)) == 2
        audit = await list_audit_entries(session, action=RETENTION_ACTION)
    assert [(e.outcome, e.detail["dry_run"]) for e in audit] == [("dry_run", True)]


async def test_without_a_retention_interactions_are_kept(store: SqlStore) -> None:
    """No PERSONALIZE_RETENTION_DAYS: only the audit limit applies."""
    await seed(store)
    report = await apply_retention(
        store.sessions, retention_days=None, audit_retention_days=730, now=NOW
    )
    assert report.interactions_cutoff is None
    assert (report.interactions, report.audit_entries) == (0, 1)
    async with store.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Interaction)) == 7


async def test_limits_below_a_day_are_refused(sqlite_store: SqlStore) -> None:
    """A limit of 0 days is a bug in the caller, not a request to delete everything."""
    with pytest.raises(ValueError, match="at least one day"):
        await apply_retention(sqlite_store.sessions, retention_days=0, audit_retention_days=1)


async def test_the_schedule_runs_every_interval_until_stopped(sqlite_store: SqlStore) -> None:
    """Runs at start and again after each interval; stopping ends it; each run reports."""
    stop = asyncio.Event()
    reports: list[RetentionReport] = []

    async def on_done(report: RetentionReport) -> None:
        reports.append(report)
        if len(reports) == 3:
            stop.set()

    schedule = RetentionSchedule(
        sqlite_store.sessions,
        retention_days=30,
        audit_retention_days=30,
        on_done=on_done,
        interval_s=0.001,
        clock=lambda: NOW,
    )
    await asyncio.wait_for(schedule.run(stop), timeout=30)
    assert schedule.runs == 3
    assert [r.interactions_cutoff for r in reports] == [NOW - timedelta(days=30)] * 3
    async with sqlite_store.sessions() as session:
        audit = await list_audit_entries(session, action=RETENTION_ACTION)
    assert [e.detail["trigger"] for e in audit] == ["worker"] * 3


async def test_a_failed_run_is_counted_and_the_schedule_goes_on(
    sqlite_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store failure is logged and counted; the next interval tries again."""
    calls = 0

    async def flaky(*_args: Any, **_kwargs: Any) -> RetentionReport:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("SELECT", {}, Exception("down"))
        return RetentionReport(False, None, NOW)

    monkeypatch.setattr(retention, "apply_retention", flaky)
    schedule = RetentionSchedule(
        sqlite_store.sessions, retention_days=30, audit_retention_days=30, interval_s=1.0
    )
    assert await schedule.run_once() is None
    assert await schedule.run_once() == RetentionReport(False, None, NOW)
    assert (schedule.failures, schedule.runs) == (1, 1)


def test_the_interval_must_be_positive(sqlite_store: SqlStore) -> None:
    """A zero interval would spin: refused."""
    with pytest.raises(ValueError, match="interval_s"):
        RetentionSchedule(
            sqlite_store.sessions, retention_days=1, audit_retention_days=1, interval_s=0
        )


@pytest.mark.redis
async def test_the_worker_runs_periodic_jobs_until_it_stops(
    sqlite_store: SqlStore, redis_url: str
) -> None:
    """A job given to the worker starts with it and is told when the worker stops."""
    started = asyncio.Event()
    finished: list[bool] = []

    async def job(done: asyncio.Event) -> None:
        started.set()
        await done.wait()
        finished.append(True)

    client = redis_asyncio.from_url(redis_url, socket_timeout=5.0)
    stream = f"test:retention:{uuid.uuid4().hex}"
    stop = asyncio.Event()
    worker = StreamWorker(
        client,
        stream,
        sqlite_store.sessions,
        options=WorkerOptions(block_ms=10, refresh_every_s=0.01),
        periodic=[job],
    )
    try:
        running = asyncio.ensure_future(worker.run(stop))
        await asyncio.wait_for(started.wait(), timeout=10)
        assert finished == []
        stop.set()
        await asyncio.wait_for(running, timeout=10)
        assert finished == [True]
    finally:
        await client.delete(stream, f"{stream}:dirty", f"{stream}:dirty-version")
        await client.aclose()
