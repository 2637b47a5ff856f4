"""PersonalizationService: identity -> profile -> segment -> decision rules -> SlotPlan.

The one place that composes the steps. It works on plain data and never sees a tracker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from actions.context import ConversationContext, time_of_day
from actions.errors import StoreUnavailableError
from actions.identity import CustomerIdentity, customer_key
from actions.rules import RuleBook, RuleSet, evaluate, facts_from
from actions.segments.archetypes import archetype_for
from actions.settings import Settings
from actions.slots import CUSTOMER_SEGMENTS, LOYALTY_TIERS, SlotPlan
from actions.store.database import StoreTimeouts
from actions.store.models import utc_now
from actions.store.records import CustomerSnapshot
from actions.store.sql_store import SqlStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PersonalizationRequest:
    """One action's question: who is talking, and in what context."""

    identity: CustomerIdentity
    context: ConversationContext = field(default_factory=ConversationContext)


def default_plan(now: datetime, context: ConversationContext | None = None) -> SlotPlan:
    """The safe answer for an unknown customer or an unreachable store."""
    local = (context or ConversationContext()).local_time(now)
    return SlotPlan(
        {
            "customer_segment": "new_visitor",
            "loyalty_tier": "none",
            "is_returning_customer": False,
            "user_tags": [],
            "favorite_category": None,
            "offer_type": "none",
            "discount_pct": 0,
            "time_of_day": time_of_day(local),
        }
    )


def segment_of(snapshot: CustomerSnapshot, now: datetime) -> str:
    """A stored clustering assignment if valid, else the archetype rule's answer."""
    stored = snapshot.segment.segment if snapshot.segment else None
    if stored in CUSTOMER_SEGMENTS:
        return stored
    return archetype_for(snapshot.metrics, snapshot.loyalty_tier, now)


def plan_for_snapshot(
    snapshot: CustomerSnapshot | None,
    now: datetime,
    context: ConversationContext,
    rules: RuleSet,
) -> SlotPlan:
    """The slots for a customer (None: not in the store), with the decision rules applied.

    Pure: the same snapshot, time, context and rules give the same plan.
    """
    base = default_plan(now, context)
    segment = segment_of(snapshot, now) if snapshot else "new_visitor"
    decision = evaluate(rules, facts_from(snapshot, segment, context, now, context.location))
    if snapshot is None:
        return base.merged(**decision.slot_values())
    tier = snapshot.loyalty_tier if snapshot.loyalty_tier in LOYALTY_TIERS else "none"
    return base.merged(
        customer_segment=segment,
        loyalty_tier=tier,
        is_returning_customer=snapshot.metrics.interaction_count > 0,
        user_tags=[tag.tag for tag in snapshot.tags],
        favorite_category=snapshot.metrics.favorite_category,
        **decision.slot_values(),
    )


class PersonalizationService:
    """Answers personalization requests within a bounded time, whatever the store does.

    After a store failure it answers defaults without touching the store for
    ``settings.store_retry_after_s`` (so an outage costs every conversation nothing), then
    tries again; the first success closes the breaker.
    """

    def __init__(
        self,
        settings: Settings,
        store: SqlStore | None = None,
        clock: Callable[[], datetime] = utc_now,
        rules: RuleBook | None = None,
    ) -> None:
        self.settings = settings
        # A broken rule file must not keep the server from starting: built-in rules serve
        # until it is fixed, and `personalize rules check` reports it.
        self.rules = rules or RuleBook(
            settings.rules_path, check_every_s=settings.rules_check_every_s, strict=False
        )
        self.store = store or SqlStore(
            settings.database_url,
            StoreTimeouts(settings.store_connect_timeout_s, settings.store_statement_timeout_s),
            settings.store_pool_size,
        )
        self._clock = clock
        self._store_down_until = 0.0
        self._store_down = False

    def key_for(self, identity: CustomerIdentity) -> str:
        """The store key of this customer."""
        return customer_key(self.settings.secret_key, identity.external_id)

    async def personalize(self, request: PersonalizationRequest) -> SlotPlan:
        """The slot plan for this customer now; defaults if unknown or the store fails."""
        now = self._clock()
        try:
            snapshot = await self._load_snapshot(self.key_for(request.identity))
        except StoreUnavailableError:
            return default_plan(now, request.context)
        return plan_for_snapshot(snapshot, now, request.context, self.rules.current())

    async def _load_snapshot(self, key: str) -> CustomerSnapshot | None:
        if time.monotonic() < self._store_down_until:
            raise StoreUnavailableError("store marked unavailable; retrying later")
        try:
            snapshot = await asyncio.wait_for(
                self.store.load_snapshot(key), timeout=self.settings.action_budget_s
            )
        except (asyncio.TimeoutError, SQLAlchemyError, OSError) as error:
            self._mark_store_down(error)
            raise StoreUnavailableError("store unavailable") from error
        if self._store_down:
            self._store_down = False
            logger.info("The store answers again; personalization is back on.")
        return snapshot

    def _mark_store_down(self, error: BaseException) -> None:
        self._store_down_until = time.monotonic() + self.settings.store_retry_after_s
        if not self._store_down:
            # The error's class only: its message may quote SQL parameters (customer keys).
            logger.warning(
                "The store is unavailable (%s); answering default slots for %.0f s.",
                type(error).__name__,
                self.settings.store_retry_after_s,
            )
        self._store_down = True

    async def close(self) -> None:
        """Release the store's connections."""
        await self.store.dispose()
