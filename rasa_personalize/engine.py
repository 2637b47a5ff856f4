"""PersonalizationService: identity -> profile -> segment -> decision rules -> SlotPlan.

The one place that composes the steps. It works on plain data and never sees a tracker.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, Final, TypeVar

from rasa_personalize.cache.breaker import RedisBreaker, RedisUnavailableError
from rasa_personalize.cache.counters import SessionCounters, SessionCounts, watch_counters
from rasa_personalize.cache.precomputed import PrecomputedCache
from rasa_personalize.cache.profiles import (
    CachedProfile,
    ProfileCache,
    ProfileTicket,
    redis_client,
    watch_profiles,
)
from rasa_personalize.cache.tracking import ChangeFeed
from rasa_personalize.clock import utc_now
from rasa_personalize.context import ConversationContext, time_of_day
from rasa_personalize.errors import NotFoundError, StoreUnavailableError
from rasa_personalize.events.chat_writer import ChatEventWriter
from rasa_personalize.experiments.allocation import AdaptiveAllocation, KeptArms, store_counts
from rasa_personalize.extras import check_settings_extras
from rasa_personalize.identity import CustomerIdentity, hot_customer_key
from rasa_personalize.metrics import (
    breaker_changed,
    count_defaults,
    count_exposure,
    store_failure_reason,
)
from rasa_personalize.offers.artifacts import offer_model_holder
from rasa_personalize.preferences import ChatPreference, preference_tag
from rasa_personalize.privacy.audit import Actor
from rasa_personalize.privacy.consent import (
    MARKETING,
    PERSONALIZATION,
    ConsentDefault,
    ConsentRequest,
    record_consent,
)
from rasa_personalize.privacy.erasure import ErasureReceipt, erase_with_settings
from rasa_personalize.privacy.secret_rotation import rekey_on_miss
from rasa_personalize.recommend.reranking import ListPolicy
from rasa_personalize.recommend.service import (
    Recommendation,
    RecommendationRequest,
    RecommendationService,
    describe,
    resolve_category,
)
from rasa_personalize.rules import Decision, RuleBook, RuleSet, evaluate, facts_from
from rasa_personalize.rules.experiments import (
    OFFER_OUTPUTS,
    RECOMMENDATION_OUTPUTS,
    SLOT_OUTPUTS,
    ExperimentUnit,
    assign,
    experiment_named,
    experiment_secret,
)
from rasa_personalize.rules.offers import AcceptanceModel, choose_offer, offer_label
from rasa_personalize.segments.archetypes import archetype_for
from rasa_personalize.settings import Settings
from rasa_personalize.slots import (
    CUSTOMER_SEGMENTS,
    LOYALTY_TIERS,
    PURCHASE_PROPENSITIES,
    SlotPlan,
    check_slot_value,
)
from rasa_personalize.store.catalogue import ChatInteraction, ChatWrite, CustomerItems
from rasa_personalize.store.customers import keys_of_person
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.errors import DatabaseError, is_outage
from rasa_personalize.store.history import HistoryQuery
from rasa_personalize.store.records import PURCHASE_7D, CustomerSnapshot
from rasa_personalize.store.sql_store import NOT_INLINE, NotInline, SqlStore
from rasa_personalize.store.tags import set_customer_tag
from rasa_personalize.text import MAX_LIST_ITEMS, bounded_text
from rasa_personalize.tracing import RULES_SPAN, traced

logger = logging.getLogger(__name__)
T = TypeVar("T")
# What decide() returns: the slot plan and the full decision.
Decided = tuple[SlotPlan, Decision]

# The customer key recommendations are asked under for a customer whose profile may not be
# used: no customer has it (a customer key is 64 hex digits), so no model row answers.
ANONYMOUS_KEY: Final = "anonymous"

# Exposures remembered per process, so that a customer's later turns write nothing; when
# full it starts again (the store ignores a second exposure anyway).
REMEMBERED_EXPOSURES: Final = 100_000

# Interactions this recent count as "in session" for the session fallback.
RECENT_WINDOW: Final = timedelta(days=30)


@dataclass(frozen=True)
class ConversationRef:
    """Which conversation and message an action answers (raw ids: hashed before any use)."""

    sender_id: str
    message_id: str | None = None

    def event_prefix(self) -> str:
        """Stable per message, so a retried action stores nothing twice; hashed because
        the sender id may be personal."""
        digest = hashlib.sha256(f"{self.sender_id}|{self.message_id or ''}".encode())
        return f"chat-{digest.hexdigest()[:24]}"


@dataclass(frozen=True)
class PersonalizationRequest:
    """One action's question: who is talking, and in what context.

    ``conversation`` is set by the Rasa actions: it keys the session counters and the
    chat-side events. Without it (CLI, API) neither is read or written.
    """

    identity: CustomerIdentity
    context: ConversationContext = field(default_factory=ConversationContext)
    conversation: ConversationRef | None = None


@dataclass(frozen=True)
class CategoryCount:
    """A catalogue category and how many of its products are in stock."""

    name: str
    products: int


def default_plan(now: datetime, context: ConversationContext | None = None) -> SlotPlan:
    """The safe answer for an unknown customer or an unreachable store."""
    local = (context or ConversationContext()).local_time(now)
    return SlotPlan.of_checked(_default_values(local))


def _default_values(local: datetime) -> dict[str, Any]:
    # Constants of the contract (tests check them against it), and the local time's part.
    return {
        "customer_segment": "new_visitor",
        "loyalty_tier": "none",
        "is_returning_customer": False,
        "user_tags": [],
        "favorite_category": None,
        "offer_type": "none",
        "discount_pct": 0,
        "time_of_day": time_of_day(local),
        "personalization_consent": "unknown",
        "response_variant": None,
        "purchase_propensity": "unknown",
    }


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
    *,
    session: SessionCounts | None = None,
    consent_default: ConsentDefault = "granted",
) -> SlotPlan:
    """The slots for a customer (None: not in the store), with the decision rules applied.

    Pure: the same snapshot, time, context, rules, session counts and consent default give
    the same plan.
    """
    return decide(snapshot, now, context, rules, session=session, consent_default=consent_default)[
        0
    ]


def consent_slot(snapshot: CustomerSnapshot | None) -> str:
    """The ``personalization_consent`` slot: the customer's own answer, else unknown."""
    answer = snapshot.consent.get(PERSONALIZATION) if snapshot is not None else None
    if answer is None:
        return "unknown"
    return "granted" if answer else "denied"


def propensity_slot(snapshot: CustomerSnapshot | None) -> str:
    """The ``purchase_propensity`` slot: the band of the stored 7-day purchase score, else
    unknown (no score yet, or a band outside the contract)."""
    record = snapshot.metrics.propensity.get(PURCHASE_7D) if snapshot is not None else None
    if record is None or record.band not in PURCHASE_PROPENSITIES:
        return "unknown"
    return record.band


def allows(
    snapshot: CustomerSnapshot | None, purpose: str, consent_default: ConsentDefault
) -> bool:
    """Whether the customer's answer (or, without one, the default) allows ``purpose``."""
    answer = snapshot.consent.get(purpose) if snapshot is not None else None
    return answer if answer is not None else consent_default == "granted"


@traced(RULES_SPAN, result=lambda decided: {"personalize.rules.rule": decided[1].rule or ""})
def decide(
    snapshot: CustomerSnapshot | None,
    now: datetime,
    context: ConversationContext,
    rules: RuleSet,
    *,
    session: SessionCounts | None = None,
    consent_default: ConsentDefault = "granted",
    experiment_unit: ExperimentUnit | None = None,
    offer_model: AcceptanceModel | None = None,
) -> tuple[SlotPlan, Decision]:
    """The slot plan and the rules' full decision (price cap and strategy included).

    Without ``personalization`` consent the customer is decided as an unknown visitor:
    nothing of their profile shapes the answer, and they take part in no experiment.
    Without ``marketing`` consent no offer is made, whatever the rules say, and experiments
    on the offer leave them out. With ``experiment_unit``, the first running experiment
    they are eligible for applies their arm (:mod:`rasa_personalize.rules.experiments`).
    An ``offer_type: best`` answer becomes the candidate with the highest expected value
    under ``offer_model`` (:mod:`rasa_personalize.rules.offers`).
    """
    consent = consent_slot(snapshot)
    marketing = allows(snapshot, MARKETING, consent_default)
    personalization = allows(snapshot, PERSONALIZATION, consent_default)
    if not personalization:
        snapshot = None
    local = context.local_time(now)
    segment = segment_of(snapshot, now) if snapshot else "new_visitor"
    facts = facts_from(
        snapshot, segment, context, now, context.location, session=session, local=local
    )
    decision = evaluate(rules, facts)
    if rules.experiments and experiment_unit is not None and personalization:
        decision = assign(
            rules.experiments,
            facts,
            decision,
            experiment_unit.secret,
            experiment_unit.key,
            excluded=frozenset() if marketing else OFFER_OUTPUTS,
            allocations=experiment_unit.allocations,
            pinned=experiment_unit.pinned,
        )
    if not marketing:
        decision = replace(decision, offer_type="none", discount_pct=0.0, best_offer=None)
    elif decision.best_offer is not None:
        # "offer_type: best": the candidate with the highest expected value under
        # ``offer_model`` (the rule's first without one); explored like an experiment arm.
        unit = experiment_unit if personalization else None
        decision = choose_offer(decision, offer_model, segment, unit)
    # One plan built once: the defaults, then what was decided. The rules' values and the
    # profile's free-form ones are checked against the contract; the rest are contract
    # values by construction (a normalized tier, fixed consent and propensity words).
    values = _default_values(local)
    decided = decision.slot_values()
    if snapshot is not None:
        values["loyalty_tier"] = (
            snapshot.loyalty_tier if snapshot.loyalty_tier in LOYALTY_TIERS else "none"
        )
        values["is_returning_customer"] = snapshot.metrics.interaction_count > 0
        values["user_tags"] = [tag.tag for tag in snapshot.tags]
        values["purchase_propensity"] = propensity_slot(snapshot)
        decided["customer_segment"] = segment
        decided["favorite_category"] = snapshot.metrics.favorite_category
    for name, value in decided.items():
        check_slot_value(name, value)
    values.update(decided)
    values["personalization_consent"] = consent
    return SlotPlan.of_checked(values), decision


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


def _first_time(remembered: set[Any], seen: Any) -> bool:
    """Whether this process has not recorded ``seen`` yet; remembers it (a bounded set that
    starts again when full: the store ignores a second row anyway)."""
    if seen in remembered:
        return False
    if len(remembered) >= REMEMBERED_EXPOSURES:
        remembered.clear()
    remembered.add(seen)
    return True


class PersonalizationService:
    """Answers personalization requests within a bounded time, whatever the store does.

    After a store outage it answers defaults without touching the store for
    ``settings.store_retry_after_s`` (so an outage costs every conversation nothing), then
    tries again; the first success closes the breaker.

    With ``redis_url`` set, snapshots go through the :class:`ProfileCache` and session
    counters live in Redis, both behind one :class:`RedisBreaker`: a slow or absent Redis
    costs at most ``redis_timeout_s``, then SQL (and in-process counters) answer.

    Chat-side events (recommendations shown, categories asked) are stored by tracked
    background tasks, so the answer never waits for the write; each write is bounded by
    the action budget and the store breaker, and :meth:`close` awaits them.
    """

    def __init__(
        self,
        settings: Settings,
        store: SqlStore | None = None,
        clock: Callable[[], datetime] = utc_now,
        rules: RuleBook | None = None,
    ) -> None:
        """Set up the service (connects to nothing yet).

        Raises:
            MissingExtraError: Redis or the database needs an extra that is not installed.
        """
        # Before any client exists: a missing extra is one clear line, not an ImportError.
        check_settings_extras(settings)
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
        # One client and one breaker for the profile cache and the counters: one Redis.
        self.redis_breaker = RedisBreaker(
            "profile cache and counters",
            timeout_s=settings.redis_timeout_s,
            retry_after_s=settings.redis_retry_after_s,
        )
        self._redis = (
            redis_client(settings.redis_url, settings.redis_timeout_s)
            if settings.redis_url
            else None
        )
        # Copies of snapshots and counters in this process, while Redis pushes changes.
        self.change_feed = (
            ChangeFeed(
                settings.redis_url,
                timeout_s=settings.redis_timeout_s,
                retry_after_s=settings.redis_retry_after_s,
            )
            if settings.redis_url and settings.local_cache_size > 0
            else None
        )
        feed, capacity = self.change_feed, settings.local_cache_size
        self.profile_cache = (
            ProfileCache(
                self._redis,
                ttl_s=settings.profile_cache_ttl_s,
                breaker=self.redis_breaker,
                kept=watch_profiles(feed, capacity=capacity) if feed else None,
            )
            if self._redis is not None
            else None
        )
        self.session_counters = SessionCounters(
            self._redis,
            secret_key=settings.secret_key,
            breaker=self.redis_breaker if self._redis is not None else None,
            kept=watch_counters(feed, capacity=capacity) if feed else None,
        )
        self._background: set[asyncio.Task[None]] = set()
        # A key of its own for arm assignment, derived from the secret key.
        self._experiment_secret = experiment_secret(settings.secret_key)
        # (experiment, customer key) already stored: a customer is exposed once.
        self._exposed: set[tuple[str, str]] = set()
        # The weights of "allocation: thompson" experiments, refreshed in the background,
        # and the arm each customer exposed to one keeps.
        self.allocation = AdaptiveAllocation(
            store_counts(self.store.arm_counts), self.rules.current, clock
        )
        self._kept_arms = KeptArms(self._exposed_arm)
        # The acceptance model of "offer_type: best" rules, swapped in when retrained.
        self.offer_models = offer_model_holder(settings.model_dir, settings.model_check_every_s)
        # (customer key, offer, day) already stored: an offer is recorded once a day.
        self._offers_shown: set[tuple[str, str, date]] = set()
        self.chat_writer = ChatEventWriter(self.store, settings.consent_default, self._guarded)
        self.recommendations = RecommendationService(
            self.store,
            settings.model_dir,
            refresh_every_s=settings.catalogue_refresh_s,
            model_check_every_s=settings.model_check_every_s,
            policy=ListPolicy.from_settings(settings),
        )

    def key_for(self, identity: CustomerIdentity) -> str:
        """The store key of this customer."""
        return hot_customer_key(self.settings.secret_key, identity.external_id)

    async def personalize(self, request: PersonalizationRequest) -> SlotPlan:
        """The slot plan for this customer now; defaults if unknown or the store fails."""
        now = self._clock()
        key = self.key_for(request.identity)
        if self._redis is None or self.change_feed is not None:
            # Both usually answer without waiting on anything here (an inline read or a
            # copy the change feed vouches for, in-process counters): in turn is cheaper
            # than two tasks; a miss costs one Redis round trip more.
            loaded = await self._load_snapshot_or_error(key)
            session = await self.session_counts(request)
        else:
            loaded, session = await asyncio.gather(
                self._load_snapshot_or_error(key), self.session_counts(request)
            )
        if loaded is None and self.settings.previous_secrets and await self._moved(request):
            loaded = await self._load_snapshot_or_error(key)
        if isinstance(loaded, StoreUnavailableError):
            count_defaults(store_failure_reason(loaded))
            return default_plan(now, request.context)
        if loaded is None or not allows(loaded, PERSONALIZATION, self.settings.consent_default):
            count_defaults("no_consent" if loaded else "unknown_customer")
        rules = self.rules.current()
        # Read only while a rule chooses offers; a check for a new version is rate-limited.
        offer_model = await self.offer_models.get_async() if rules.chooses_offers else None
        plan, decision = await self._decided(
            key,
            rules,
            lambda unit: decide(
                loaded,
                now,
                request.context,
                rules,
                session=session,
                consent_default=self.settings.consent_default,
                experiment_unit=unit,
                offer_model=offer_model,
            ),
        )
        if decision.experiment is not None:
            self._expose(request, key, rules, decision, used=SLOT_OUTPUTS, now=now)
        if rules.chooses_offers and decision.offer_type != "none":
            self._record_offer(request, key, decision, str(plan["customer_segment"]), now)
        return plan

    def _experiment_unit(self, key: str, rules: RuleSet) -> ExperimentUnit | None:
        """Who experiments assign (and ``best`` offers explore): the customer's key (a
        visitor's is the conversation's)."""
        if rules.experiments or rules.chooses_offers:
            return ExperimentUnit(
                key,
                self._experiment_secret,
                self.allocation.current(rules),
                self._kept_arms.pins(key),
            )
        return None

    async def _decided(
        self, key: str, rules: RuleSet, decided: Callable[[ExperimentUnit | None], Decided]
    ) -> Decided:
        """``decided(unit)`` (a call of :func:`decide`) for this customer, who keeps the
        arm stored with their exposure to an adaptive experiment whatever its weights are
        now: read once per process and customer the experiment applies to, then
        remembered (see ``experiments.allocation.KeptArms``); decided again only when
        that read finds another arm than the one dealt."""
        unit = self._experiment_unit(key, rules)
        plan, decision = decided(unit)
        experiment = experiment_named(rules.experiments, decision.experiment)
        if unit is None or experiment is None or not experiment.adaptive or decision.arm is None:
            return plan, decision
        kept = await self._kept_arms.arm(experiment.name, key, decision.arm)
        if kept == decision.arm:
            return plan, decision
        return decided(replace(unit, pinned={experiment.name: kept}))

    async def _exposed_arm(self, experiment: str, key: str) -> str | None:
        return await self._guarded(self.store.exposed_arm(experiment, key))

    def _record_offer(
        self,
        request: PersonalizationRequest,
        key: str,
        decision: Decision,
        segment: str,
        now: datetime,
    ) -> None:
        """Record, once per customer, offer and day and in the background, the offer the
        session actions showed: what the acceptance model of ``best`` rules learns from."""
        if request.conversation is None or self._unverified_claim(request.identity):
            return
        offer = offer_label(decision.offer_type, decision.discount_pct)
        seen = (key, offer, now.date())
        if _first_time(self._offers_shown, seen):
            shown = {"offers_shown": ((offer, segment),)}
            self._in_background(
                self._store_shown(
                    request, key, now, remembered=self._offers_shown, seen=seen, shown=shown
                )
            )

    async def _store_shown(
        self,
        request: PersonalizationRequest,
        key: str,
        now: datetime,
        *,
        remembered: set[Any],
        seen: Any,
        shown: dict[str, Any],
    ) -> None:
        """Store what an action showed (an experiment's arm, an offer), dated when it
        decided: its outcomes come after. ``shown`` holds the :class:`ChatWrite` field."""
        context = request.context
        stored = await self.chat_writer.write(
            ChatWrite(
                key,
                (),
                now,
                channel=context.channel,
                device=context.device,
                location=context.location,
                **shown,
            ),
            linger=True,  # in the background of the answer
        )
        if stored is None:
            # The store did not take it: let the customer's next turn try again.
            remembered.discard(seen)
            return
        for experiment, arm in shown.get("exposures", ()):
            count_exposure(experiment, arm)

    def _expose(
        self,
        request: PersonalizationRequest,
        key: str,
        rules: RuleSet,
        decision: Decision,
        *,
        used: frozenset[str],
        now: datetime,
    ) -> None:
        """Record, once per customer and in the background, that an action used the
        outputs ``used`` of ``decision``'s experiment, if that experiment varies them."""
        experiment = experiment_named(rules.experiments, decision.experiment)
        if experiment is None or decision.arm is None or request.conversation is None:
            return
        if not experiment.used_by(used):
            return
        seen = (experiment.name, key)
        if _first_time(self._exposed, seen):
            shown = {"exposures": ((experiment.name, decision.arm),)}
            self._in_background(
                self._store_shown(
                    request, key, now, remembered=self._exposed, seen=seen, shown=shown
                )
            )

    async def _moved(self, request: PersonalizationRequest) -> bool:
        """Whether an unknown customer was found under a former secret's key and moved.

        Only for an id the conversation may act on: an unverified claim moves nobody.
        """
        identity = request.identity
        if self._unverified_claim(identity):
            return False
        try:
            return await self._guarded(
                rekey_on_miss(self.store.sessions, self.settings, identity.external_id)
            )
        except StoreUnavailableError:
            return False

    def _unverified_claim(self, identity: CustomerIdentity) -> bool:
        """A ``user_id`` claim nobody proved while proof is required: never written for."""
        return (
            self.settings.identity_secret is not None
            and identity.is_claim
            and not identity.verified
        )

    async def session_counts(self, request: PersonalizationRequest) -> SessionCounts | None:
        """The conversation's counters (None outside a conversation)."""
        if request.conversation is None:
            return None
        return await self.session_counters.read(request.conversation.sender_id)

    async def recommend(
        self,
        request: PersonalizationRequest,
        *,
        category: str | None = None,
        n: int | None = None,
        shown: frozenset[str] = frozenset(),
        category_asked: bool = False,
    ) -> SlotPlan:
        """Recommendation slots for this customer, through the fallback chain.

        The decision rules' price cap and strategy apply. With the store down, the
        resources already in memory (catalogue, popularity, model) still answer.

        In a conversation, the products shown (and, with ``category_asked``, the category
        the request was narrowed to) are recorded as chat-side events in the background.
        """
        category = bounded_text(category) if category is not None else None
        ask, items = await self._recommendation_request(
            request, category=category, n=n or self.settings.recommend_count, shown=shown
        )
        try:
            answer = await asyncio.wait_for(
                self.recommendations.recommend(ask, items), timeout=self.settings.action_budget_s
            )
        except (asyncio.TimeoutError, StoreUnavailableError):
            return recommendation_plan(None, category)
        if request.conversation is not None:
            skus = [p.sku for p in answer.products]
            asked = answer.category if category_asked else None
            self._in_background(
                self._record_shown(request, request.conversation, skus, category=asked)
            )
        return recommendation_plan(answer, answer.category)

    async def _recommendation_request(
        self,
        request: PersonalizationRequest,
        *,
        category: str | None,
        n: int,
        shown: frozenset[str] = frozenset(),
    ) -> tuple[RecommendationRequest, CustomerItems | None]:
        """What the recommendations for this customer must respect (the rules' price cap
        and strategy, their segment, tags and history as their consent allows), and their
        items; an exposure to an experiment that varies those is recorded."""
        now = self._clock()
        key = self.key_for(request.identity)
        (snapshot, items), session = await asyncio.gather(
            self._customer_context(key, now), self.session_counts(request)
        )
        default = self.settings.consent_default
        rules = self.rules.current()
        _, decision = await self._decided(
            key,
            rules,
            lambda unit: decide(
                snapshot,
                now,
                request.context,
                rules,
                session=session,
                consent_default=default,
                experiment_unit=unit,
            ),
        )
        if decision.experiment is not None:
            self._expose(request, key, rules, decision, used=RECOMMENDATION_OUTPUTS, now=now)
        if not allows(snapshot, PERSONALIZATION, default):
            # Recommended as to a visitor: no history, no model row, no tags.
            snapshot, items, key = None, None, ANONYMOUS_KEY
        ask = RecommendationRequest(
            customer_key=key,
            segment=segment_of(snapshot, now) if snapshot else "new_visitor",
            tags=tuple(tag.tag for tag in snapshot.tags) if snapshot else (),
            favorite_category=snapshot.metrics.favorite_category if snapshot else None,
            category=category,
            max_price=decision.max_price,
            strategy=decision.recommendation_strategy,
            n=n,
            shown=shown,
            exclude_purchased=self.settings.recommend_exclude_purchased,
            now=now,
        )
        return ask, items

    async def _customer_context(
        self, key: str, now: datetime
    ) -> tuple[CustomerSnapshot | None, CustomerItems | None]:
        """Snapshot and items; the precomputed list from Redis when configured, in parallel.

        A cached snapshot saves the snapshot's reads: only the items come from SQL then.
        """
        cache = self.precomputed_cache
        since = now - RECENT_WINDOW
        # The history the serving model has not seen yet comes in the same read.
        history = self.recommendations.history_query(key)

        async def items_of(known: CustomerSnapshot) -> CustomerItems | None:
            if not allows(known, PERSONALIZATION, self.settings.consent_default):
                return None  # their history may not be used: it is not read either
            inline = self._inline_items(known.customer_id, since, cache is None, history)
            if inline is not NOT_INLINE:
                return inline
            try:
                return await self._guarded(
                    self.store.load_customer_items(
                        known.customer_id, since, with_precomputed=cache is None, history=history
                    )
                )
            except StoreUnavailableError:
                return None

        async def from_sql() -> tuple[CustomerSnapshot | None, CustomerItems | None]:
            inline = self._inline_snapshot(key)
            if inline is not NOT_INLINE:
                return inline, (await items_of(inline) if inline is not None else None)
            lookup = await self.profile_cache.lookup(key) if self.profile_cache else None
            if isinstance(lookup, CachedProfile):
                if lookup.snapshot is None:
                    return None, None
                return lookup.snapshot, await items_of(lookup.snapshot)
            try:
                snapshot, items = await self._guarded(
                    self.store.load_customer_context(
                        key, since, with_precomputed=cache is None, history=history
                    )
                )
            except StoreUnavailableError as error:
                count_defaults(store_failure_reason(error))
                return None, None
            if isinstance(lookup, ProfileTicket):
                self._write_back(lookup, snapshot)
            return snapshot, items

        if cache is None:
            return await from_sql()
        (snapshot, items), cached = await asyncio.gather(from_sql(), cache.read(key))
        if items is not None and cached is not None:
            items = replace(items, precomputed=cached[0], precomputed_version=cached[1])
        return snapshot, items

    async def categories(self) -> list[CategoryCount]:
        """The catalogue's categories, most in-stock products first; empty if unavailable.

        Read from the recommendation resources already in memory (no query per call).
        """
        try:
            resources = await asyncio.wait_for(
                self.recommendations.resources(), timeout=self.settings.action_budget_s
            )
        except (asyncio.TimeoutError, StoreUnavailableError):
            return []
        return [CategoryCount(name, count) for name, count in resources.in_stock_by_category]

    async def similar(
        self, product_text: str, n: int = 3, *, request: PersonalizationRequest | None = None
    ) -> SlotPlan:
        """Slots for "something like X": products like the one the customer names, or,
        when the decision rules choose ``bought_together`` for this customer, products
        often bought with it first (see ``RecommendationService.similar``).

        With a ``request``, the rules' strategy and price cap and the customer's filters
        apply (as their consent allows), and in a conversation the products shown are
        recorded (background). Without one, products like X by content only.
        ``product_text`` is read up to :data:`~rasa_personalize.text.MAX_TEXT_LENGTH`
        characters, without control characters.
        """
        product_text = bounded_text(product_text) or ""
        if request is None:
            ask, items = RecommendationRequest(customer_key=ANONYMOUS_KEY, n=n), None
        else:
            ask, items = await self._recommendation_request(request, category=None, n=n)
        try:
            answer = await asyncio.wait_for(
                self.recommendations.similar(product_text, ask, items),
                timeout=self.settings.action_budget_s,
            )
        except (asyncio.TimeoutError, StoreUnavailableError, NotFoundError):
            return recommendation_plan(None, None)
        if request is not None and request.conversation is not None:
            skus = [p.sku for p in answer.products]
            self._in_background(self._record_shown(request, request.conversation, skus))
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
        The answer counts once in the conversation's accepted/rejected counter. Returns
        how many interactions were new.
        """
        # The skus come from a slot the caller controls: a page shows a handful, and
        # thousands would overflow a statement's parameters (SQLite allows 32,766).
        skus = skus[:MAX_LIST_ITEMS]
        if not skus:
            return 0
        value = 1.0 if liked else -1.0
        events = [
            ChatInteraction(f"{event_prefix}-{sku}", "feedback", sku=sku, value=value)
            for sku in skus
        ]
        new = await self._store_chat_events(request, events)
        if request.conversation is not None and (new is None or new):
            counter = "recommendations_accepted" if liked else "recommendations_rejected"
            await self.session_counters.add(request.conversation.sender_id, **{counter: 1})
        return len(new or ())

    async def _record_shown(
        self,
        request: PersonalizationRequest,
        conversation: ConversationRef,
        skus: list[str],
        *,
        category: str | None = None,
    ) -> None:
        """Store "shown" per product (and "category_asked"), then count them."""
        prefix = conversation.event_prefix()
        events = [ChatInteraction(f"{prefix}-shown-{sku}", "shown", sku=sku) for sku in skus]
        if category:
            events.append(
                ChatInteraction(f"{prefix}-category", "category_asked", category=category)
            )
        if not events:
            return
        new = await self._store_chat_events(request, events, linger=True)
        # With the store down nothing is known to be a repeat: count what was shown.
        shown = [e for e in events if e.kind == "shown" and (new is None or e.event_id in new)]
        asked = [
            e for e in events if e.kind == "category_asked" and (new is None or e.event_id in new)
        ]
        await self.session_counters.add(
            conversation.sender_id,
            recommendations_shown=len(shown),
            categories_asked=len(asked),
        )

    async def _store_chat_events(
        self,
        request: PersonalizationRequest,
        events: list[ChatInteraction],
        *,
        linger: bool = False,
    ) -> set[str] | None:
        """Store chat events; the new event ids, or None when the store is unavailable.

        ``linger``: the caller runs in the background, so the write may join a later
        transaction (see ``ChatEventWriter``).

        New rows may create the customer, so their cached profile is invalidated after
        the commit. With an identity secret, nothing is stored for an unverified
        ``user_id`` claim (none are new).
        """
        identity = request.identity
        if self._unverified_claim(identity):
            # resolve_customer never gives this; an identity built by hand could. Writing
            # would let an unproven claim shape another customer's profile.
            logger.warning("Chat events for an unverified customer id were not stored.")
            return set()
        key = self.key_for(identity)
        context = request.context
        # Stored with other conversations' events in one transaction (group commit);
        # without tracking consent, or after an erasure, nothing is (and none are new).
        new = await self.chat_writer.write(
            ChatWrite(
                key,
                events,
                self._clock(),
                channel=context.channel,
                device=context.device,
                location=context.location,
            ),
            linger=linger,
        )
        if new and self.profile_cache is not None:
            await self.profile_cache.invalidate([key])
        return new

    async def record_chat_consent(
        self,
        request: PersonalizationRequest,
        *,
        grant: tuple[str, ...] = (),
        deny: tuple[str, ...] = (),
    ) -> bool:
        """Store what the customer said about their data in the conversation.

        Source ``chat``, audited with the chat as actor. Returns False when nothing could
        be stored: an unverified ``user_id`` claim (nobody may speak for another
        customer), or a store that is unavailable.
        """
        if self._unverified_claim(request.identity):
            return False
        key = self.key_for(request.identity)
        change = ConsentRequest(grant=grant, deny=deny, policy_version=None)

        async def write() -> frozenset[str]:
            async with self.store.sessions.begin() as session:
                await record_consent(
                    session,
                    key,
                    change,
                    source="chat",
                    actor=Actor.chat(),
                    now=self._clock(),
                    default_policy_version=self.settings.consent_policy_version,
                )
                # A merged customer's profile is cached under each of their keys.
                return await keys_of_person(session, key)

        try:
            keys = await self._guarded(write())
        except StoreUnavailableError:
            return False
        if self.profile_cache is not None:
            await self.profile_cache.invalidate(sorted(keys))
        return True

    async def record_chat_interest(self, request: PersonalizationRequest, category: str) -> bool:
        """Store a catalogue category the customer says they shop for as their interest
        (:meth:`record_chat_preference`, a like); whether it is stored."""
        return (await self.record_chat_preference(request, category, liked=True)).stored

    async def record_chat_preference(
        self, request: PersonalizationRequest, category: str, *, liked: bool
    ) -> ChatPreference:
        """Store a catalogue category the customer says they like (tag
        ``interested_in_<category>``) or do not want (``not_interested_in_<category>``),
        source ``chat``; their opposite tag for that category goes, whatever its source.

        ``category`` is read as recommendations read it ("running shoes" is running,
        "electronic" electronics). Stored only for a customer's own id (never an anonymous
        visitor, whose words stay in the conversation, nor a ``user_id`` claim unproven
        while an identity secret requires proof) whose answers allow personalization. In a
        conversation a like is first stored as a ``category_asked`` chat event (as
        ``action_recommend_products`` does for the same message, so once), which brings a
        customer who is not in the store yet into it, with tracking consent only; a
        dislike is no sign of interest, so it is stored only for a customer already known.
        """
        identity = request.identity
        known = frozenset(found.name for found in await self.categories())
        if not known:
            return ChatPreference("not_stored")  # the catalogue cannot be read now
        resolved = resolve_category(bounded_text(category), known)
        tag = preference_tag(resolved, liked=liked) if resolved else None
        if resolved is None or tag is None:
            return ChatPreference("unknown_category")
        if not identity.is_claim or self._unverified_claim(identity):
            return ChatPreference("needs_login", resolved)
        if liked and request.conversation is not None:
            prefix = request.conversation.event_prefix()
            asked = ChatInteraction(f"{prefix}-category", "category_asked", category=resolved)
            new = await self._store_chat_events(request, [asked])
            if new:
                sender = request.conversation.sender_id
                await self.session_counters.add(sender, categories_asked=1)
        opposite = preference_tag(resolved, liked=not liked)
        stored = await self._write_chat_tag(
            self.key_for(identity), tag, removes=(opposite,) if opposite else ()
        )
        return ChatPreference("stored" if stored else "not_stored", resolved)

    async def _write_chat_tag(self, key: str, tag: str, *, removes: tuple[str, ...]) -> bool:
        """Give a known customer whose answers allow personalization ``tag`` (source
        ``chat``) instead of ``removes``, and drop the profile cached under each of their
        keys; whether it was written."""
        try:
            snapshot = await self._load_snapshot(key)
        except StoreUnavailableError:
            return False
        if snapshot is None or not allows(snapshot, PERSONALIZATION, self.settings.consent_default):
            return False
        customer_id = snapshot.customer_id

        async def write() -> frozenset[str]:
            async with self.store.sessions.begin() as session:
                await set_customer_tag(
                    session, customer_id, tag, source="chat", now=self._clock(), removes=removes
                )
                # A merged customer's profile is cached under each of their keys.
                return await keys_of_person(session, key)

        try:
            keys = await self._guarded(write())
        except StoreUnavailableError:
            return False
        if self.profile_cache is not None:
            await self.profile_cache.invalidate(sorted(keys))
        return True

    async def data_summary(self, request: PersonalizationRequest) -> str:
        """What the store holds about the customer, as a sentence (never contacts)."""
        try:
            snapshot = await self._load_snapshot(self.key_for(request.identity))
        except StoreUnavailableError:
            return "I can't look that up right now, sorry."
        if snapshot is None:
            return "I don't have anything stored about you."
        now = self._clock()
        tags = ", ".join(tag.tag.replace("_", " ") for tag in snapshot.tags) or "none"
        favourite = snapshot.metrics.favorite_category or "none yet"
        return (
            f"Your loyalty tier is {snapshot.loyalty_tier}, your segment is "
            f"{segment_of(snapshot, now).replace('_', ' ')}, your tags are {tags}, your "
            f"favourite category is {favourite}, and I have "
            f"{snapshot.metrics.interaction_count} interactions of yours on record."
        )

    async def erase_from_chat(self, request: PersonalizationRequest) -> ErasureReceipt | None:
        """Erase the customer who asks, everywhere; None unless their identity is verified.

        Only a verified customer: erasure cannot be undone, so an anonymous visitor or an
        unproven claim never erases anyone.

        Raises:
            StoreUnavailableError: the store failed part way: the tombstones and the batches
                already committed stay (the customer cannot come back through late events);
                asking again finishes the erasure.
        """
        if not request.identity.verified:
            return None
        key = self.key_for(request.identity)
        try:
            return await erase_with_settings(
                self.settings, self.store.sessions, key, actor=Actor.chat(), now=self._clock()
            )
        except DatabaseError as error:
            raise StoreUnavailableError("the erasure could not reach the store") from error

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` without making the answer wait; :meth:`drain` awaits it.

        For chat-side events and cache write-backs. Each is bounded (store breaker and
        action budget, Redis breaker) and handles its own outages, so a task never
        outlives a shutdown by more than one budget.
        """
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A bug, not an outage (those are handled inside): log it, never raise it.
            logger.error("A background write failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the background writes in flight (each bounded by a budget)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def ping_redis(self, timeout_s: float = 1.0) -> None:
        """PING the profile cache's Redis directly (readiness probes).

        Outside the breaker on purpose: a probe must report Redis as it is now, not as
        the breaker last saw it, and its failure must not pause the hot path's use.

        Raises:
            RedisUnavailableError: no Redis is configured, or it failed to answer in time
                (the cause is the driver's error).
        """
        if self._redis is None:
            raise RedisUnavailableError("no Redis is configured")
        # Only a configured Redis gets here, so the extra is installed.
        from redis.exceptions import RedisError  # noqa: PLC0415

        try:
            await asyncio.wait_for(self._redis.ping(), timeout=timeout_s)
        except (asyncio.TimeoutError, RedisError, OSError) as error:
            raise RedisUnavailableError("Redis did not answer PING") from error

    async def warm_up(self) -> None:
        """Load what recommending (and choosing offers) needs before the first customer asks."""
        await self.recommendations.warm_up()
        rules = self.rules.current()
        if rules.chooses_offers:
            await self.offer_models.get_async()
        self.allocation.current(rules)  # starts the weights' refresher if an experiment adapts

    async def _load_snapshot(self, key: str) -> CustomerSnapshot | None:
        """Through the profile cache when configured; SQL answers a miss or a Redis outage.

        Raises:
            StoreUnavailableError: not cached, and the store cannot answer.
        """
        inline = self._inline_snapshot(key)
        if inline is not NOT_INLINE:
            return inline
        lookup = await self.profile_cache.lookup(key) if self.profile_cache else None
        if isinstance(lookup, CachedProfile):
            return lookup.snapshot
        snapshot = await self._guarded(self.store.load_snapshot(key))
        if isinstance(lookup, ProfileTicket):
            self._write_back(lookup, snapshot)
        return snapshot

    def _inline_snapshot(self, key: str) -> CustomerSnapshot | NotInline | None:
        """A SQLite file's answer on this thread (faster than Redis or a thread hop), or
        :data:`NOT_INLINE`: no inline reader, SQLite busy, or the store breaker open."""
        if time.monotonic() < self._store_down_until:
            return NOT_INLINE
        return self.store.inline_snapshot(key)

    def _inline_items(
        self,
        customer_id: int,
        since: datetime,
        with_precomputed: bool,
        history: HistoryQuery | None,
    ) -> CustomerItems | NotInline:
        """A SQLite file's answer on this thread, as :meth:`_inline_snapshot`: without the
        budget's timer, which a read that cannot wait has no use for."""
        if time.monotonic() < self._store_down_until:
            return NOT_INLINE
        return self.store.inline_items(
            customer_id, since, with_precomputed=with_precomputed, history=history
        )

    def _write_back(self, ticket: ProfileTicket, snapshot: CustomerSnapshot | None) -> None:
        """Cache a SQL answer without making the answer wait for Redis (three round trips).

        Safe at any later time: the version check drops it if the customer changed.
        """
        cache = self.profile_cache
        if cache is None:
            return

        async def write() -> None:
            await cache.store(ticket, snapshot)

        self._in_background(write())

    async def _load_snapshot_or_error(
        self, key: str
    ) -> CustomerSnapshot | StoreUnavailableError | None:
        try:
            return await self._load_snapshot(key)
        except StoreUnavailableError as error:
            return error

    async def _guarded(self, work: Awaitable[T]) -> T:
        """Await store work within the action budget, through the breaker.

        Only an outage (timeout, connection or server failure) opens the breaker; an
        error caused by this request's values fails this request alone.
        """
        if time.monotonic() < self._store_down_until:
            if inspect.iscoroutine(work):
                work.close()  # never started: nothing to wait for
            raise StoreUnavailableError("store marked unavailable; retrying later")
        try:
            result = await asyncio.wait_for(work, timeout=self.settings.action_budget_s)
        except (asyncio.TimeoutError, DatabaseError, OSError) as error:
            if not is_outage(error):
                # One request's data (a value the database refuses, a duplicate): that
                # request answers defaults, everyone else's go on being personalized.
                logger.warning(
                    "A store call failed on this request's data (%s); answering defaults.",
                    type(error).__name__,
                )
                raise StoreUnavailableError("store refused this request") from error
            self._mark_store_down(error)
            raise StoreUnavailableError("store unavailable") from error
        if self._store_down:
            self._store_down = False
            breaker_changed("store", self, is_open=False)
            logger.info("The store answers again; personalization is back on.")
        return result

    def _mark_store_down(self, error: BaseException) -> None:
        self._store_down_until = time.monotonic() + self.settings.store_retry_after_s
        if not self._store_down:
            breaker_changed("store", self, is_open=True)
            # The error's class only: its message may quote SQL parameters (customer keys).
            logger.warning(
                "The store is unavailable (%s); answering default slots for %.0f s.",
                type(error).__name__,
                self.settings.store_retry_after_s,
            )
        self._store_down = True

    async def close(self) -> None:
        """Finish the chat-side writes in flight, then release store and cache connections."""
        await self.allocation.close()
        await self.drain()
        if self.precomputed_cache is not None:
            await self.precomputed_cache.close()
        if self.change_feed is not None:
            await self.change_feed.close()
        if self._redis is not None:
            await self._redis.aclose()
        await self.store.dispose()
