"""PersonalizationService: known, unknown, and a store that is down, slow or back."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy import text

from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import (
    PersonalizationRequest,
    PersonalizationService,
    default_plan,
    plan_for_snapshot,
)
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.rules import RuleBook, builtin_rules
from rasa_personalize.slots import SLOT_CONTRACT, SlotPlan
from rasa_personalize.store.migrate import upgrade
from rasa_personalize.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    PropensityRecord,
    SegmentRecord,
    TagRecord,
)
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import NOT_INLINE, SqlStore
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.factories import NOW, add_customer, add_interactions, add_product

UTC_NOON = ConversationContext(utc_offset_minutes=0)
RULES = builtin_rules()


def request(external_id: str) -> PersonalizationRequest:
    return PersonalizationRequest(CustomerIdentity(external_id, "message_metadata"), UTC_NOON)


def snapshot(**metrics: object) -> CustomerSnapshot:
    return CustomerSnapshot(
        customer_id=1,
        created_at=NOW - timedelta(days=400),
        loyalty_tier="silver",
        demographics=Demographics(),
        attributes={},
        metrics=ProfileMetrics(**metrics),  # type: ignore[arg-type]
        profile_version=1,
        tags=(),
        segment=None,
    )


def test_plan_for_a_bargain_hunter() -> None:
    """Mostly discounted purchases: price_sensitive, a 15% discount offer, whole number."""
    plan = plan_for_snapshot(
        snapshot(
            interaction_count=40,
            purchase_count=6,
            last_purchase_at=NOW - timedelta(days=3),
            discounted_purchase_share=0.8,
            favorite_category="running",
        ),
        NOW,
        UTC_NOON,
        RULES,
    )
    assert plan.values == {
        "customer_segment": "price_sensitive",
        "loyalty_tier": "silver",
        "is_returning_customer": True,
        "user_tags": [],
        "favorite_category": "running",
        "offer_type": "discount",
        "discount_pct": 15,
        "time_of_day": "afternoon",
        "personalization_consent": "unknown",
        "response_variant": None,
        "purchase_propensity": "unknown",
    }


def test_a_stored_segment_wins_over_the_archetype_rule() -> None:
    """A clustering assignment in the store is what the customer gets."""
    stored = replace(
        snapshot(interaction_count=3),
        segment=SegmentRecord("loyal", "kmeans", "v1", 0.7, NOW),
        loyalty_tier="gold",
    )
    plan = plan_for_snapshot(stored, NOW, UTC_NOON, RULES)
    assert (plan["customer_segment"], plan["offer_type"]) == ("loyal", "exclusive_access")


def test_an_unknown_tier_reads_as_none() -> None:
    """A tier outside the contract never reaches a categorical slot."""
    plan = plan_for_snapshot(replace(snapshot(), loyalty_tier="diamond"), NOW, UTC_NOON, RULES)
    assert plan["loyalty_tier"] == "none"


@pytest.mark.parametrize(
    "stored",
    [
        snapshot(),
        replace(snapshot(interaction_count=5, purchase_count=2), loyalty_tier="diamond"),
        replace(snapshot(), consent={"personalization": False}),
        replace(snapshot(), consent={"personalization": True, "marketing": False}),
        replace(
            snapshot(
                interaction_count=9,
                favorite_category="running",
                propensity={"purchase_7d": PropensityRecord(0.9, "high", "v1", NOW)},
            ),
            tags=(TagRecord("premium", "rule", 1.0, NOW),),
            segment=SegmentRecord("price_sensitive", "kmeans", "v1", 0.5, NOW),
        ),
        replace(
            snapshot(propensity={"purchase_7d": PropensityRecord(0.1, "odd-band", "v1", NOW)}),
            segment=SegmentRecord("not-a-segment", "kmeans", "v1", 0.5, NOW),
        ),
        None,
    ],
)
def test_every_decided_plan_is_in_the_slot_contract(stored: CustomerSnapshot | None) -> None:
    """decide checks only the rules' and free-form values per turn; the values it takes as
    contract values by construction (tier, consent, propensity, segment) are checked here."""
    plan = plan_for_snapshot(stored, NOW, UTC_NOON, RULES)

    assert SlotPlan(plan.values) == plan
    assert set(plan.values) == set(default_plan(NOW, UTC_NOON).values)


@pytest.mark.parametrize(
    ("offset_minutes", "expected"),
    [(0, "afternoon"), (-6 * 60, "morning"), (7 * 60, "evening"), (12 * 60, "night")],
)
def test_time_of_day_follows_the_customers_clock(offset_minutes: int, expected: str) -> None:
    """12:00 UTC is morning in Chicago and night in Auckland."""
    context = ConversationContext(utc_offset_minutes=offset_minutes)
    assert plan_for_snapshot(snapshot(), NOW, context, RULES)["time_of_day"] == expected


def test_slot_plans_refuse_values_outside_the_contract() -> None:
    """The engine cannot emit a segment the domain does not declare."""
    with pytest.raises(ValueError, match="customer_segment"):
        SlotPlan({"customer_segment": "vip"})
    assert set(SlotPlan({"loyalty_tier": "gold"}).values) <= set(SLOT_CONTRACT)


async def test_known_customer_gets_their_slots(sqlite_store: SqlStore, sqlite_url: str) -> None:
    """End to end through the real store: a gold loyal buyer."""
    async with sqlite_store.sessions.begin() as session:
        tv = await add_product(session, "SKU-EL-1", "electronics", price=900.0)
        ada = await add_customer(session, "ada", tier="gold", tags=("premium",))
        await add_interactions(session, ada, tv, "purchase", 6, days_ago=5)
        await rebuild_profile_metrics(session, now=NOW)
    service = PersonalizationService(make_settings(sqlite_url), sqlite_store, clock=lambda: NOW)

    plan = await service.personalize(request("ada"))

    assert plan["customer_segment"] == "loyal"
    assert plan["loyalty_tier"] == "gold"
    assert plan["is_returning_customer"] is True
    assert plan["user_tags"] == ["premium"]
    assert plan["favorite_category"] == "electronics"
    assert plan["offer_type"] == "exclusive_access"


async def test_unknown_customer_gets_new_visitor_defaults(
    sqlite_store: SqlStore, sqlite_url: str
) -> None:
    """Nobody in the store by that id: new_visitor, no tier, no offer."""
    service = PersonalizationService(make_settings(sqlite_url), sqlite_store, clock=lambda: NOW)
    plan = await service.personalize(request("stranger"))
    assert plan["customer_segment"] == "new_visitor"
    assert plan["loyalty_tier"] == "none"
    assert plan["is_returning_customer"] is False
    assert plan["offer_type"] == "none"


async def test_unreachable_store_answers_defaults_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that cannot be opened: defaults, one warning, no personal data in it."""
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'store.db'}"
    service = PersonalizationService(make_settings(url, store_retry_after_s=60.0))
    with caplog.at_level(logging.WARNING):
        first = await service.personalize(request("demo-loyal"))
        second = await service.personalize(request("demo-loyal"))
    await service.close()

    assert first["customer_segment"] == second["customer_segment"] == "new_visitor"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "store is unavailable" in warnings[0].getMessage()
    assert "demo-loyal" not in caplog.text
    assert service.key_for(CustomerIdentity("demo-loyal", "sender_id")) not in caplog.text


async def test_service_recovers_when_the_store_comes_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The breaker reopens by itself: once the store exists, customers are known again."""
    folder = tmp_path / "later"
    url = f"sqlite:///{folder / 'store.db'}"
    service = PersonalizationService(make_settings(url), clock=lambda: NOW)
    assert (await service.personalize(request("ada")))["loyalty_tier"] == "none"

    folder.mkdir()
    await asyncio.to_thread(upgrade, url)
    async with service.store.sessions.begin() as session:
        await add_customer(session, "ada", tier="platinum")
    with caplog.at_level(logging.INFO):
        plan = await service.personalize(request("ada"))
    await service.close()

    assert plan["loyalty_tier"] == "platinum"
    assert "answers again" in caplog.text


class SlowStore(SqlStore):
    """A store whose reads take longer than any action may wait."""

    async def load_snapshot(self, customer_key: str) -> CustomerSnapshot | None:
        await asyncio.sleep(30)
        return None


async def test_slow_store_is_cut_off_at_the_action_budget(sqlite_url: str) -> None:
    """A store that hangs costs the action at most its budget."""
    settings = make_settings(sqlite_url, action_budget_s=0.2)
    service = PersonalizationService(settings, SlowStore(sqlite_url))
    loop = asyncio.get_running_loop()
    started = loop.time()
    plan = await service.personalize(request("ada"))
    elapsed = loop.time() - started
    await service.close()
    assert plan["customer_segment"] == "new_visitor"
    assert elapsed < 5  # far below the store's 30 s; the exact budget is not a test matter


@pytest.mark.postgres
async def test_locked_postgres_table_hits_the_statement_timeout(postgres_url: str) -> None:
    """A real PostgreSQL lock: the statement timeout ends the wait and defaults answer."""
    holder = await migrated_store(postgres_url)
    settings = make_settings(
        postgres_url, store_statement_timeout_s=0.3, action_budget_s=5.0, store_retry_after_s=60
    )
    service = PersonalizationService(settings)
    try:
        async with holder.engine.connect() as locker:
            await locker.execute(text("BEGIN"))
            await locker.execute(text("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE"))
            plan = await service.personalize(request("ada"))
            await locker.rollback()
    finally:
        await service.close()
        await holder.dispose()
    assert plan["customer_segment"] == "new_visitor"


async def test_refused_postgres_connection_answers_defaults() -> None:
    """Nothing listens on the port: connection refused is a store outage, not a crash."""
    settings = make_settings("postgresql://postgres@127.0.0.1:1/none", store_connect_timeout_s=0.5)
    service = PersonalizationService(settings)
    plan = await service.personalize(request("ada"))
    await service.close()
    assert plan["customer_segment"] == "new_visitor"


async def test_rule_file_edits_reach_the_next_request(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """A running service picks up an edited rule file without a restart."""
    async with sqlite_store.sessions.begin() as session:
        tv = await add_product(session, "SKU-EL-1", "electronics", price=900.0)
        ada = await add_customer(session, "ada", tier="gold")
        await add_interactions(session, ada, tv, "purchase", 6, days_ago=5)
        await rebuild_profile_metrics(session, now=NOW)
    rules_file = tmp_path / "personalization.yml"
    rules_file.write_text(
        "rules:\n  - name: loyal\n    when: {segment: loyal}\n    then: {offer_type: bundle}\n"
    )
    ticks = iter(range(1000))
    book = RuleBook(rules_file, check_every_s=1.0, clock=lambda: float(next(ticks)))
    service = PersonalizationService(
        make_settings(sqlite_url), sqlite_store, clock=lambda: NOW, rules=book
    )
    before = await service.personalize(request("ada"))
    rules_file.write_text(
        "rules:\n  - name: loyal\n    when: {segment: loyal}\n"
        "    then: {offer_type: discount, discount_pct: 20}\n"
    )
    after = await service.personalize(request("ada"))
    assert (before["offer_type"], before["discount_pct"]) == ("bundle", 0)
    assert (after["offer_type"], after["discount_pct"]) == ("discount", 20)


def _data_error() -> Exception:
    # What the driver raises for a value the database refuses (NUL, a too-long text).
    return sqlalchemy_exc.DataError("SELECT 1", {}, ValueError("invalid byte sequence"))


def _connection_refused() -> Exception:
    return sqlalchemy_exc.OperationalError("SELECT 1", {}, OSError("connection refused"))


@pytest.mark.parametrize(
    ("failure", "next_tier"),
    [
        # a value one request carried: that request gets defaults, the next one is served
        (_data_error, "gold"),
        # the store cannot answer anyone: the breaker opens and the next one waits it out
        (_connection_refused, "none"),
    ],
)
async def test_only_an_outage_opens_the_store_breaker(
    sqlite_store: SqlStore,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
    failure: Any,
    next_tier: str,
) -> None:
    """A data error fails its own request alone; an operational error opens the breaker."""
    async with sqlite_store.sessions.begin() as session:
        await add_customer(session, "ada", tier="gold")
    settings = make_settings(sqlite_url, store_retry_after_s=60.0)
    service = PersonalizationService(settings, sqlite_store, clock=lambda: NOW)
    real_load = sqlite_store.load_snapshot

    async def failing_load(customer_key: str) -> CustomerSnapshot | None:
        raise failure()

    monkeypatch.setattr(sqlite_store, "load_snapshot", failing_load)
    # The failure is staged on the threaded read: no inline read may answer first.
    monkeypatch.setattr(sqlite_store, "inline_snapshot", lambda customer_key: NOT_INLINE)
    failed = await service.personalize(request("ada"))
    monkeypatch.setattr(sqlite_store, "load_snapshot", real_load)
    following = await service.personalize(request("ada"))
    await service.close()

    assert failed["loyalty_tier"] == "none"
    assert following["loyalty_tier"] == next_tier


async def test_a_customer_under_a_former_secret_is_found_and_moved(
    sqlite_store: SqlStore, sqlite_url: str
) -> None:
    """After the secret changed: the first conversation finds them, the next one directly."""
    async with sqlite_store.sessions.begin() as session:
        await add_customer(session, "ada", tier="gold")  # keyed under TEST_SECRET
    settings = make_settings(
        sqlite_url,
        secret_key="a-new-secret-for-customer-keys-0123456789",
        previous_secret_keys=TEST_SECRET,
    )
    service = PersonalizationService(settings, sqlite_store, clock=lambda: NOW)

    first = await service.personalize(request("ada"))
    moved = await sqlite_store.load_snapshot(customer_key(settings.secret_key, "ada"))
    await service.close()

    assert first["loyalty_tier"] == "gold"
    assert moved is not None
    assert moved.loyalty_tier == "gold"
    assert await sqlite_store.load_snapshot(customer_key(TEST_SECRET, "ada")) is None


@pytest.mark.parametrize("hour", [3, 9, 15, 21])
def test_the_defaults_are_in_the_slot_contract(hour: int) -> None:
    """default_plan skips the per-turn check: its values are checked here instead."""
    plan = default_plan(NOW.replace(hour=hour), UTC_NOON)

    assert SlotPlan(plan.values) == plan
    assert set(plan.values) >= {"customer_segment", "loyalty_tier", "personalization_consent"}
