"""Hostile trackers: oversized slots and control characters never switch personalization off.

On SQLite and PostgreSQL: one request's bad data costs at most that request, never the
store breaker, so the next customer is personalized as usual.
"""

from __future__ import annotations

from sqlalchemy import select

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers.recommend import (
    ActionRecommendProducts,
    ActionRecordRecommendationFeedback,
)
from rasa_personalize.handlers.session import ActionRefreshPersonalization
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from rasa_personalize.text import MAX_LIST_ITEMS

SENDER = "conversation-0666"


async def loyal_slots() -> dict[str, object]:
    """The next request: demo-loyal's slots, as any other conversation would get them."""
    events = await run_action(ActionRefreshPersonalization(), make_tracker(user_id="demo-loyal"))
    return slots_from_events(events)


async def test_forty_thousand_shown_skus_store_fifty_and_keep_the_breaker_closed(
    service: PersonalizationService, store: SqlStore
) -> None:
    """A slot with 40,000 skus (past SQLite's variable limit) is read up to 50 items."""
    shown = [{"sku": "SKU-EL-1", "title": "TV", "price": 900.0}] + [
        {"sku": f"SKU-X-{n}", "title": "x", "price": 1.0} for n in range(40_000)
    ]
    tracker = make_tracker(
        sender_id=SENDER,
        events=[user_message("yes", "affirm", metadata={"user_id": "demo-loyal"})],
        slots={"recommended_products": shown},
    )

    events = await run_action(ActionRecordRecommendationFeedback(), tracker)

    assert events == []
    assert MAX_LIST_ITEMS == 50
    async with store.sessions() as session:
        kinds = (await session.scalars(select(Interaction.kind))).all()
    # The one known sku of the first fifty is stored; the breaker stayed closed.
    assert kinds.count("feedback") == 1
    assert service._store_down is False
    slots = await loyal_slots()
    assert (slots["loyalty_tier"], slots["customer_segment"]) == ("gold", "loyal")


async def test_nul_in_device_and_location_is_stripped_and_served(
    service: PersonalizationService, store: SqlStore
) -> None:
    """NUL in metadata (refused by PostgreSQL) is stripped before anything is stored."""
    tracker = make_tracker(
        sender_id=SENDER,
        events=[
            user_message(
                "show me something",
                "recommend",
                metadata={
                    "user_id": "demo-loyal",
                    "device": "mob\x00ile",
                    "location": "Ber\x00lin",
                    "channel": "web\x00",
                },
            )
        ],
    )

    events = await run_action(ActionRecommendProducts(), tracker)
    await service.drain()

    slots = slots_from_events(events)
    assert slots["recommended_products"]
    async with store.sessions() as session:
        rows = (
            await session.execute(
                select(Interaction.channel, Interaction.device, Interaction.location).where(
                    Interaction.kind == "shown"
                )
            )
        ).all()
    assert rows
    assert set(rows) == {("web", "mobile", "Berlin")}
    assert service._store_down is False
    assert (await loyal_slots())["loyalty_tier"] == "gold"


async def test_control_characters_in_entities_and_slots_never_fail_the_shopper(
    service: PersonalizationService,
) -> None:
    """A NUL in a category entity and a megabyte category slot still get an answer."""
    tracker = make_tracker(
        sender_id=SENDER,
        events=[
            user_message(
                "electronics please",
                "recommend",
                entities=[{"entity": "category", "value": "electro\x00nics"}],
                metadata={"user_id": "someone-new"},
            )
        ],
        slots={"category": "x" * 1_000_000},
    )

    slots = slots_from_events(await run_action(ActionRecommendProducts(), tracker))

    assert [p["sku"] for p in slots["recommended_products"]] == ["SKU-EL-1"]
    assert service._store_down is False
