"""Retention: interactions and audit rows older than their limits are deleted.

``PERSONALIZE_RETENTION_DAYS`` (unset: interactions are kept forever) and
``PERSONALIZE_AUDIT_RETENTION_DAYS`` (default two years) set the limits.
:func:`apply_retention` deletes old interactions in batches (one transaction each), then
recomputes the metrics and rule tags of the customers it touched (those left without
any interaction get empty metrics), then deletes experiment and offer exposures older than
the same limit and old audit rows, and records what it did
as an audit row ``privacy.retention``. A dry run counts without deleting. Erasure
tombstones stay: they are what keeps an erased customer's late events out.

``personalize privacy retention`` runs it once; ``personalize worker`` runs it once a day
(:class:`RetentionSchedule`) when a retention is set. Several workers may each run it:
the deletes are idempotent, and a second run finds little left to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from rasa_personalize.clock import utc_now
from rasa_personalize.privacy.audit import Actor, record_audit
from rasa_personalize.segments.tag_rules import TagRules
from rasa_personalize.segments.tags import apply_tag_rules
from rasa_personalize.store.audit import delete_audit_entries_before
from rasa_personalize.store.errors import DatabaseError
from rasa_personalize.store.profiles import refresh_profile_metrics
from rasa_personalize.store.retention import (
    DEFAULT_BATCH,
    count_audit_entries_before,
    count_exposures_before,
    count_interactions_before,
    delete_exposures_before,
    delete_interactions_before,
    reset_emptied_metrics,
)
from rasa_personalize.store.types import SessionFactory

if TYPE_CHECKING:
    from rasa_personalize.cache.profiles import ProfileCache
    from rasa_personalize.settings import Settings

logger = logging.getLogger(__name__)

RETENTION_ACTION: Final = "privacy.retention"
DAILY_S: Final = 24 * 3600.0
# Customers whose metrics and tags are recomputed per transaction.
REFRESH_CHUNK: Final = 1_000

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RetentionReport:
    """What a retention run deleted (or, in a dry run, would delete).

    Attributes:
        dry_run: Nothing was deleted; the counts are what would go.
        interactions_cutoff: Interactions before this went (None: kept forever).
        audit_cutoff: Audit rows before this went.
        interactions: Interactions deleted.
        customers: Customers who had interactions deleted (0 in a dry run).
        profiles: Profiles whose metrics were rewritten.
        tags_removed: Rule tags that no longer hold once the old interactions are gone.
        audit_entries: Audit rows deleted.
        exposures: Experiment and offer exposures deleted (the interactions' cutoff).
        customer_keys: Keys of the customers whose profiles changed (cache invalidation).
    """

    dry_run: bool
    interactions_cutoff: datetime | None
    audit_cutoff: datetime
    interactions: int = 0
    customers: int = 0
    profiles: int = 0
    tags_removed: int = 0
    audit_entries: int = 0
    exposures: int = 0
    customer_keys: frozenset[str] = field(default=frozenset(), repr=False)

    def counts(self) -> dict[str, Any]:
        """The counts and cutoffs as JSON-ready values (the audit row's detail)."""
        return {
            "dry_run": self.dry_run,
            "interactions_cutoff": (
                self.interactions_cutoff.isoformat() if self.interactions_cutoff else None
            ),
            "audit_cutoff": self.audit_cutoff.isoformat(),
            "interactions": self.interactions,
            "customers": self.customers,
            "profiles": self.profiles,
            "tags_removed": self.tags_removed,
            "audit_entries": self.audit_entries,
            "exposures": self.exposures,
        }


async def apply_retention(
    sessions: SessionFactory,
    *,
    retention_days: int | None,
    audit_retention_days: int,
    now: datetime | None = None,
    dry_run: bool = False,
    tag_rules: TagRules | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    actor: Actor | None = None,
    trigger: str = "command",
) -> RetentionReport:
    """Delete interactions and audit rows older than their limits.

    Args:
        sessions: The store's session factory (no hot-path statement limit).
        retention_days: ``settings.retention_days``; None keeps interactions.
        audit_retention_days: ``settings.audit_retention_days``.
        now: The time the limits count back from (default: now).
        dry_run: Count what would go, delete nothing.
        tag_rules: Re-applied to the touched customers (``settings.tags_path``).
        batch_size: Interactions deleted per transaction.
        progress: ``(stage, done, total)`` callback for progress bars.
        actor: Recorded in the audit row (default: the command line).
        trigger: Recorded in the audit row's detail (``command`` or ``worker``).

    Raises:
        ValueError: a limit below one day.
        DatabaseError: the store failed (batches done stay done; run again).
    """
    if (retention_days is not None and retention_days < 1) or audit_retention_days < 1:
        raise ValueError("retention limits must be at least one day")
    now = now or utc_now()
    report_progress = progress or (lambda _stage, _done, _total: None)
    cutoff = now - timedelta(days=retention_days) if retention_days is not None else None
    audit_cutoff = now - timedelta(days=audit_retention_days)
    async with sessions() as session:
        pending = await count_interactions_before(session, cutoff) if cutoff else 0
        audit_pending = await count_audit_entries_before(session, audit_cutoff)
        exposures_pending = await count_exposures_before(session, cutoff) if cutoff else 0
    if dry_run:
        report = RetentionReport(
            True,
            cutoff,
            audit_cutoff,
            pending,
            audit_entries=audit_pending,
            exposures=exposures_pending,
        )
    else:
        report = await _delete(
            sessions,
            cutoff=cutoff,
            audit_cutoff=audit_cutoff,
            now=now,
            pending=pending,
            tag_rules=tag_rules,
            batch_size=batch_size,
            progress=report_progress,
        )
    async with sessions.begin() as session:
        await record_audit(
            session,
            actor or Actor.cli(),
            RETENTION_ACTION,
            "dry_run" if dry_run else "ok",
            detail={**report.counts(), "trigger": trigger},
            now=now,
        )
    return report


async def _delete(
    sessions: SessionFactory,
    *,
    cutoff: datetime | None,
    audit_cutoff: datetime,
    now: datetime,
    pending: int,
    tag_rules: TagRules | None,
    batch_size: int,
    progress: Progress,
) -> RetentionReport:
    deleted = 0
    touched: set[int] = set()
    if cutoff is not None:
        progress("interactions", 0, pending)
        while True:
            async with sessions.begin() as session:
                count, customers = await delete_interactions_before(session, cutoff, batch_size)
            deleted += count
            touched.update(customers)
            # Old events may still arrive meanwhile (a late import): the total grows.
            progress("interactions", deleted, max(pending, deleted))
            if count < batch_size:
                break
    profiles = tags_removed = 0
    keys: set[str] = set()
    ordered = sorted(touched)
    progress("profiles", 0, len(ordered))
    for start in range(0, len(ordered), REFRESH_CHUNK):
        chunk = ordered[start : start + REFRESH_CHUNK]
        async with sessions.begin() as session:
            refreshed = await refresh_profile_metrics(session, chunk, now)
            profiles += refreshed.written + await reset_emptied_metrics(session, chunk, now)
            keys.update(refreshed.customer_keys)
            if tag_rules is not None:
                run = await apply_tag_rules(
                    session,
                    tag_rules,
                    chunk,
                    now=now,
                    check_catalogue=False,
                    count_qualifying=False,
                )
                tags_removed += run.removed
        progress("profiles", start + len(chunk), len(ordered))
    exposures = 0
    if cutoff is not None:
        async with sessions.begin() as session:
            exposures = await delete_exposures_before(session, cutoff)
    async with sessions.begin() as session:
        audit_entries = await delete_audit_entries_before(session, audit_cutoff)
    progress("audit log", audit_entries, audit_entries)
    return RetentionReport(
        dry_run=False,
        interactions_cutoff=cutoff,
        audit_cutoff=audit_cutoff,
        interactions=deleted,
        customers=len(touched),
        profiles=profiles,
        tags_removed=tags_removed,
        audit_entries=audit_entries,
        exposures=exposures,
        customer_keys=frozenset(keys),
    )


class RetentionSchedule:
    """Runs retention at start and then every ``interval_s`` until stopped (the worker).

    A failed run is logged (the error's class only) and tried again at the next
    interval; the schedule never stops the worker.

    Args:
        sessions: The store's session factory.
        retention_days: ``settings.retention_days`` (must be set).
        audit_retention_days: ``settings.audit_retention_days``.
        tag_rules: Re-applied to the touched customers.
        on_done: Called with each run's report (cache invalidation); failures logged.
        interval_s: Time between runs (a day; tests pass less).
        clock: The time each run counts back from.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        retention_days: int,
        audit_retention_days: int,
        tag_rules: TagRules | None = None,
        on_done: Callable[[RetentionReport], Awaitable[None]] | None = None,
        interval_s: float = DAILY_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.sessions = sessions
        self.retention_days = retention_days
        self.audit_retention_days = audit_retention_days
        self.tag_rules = tag_rules
        self.on_done = on_done
        self.interval_s = interval_s
        self.clock = clock
        self.runs = 0
        self.failures = 0

    async def run_once(self) -> RetentionReport | None:
        """One retention run; None if it failed (logged)."""
        try:
            report = await apply_retention(
                self.sessions,
                retention_days=self.retention_days,
                audit_retention_days=self.audit_retention_days,
                now=self.clock(),
                tag_rules=self.tag_rules,
                trigger="worker",
            )
        except (DatabaseError, OSError) as error:
            self.failures += 1
            logger.warning(
                "Retention failed (%s); trying again in %.0f s.",
                type(error).__name__,
                self.interval_s,
            )
            return None
        self.runs += 1
        logger.info(
            "Retention deleted %d interactions of %d customers and %d audit rows.",
            report.interactions,
            report.customers,
            report.audit_entries,
        )
        if self.on_done is not None:
            try:
                await self.on_done(report)
            except Exception as error:  # a hook must not stop the schedule
                logger.warning("After-retention hook failed (%s).", type(error).__name__)
        return report

    async def run(self, stop: asyncio.Event) -> None:
        """Run now, then every ``interval_s``, until ``stop`` is set."""
        while not stop.is_set():
            await self.run_once()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval_s)


def worker_retention(
    settings: Settings,
    sessions: SessionFactory,
    tag_rules: TagRules | None,
    profile_cache: ProfileCache | None,
) -> list[Callable[[asyncio.Event], Awaitable[None]]]:
    """The worker's periodic jobs: a daily :class:`RetentionSchedule` when
    ``settings.retention_days`` is set (none otherwise). Changed profiles leave
    ``profile_cache``."""
    if settings.retention_days is None:
        return []

    async def invalidate(report: RetentionReport) -> None:
        if profile_cache is not None and report.customer_keys:
            await profile_cache.invalidate(report.customer_keys)

    schedule = RetentionSchedule(
        sessions,
        retention_days=settings.retention_days,
        audit_retention_days=settings.audit_retention_days,
        tag_rules=tag_rules,
        on_done=invalidate,
    )
    return [schedule.run]
