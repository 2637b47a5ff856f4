"""Chat-side events through the real actions and engine, on SQLite and PostgreSQL.

Recommendations shown, categories asked and yes/no answers become interactions (once per
message, whatever retries happen), feed the conversation counters, and outdate the
customer's cached profile. The actions' events stay what they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest
from sqlalchemy import select

from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.cache.counters import SessionCounts
from rasa_personalize.cache.profiles import ProfileCache, ProfileTicket, entry_key, version_key
from rasa_personalize.engine import ConversationRef, PersonalizationRequest, PersonalizationService
from rasa_personalize.handlers.recommend import (
    ActionRecommendProducts,
    ActionRecordRecommendationFeedback,
    ActionSimilarProducts,
)
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.recommend.training import train_content
from rasa_personalize.rules import RuleBook
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.models import Interaction, Product
from rasa_personalize.store.sql_store import NOT_INLINE, SqlStore
from rasa_personalize.testing import make_tracker, run_action, user_message
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_product

SENDER = "conversation-0042"


async def add_catalogue(store: SqlStore, service: PersonalizationService) -> None:
    """More products, and the content model trained on the catalogue (as `train` does)."""
    async with store.sessions.begin() as session:
        for n in range(3):
            await add_product(session, f"SKU-EL-{n + 2}", "electronics", price=100.0 + n)
        await add_product(session, "SKU-KIT-1", "kitchen", title="Chef knife")
        await add_product(session, "SKU-KIT-2", "kitchen", title="Chef knife block")
    await train_content(store, service.settings.model_dir)


def ask(
    text: str,
    intent: str,
    entities: list[dict[str, Any]] | None = None,
    *,
    message_id: str = "m-1",
    user_id: str = "demo-bargain",
    **slots: Any,
) -> Any:
    tracker = make_tracker(
        sender_id=SENDER,
        events=[
            user_message(
                text,
                intent,
                entities=entities or [],
                metadata={"user_id": user_id, "location": "Berlin", "device": "mobile"},
            )
        ],
        slots=slots,
    )
    tracker.latest_message["message_id"] = message_id
    return tracker


async def stored(store: SqlStore) -> list[tuple[str, str | None, str, float | None, Any, Any]]:
    """(event_id, sku, kind, value, category, location) of every chat-side interaction."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(
                Interaction.event_id,
                Product.sku,
                Interaction.kind,
                Interaction.value,
                Interaction.category,
                Interaction.location,
            )
            .outerjoin(Product, Product.id == Interaction.product_id)
            .where(Interaction.event_id.like("chat-%"))
            .order_by(Interaction.kind, Product.sku)
        )
        return [tuple(row) for row in rows]


ELECTRONICS = [{"entity": "category", "value": "Electronics"}]


async def test_recommendations_shown_and_the_category_asked_are_stored_once(
    service: PersonalizationService, store: SqlStore
) -> None:
    """One 'shown' per product, one 'category_asked' with the category; a retry adds none."""
    await add_catalogue(store, service)
    events = await run_action(
        ActionRecommendProducts(), ask("electronics?", "ask_category", ELECTRONICS)
    )
    await service.drain()
    rows = await stored(store)
    shown_skus = [sku for _, sku, kind, *_ in rows if kind == "shown"]
    recommended = next(e["value"] for e in events if e["name"] == "recommended_products")
    assert shown_skus == sorted(p["sku"] for p in recommended)
    assert len(shown_skus) == 3
    asked = [row for row in rows if row[2] == "category_asked"]
    assert [(sku, category) for _, sku, _, _, category, _ in asked] == [(None, "electronics")]
    assert {row[5] for row in rows} == {"Berlin"}
    # ids are hashed: neither the sender id nor the message id appears in them
    assert all(SENDER not in row[0] and "m-1" not in row[0] for row in rows)

    again = await run_action(
        ActionRecommendProducts(), ask("electronics?", "ask_category", ELECTRONICS)
    )
    await service.drain()
    assert await stored(store) == rows
    assert again == events
    assert await service.session_counters.read(SENDER) == SessionCounts(
        recommendations_shown=3, categories_asked=1
    )


async def test_the_actions_events_are_unchanged(
    service: PersonalizationService, store: SqlStore
) -> None:
    """The recommendation slots, in contract order, and nothing else (stories rely on it)."""
    await add_catalogue(store, service)
    events = await run_action(
        ActionRecommendProducts(), ask("electronics?", "ask_category", ELECTRONICS)
    )
    await service.drain()
    assert [e["name"] for e in events] == [
        "recommended_products",
        "recommendation_text",
        "recommendation_reason",
        "recommendation_source",
    ]
    assert all(e["event"] == "slot" for e in events)


async def test_a_category_from_an_earlier_turn_is_not_asked_again(
    service: PersonalizationService, store: SqlStore
) -> None:
    """'What else?' with the category slot set records the products, not a new ask."""
    await add_catalogue(store, service)
    await run_action(ActionRecommendProducts(), ask("what else?", "recommend", category="kitchen"))
    await service.drain()
    kinds = [kind for _, _, kind, *_ in await stored(store)]
    assert "category_asked" not in kinds
    assert "shown" in kinds


async def test_feedback_counts_once_per_answer(
    service: PersonalizationService, store: SqlStore
) -> None:
    """A 'no' stores -1 per shown product and counts one rejection, even when retried."""
    await add_catalogue(store, service)
    shown = [
        {"sku": "SKU-EL-2", "title": "A", "price": 1.0},
        {"sku": "SKU-EL-3", "title": "B", "price": 2.0},
    ]
    for _ in range(2):  # the second call is Rasa retrying the same message
        events = await run_action(
            ActionRecordRecommendationFeedback(),
            ask("no", "deny", message_id="m-2", recommended_products=shown),
        )
        assert events == []
    feedback = [
        (sku, value) for _, sku, kind, value, *_ in await stored(store) if kind == "feedback"
    ]
    assert feedback == [("SKU-EL-2", -1.0), ("SKU-EL-3", -1.0)]
    assert await service.session_counters.read(SENDER) == SessionCounts(recommendations_rejected=1)


async def test_similar_products_are_recorded_as_shown(
    service: PersonalizationService, store: SqlStore
) -> None:
    """'Something like the chef knife' records what it showed."""
    await add_catalogue(store, service)
    await service.warm_up()
    events = await run_action(
        ActionSimilarProducts(),
        ask("like the chef knife", "ask_similar", [{"entity": "product", "value": "Chef knife"}]),
    )
    await service.drain()
    recommended = next(e["value"] for e in events if e["name"] == "recommended_products")
    assert recommended
    shown = [sku for _, sku, kind, *_ in await stored(store) if kind == "shown"]
    assert shown == sorted(p["sku"] for p in recommended)
    assert (await service.session_counters.read(SENDER)).recommendations_shown == len(shown)


async def test_a_store_outage_never_fails_the_action(
    service: PersonalizationService, store: SqlStore
) -> None:
    """With the store breaker open the answer comes, nothing is stored, counts go on."""
    await add_catalogue(store, service)
    await service.warm_up()
    service.settings = service.settings.model_copy(update={"store_retry_after_s": 60.0})
    service._mark_store_down(OSError("test outage"))
    events = await run_action(
        ActionRecommendProducts(), ask("electronics?", "ask_category", ELECTRONICS)
    )
    await service.drain()
    recommended = next(e["value"] for e in events if e["name"] == "recommended_products")
    assert recommended  # from the resources in memory
    assert await stored(store) == []
    assert (await service.session_counters.read(SENDER)).recommendations_shown == len(recommended)


async def test_session_counts_reach_the_decision_rules(
    store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """A rule on session_recommendations_rejected changes the offer after a 'no'."""
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "version: 1\n"
        "defaults: {offer_type: none}\n"
        "rules:\n"
        "  - name: second chance\n"
        "    when: {session_recommendations_rejected: {gte: 1}}\n"
        "    then: {offer_type: free_shipping}\n",
        encoding="utf-8",
    )
    service = PersonalizationService(
        make_settings(database_url, model_dir=tmp_path / "models"),
        store,
        clock=lambda: NOW,
        rules=RuleBook(rules),
    )
    await add_catalogue(store, service)
    install_service(service)
    request = PersonalizationRequest(
        CustomerIdentity("someone", "message_metadata"), conversation=ConversationRef(SENDER)
    )
    assert (await service.personalize(request))["offer_type"] == "none"
    await run_action(
        ActionRecordRecommendationFeedback(),
        ask("no", "deny", user_id="someone", recommended_products=[{"sku": "SKU-EL-2"}]),
    )
    assert (await service.personalize(request))["offer_type"] == "free_shipping"
    # another conversation of the same customer starts from zero
    elsewhere = PersonalizationRequest(request.identity, conversation=ConversationRef("other"))
    assert (await service.personalize(elsewhere))["offer_type"] == "none"
    await shutdown_service()


async def test_chat_writes_outdate_the_cached_profile(
    service: PersonalizationService, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new customer's cached 'unknown' is invalidated once their first chat event is stored."""
    # A SQLite file is read inline, ahead of the cache: this is about the cache.
    monkeypatch.setattr(store, "inline_snapshot", lambda customer_key: NOT_INLINE)
    await add_catalogue(store, service)
    fake = fakeredis.FakeAsyncRedis()
    cache = ProfileCache(fake, ttl_s=600.0, breaker=RedisBreaker("test", timeout_s=1.0))
    service.profile_cache = cache
    key = customer_key(TEST_SECRET, "first-timer")
    newcomer = PersonalizationRequest(CustomerIdentity("first-timer", "message_metadata"))
    assert (await service.personalize(newcomer))["is_returning_customer"] is False
    await service.drain()
    assert await fake.exists(entry_key(key)) == 1  # 'not in the store', cached
    await run_action(
        ActionRecommendProducts(),
        ask("electronics?", "ask_category", ELECTRONICS, user_id="first-timer"),
    )
    await service.drain()
    assert await fake.exists(entry_key(key)) == 0
    assert await fake.get(version_key(key)) == b"1"
    lookup = await cache.lookup(key)
    assert isinstance(lookup, ProfileTicket)  # the next read goes to SQL
    assert await store.load_snapshot(key) is not None  # created by the chat event
    await fake.aclose()
