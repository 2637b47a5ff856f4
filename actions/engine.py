"""PersonalizationService: identity -> profile -> segment -> decision rules -> SlotPlan.

The one place that composes the steps. It works on plain data and never sees a tracker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Final, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from actions.cache.precomputed import PrecomputedCache
from actions.context import ConversationContext, time_of_day
from actions.errors import NotFoundError, StoreUnavailableError
from actions.identity import CustomerIdentity, customer_key
from actions.recommend.service import (
    Recommendation,
    RecommendationRequest,
    RecommendationService,
    describe,
)
from actions.rules import Decision, RuleBook, RuleSet, evaluate, facts_from
from actions.segments.archetypes import archetype_for
from actions.settings import Settings
from actions.slots import CUSTOMER_SEGMENTS, LOYALTY_TIERS, SlotPlan
from actions.store.catalogue import CustomerItems, record_interactions
from actions.store.database import StoreTimeouts
from actions.store.models import utc_now
from actions.store.records import CustomerSnapshot
from actions.store.sql_store import SqlStore

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Interactions this recent count as "in session" for the session fallback.
RECENT_WINDOW: Final = timedelta(days=30)


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
    return decide(snapshot, now, context, rules)[0]


def decide(
    snapshot: CustomerSnapshot | None,
    now: datetime,
    context: ConversationContext,
    rules: RuleSet,
) -> tuple[SlotPlan, Decision]:
    """The slot plan and the rules' full decision (price cap and strategy included)."""
    base = default_plan(now, context)
    segment = segment_of(snapshot, now) if snapshot else "new_visitor"
    decision = evaluate(rules, facts_from(snapshot, segment, context, now, context.location))
    if snapshot is None:
        return base.merged(**decision.slot_values()), decision
    tier = snapshot.loyalty_tier if snapshot.loyalty_tier in LOYALTY_TIERS else "none"
    return base.merged(
        customer_segment=segment,
        loyalty_tier=tier,
        is_returning_customer=snapshot.metrics.interaction_count > 0,
        user_tags=[tag.tag for tag in snapshot.tags],
        favorite_category=snapshot.metrics.favorite_category,
        **decision.slot_values(),
    ), decision


def recommendation_plan(answer: Recommendation | None, category: str | None) -> SlotPlan:
    """The recommendation slots for an answer (None: nothing could be looked up)."""
    if answer is None:
        return SlotPlan(
            {
                "recommended_products": [],
                "recommendation_text": "I can't look up products right now, sorry.",
                "recommendation_reason": None,
                "recommendation_source": None,
            }
        )
    return SlotPlan(
        {
            "recommended_products": [
                {"sku": p.sku, "title": p.title, "price": round(p.price, 2)}
                for p in answer.products
            ],
            "recommendation_text": describe(answer, category),
            "recommendation_reason": answer.reason if answer.products else None,
            "recommendation_source": answer.source if answer.products else None,
        }
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
        self.precomputed_cache = (
            PrecomputedCache(settings.redis_url, timeout_s=settings.redis_timeout_s)
            if settings.redis_url
            else None
        )
        self.recommendations = RecommendationService(
            self.store,
            settings.model_dir,
            refresh_every_s=settings.catalogue_refresh_s,
            model_check_every_s=settings.model_check_every_s,
        )

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

    async def recommend(
        self,
        request: PersonalizationRequest,
        *,
        category: str | None = None,
        n: int | None = None,
        shown: frozenset[str] = frozenset(),
    ) -> SlotPlan:
        """Recommendation slots for this customer, through the fallback chain.

        The decision rules' price cap and strategy apply. With the store down, the
        resources already in memory (catalogue, popularity, model) still answer.
        """
        now = self._clock()
        key = self.key_for(request.identity)
        snapshot, items = await self._customer_context(key, now)
        _, decision = decide(snapshot, now, request.context, self.rules.current())
        ask = RecommendationRequest(
            customer_key=key,
            segment=segment_of(snapshot, now) if snapshot else "new_visitor",
            tags=tuple(tag.tag for tag in snapshot.tags) if snapshot else (),
            favorite_category=snapshot.metrics.favorite_category if snapshot else None,
            category=category,
            max_price=decision.max_price,
            strategy=decision.recommendation_strategy,
            n=n or self.settings.recommend_count,
            shown=shown,
            exclude_purchased=self.settings.recommend_exclude_purchased,
        )
        try:
            answer = await asyncio.wait_for(
                self.recommendations.recommend(ask, items), timeout=self.settings.action_budget_s
            )
        except (asyncio.TimeoutError, StoreUnavailableError):
            return recommendation_plan(None, category)
        return recommendation_plan(answer, answer.category)

    async def _customer_context(
        self, key: str, now: datetime
    ) -> tuple[CustomerSnapshot | None, CustomerItems | None]:
        """Snapshot and items; the precomputed list from Redis when configured, in parallel."""
        cache = self.precomputed_cache

        async def from_sql() -> tuple[CustomerSnapshot | None, CustomerItems | None]:
            try:
                return await self._guarded(
                    self.store.load_customer_context(
                        key, now - RECENT_WINDOW, with_precomputed=cache is None
                    )
                )
            except StoreUnavailableError:
                return None, None

        if cache is None:
            return await from_sql()
        (snapshot, items), cached = await asyncio.gather(from_sql(), cache.read(key))
        if items is not None and cached is not None:
            items = replace(items, precomputed=cached[0], precomputed_version=cached[1])
        return snapshot, items

    async def similar(self, product_text: str, n: int = 3) -> SlotPlan:
        """Slots for "something like X": products like the one the customer names."""
        try:
            anchor, similar = await asyncio.wait_for(
                self.recommendations.similar(product_text, n),
                timeout=self.settings.action_budget_s,
            )
        except (asyncio.TimeoutError, StoreUnavailableError, NotFoundError):
            return recommendation_plan(None, None)
        answer = Recommendation(
            products=tuple(similar),
            source="content",
            reason=f"because they are like {anchor.title}",
        )
        return recommendation_plan(answer, None)

    async def record_feedback(
        self,
        request: PersonalizationRequest,
        skus: list[str],
        *,
        liked: bool,
        event_prefix: str,
    ) -> int:
        """Store the customer's verdict on recommended products as feedback interactions.

        ``event_prefix`` identifies the message, so a retried action stores nothing twice.
        Returns how many interactions were new.
        """
        if not skus:
            return 0
        events = [
            (f"{event_prefix}-{sku}", sku, "feedback", 1.0 if liked else -1.0) for sku in skus
        ]

        async def write() -> int:
            async with self.store.sessions.begin() as session:
                return await record_interactions(
                    session,
                    self.key_for(request.identity),
                    events,
                    channel=request.context.channel,
                    occurred_at=self._clock(),
                )

        try:
            return await self._guarded(write())
        except StoreUnavailableError:
            return 0

    async def warm_up(self) -> None:
        """Load what recommending needs before the first customer asks."""
        await self.recommendations.warm_up()

    async def _load_snapshot(self, key: str) -> CustomerSnapshot | None:
        return await self._guarded(self.store.load_snapshot(key))

    async def _guarded(self, work: Awaitable[T]) -> T:
        """Await store work within the action budget, through the breaker."""
        if time.monotonic() < self._store_down_until:
            if inspect.iscoroutine(work):
                work.close()  # never started: nothing to wait for
            raise StoreUnavailableError("store marked unavailable; retrying later")
        try:
            result = await asyncio.wait_for(work, timeout=self.settings.action_budget_s)
        except (asyncio.TimeoutError, SQLAlchemyError, OSError) as error:
            self._mark_store_down(error)
            raise StoreUnavailableError("store unavailable") from error
        if self._store_down:
            self._store_down = False
            logger.info("The store answers again; personalization is back on.")
        return result

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
        """Release the store's (and the cache's) connections."""
        if self.precomputed_cache is not None:
            await self.precomputed_cache.close()
        await self.store.dispose()
