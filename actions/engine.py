"""PersonalizationService: identity -> profile -> segment -> offers -> SlotPlan.

The one place that composes the steps. It works on plain data and never sees a tracker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from actions.context import ConversationContext, time_of_day
from actions.errors import StoreUnavailableError
from actions.identity import CustomerIdentity, customer_key
from actions.segments.archetypes import archetype_for
from actions.settings import Settings
from actions.slots import CUSTOMER_SEGMENTS, LOYALTY_TIERS, SlotPlan
from actions.store.database import StoreTimeouts
from actions.store.models import utc_now
from actions.store.records import CustomerSnapshot
from actions.store.sql_store import SqlStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """An offer to make: its type and, for discounts, the percentage."""

    offer_type: str = "none"
    discount_pct: float = 0.0


# Offers per segment until the YAML decision rules take over; cautious by design: nobody
# unknown or new gets a discount, and a store outage never invents one.
DEFAULT_OFFERS: Final[dict[str, Offer]] = {
    "new_visitor": Offer(),
    "browser": Offer("free_shipping"),
    "frequent_buyer": Offer("bundle"),
    "price_sensitive": Offer("discount", 15.0),
    "at_risk": Offer("discount", 10.0),
    "loyal": Offer("exclusive_access"),
}


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


def plan_for_snapshot(
    snapshot: CustomerSnapshot, now: datetime, context: ConversationContext
) -> SlotPlan:
    """The slots for a known customer. Pure: same snapshot, time and context, same plan."""
    stored = snapshot.segment.segment if snapshot.segment else None
    segment = (
        stored
        if stored in CUSTOMER_SEGMENTS
        else archetype_for(snapshot.metrics, snapshot.loyalty_tier, now)
    )
    tier = snapshot.loyalty_tier if snapshot.loyalty_tier in LOYALTY_TIERS else "none"
    offer = DEFAULT_OFFERS[segment]
    return default_plan(now, context).merged(
        customer_segment=segment,
        loyalty_tier=tier,
        is_returning_customer=snapshot.metrics.interaction_count > 0,
        user_tags=[tag.tag for tag in snapshot.tags],
        favorite_category=snapshot.metrics.favorite_category,
        offer_type=offer.offer_type,
        discount_pct=_display_number(offer.discount_pct),
    )


def _display_number(value: float) -> float | int:
    # Responses interpolate the slot as text: "15% off" reads better than "15.0% off".
    return int(value) if float(value).is_integer() else value


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
    ) -> None:
        self.settings = settings
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
        if snapshot is None:
            return default_plan(now, request.context)
        return plan_for_snapshot(snapshot, now, request.context)

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
