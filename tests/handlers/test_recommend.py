"""Recommendation actions over trackers: entities, slots, and what reaches the engine."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from rasa_personalize.engine import ConversationRef
from rasa_personalize.handlers.recommend import (
    ActionRecommendProducts,
    ActionRecordRecommendationFeedback,
    ActionSimilarProducts,
    shown_skus,
)
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.slots import SlotPlan
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from tests.conftest import make_settings


class RecordingService:
    """Stands in for the engine and records what the actions ask of it."""

    def __init__(self) -> None:
        # No identity secret: the actions take user ids as sent, as before verification.
        self.settings = make_settings("sqlite:///unused.db")
        self.calls: list[tuple[str, Any]] = []

        self.requests: list[Any] = []
        self.category_asked: list[bool] = []
        self.event_prefixes: list[str] = []

    async def recommend(
        self, request: Any, *, category: str | None = None, category_asked: bool = False
    ) -> SlotPlan:
        self.calls.append(("recommend", category))
        self.requests.append(request)
        self.category_asked.append(category_asked)
        return SlotPlan({"recommended_products": [], "recommendation_source": "popular"})

    async def similar(self, product: str, *, request: Any = None) -> SlotPlan:
        self.calls.append(("similar", product))
        self.requests.append(request)
        return SlotPlan({"recommended_products": []})

    async def record_feedback(self, request: Any, skus: list[str], **kwargs: Any) -> int:
        self.calls.append(("feedback", (skus, kwargs["liked"])))
        self.event_prefixes.append(kwargs["event_prefix"])
        return len(skus)

    async def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
async def engine() -> Any:
    service = RecordingService()
    install_service(service)  # type: ignore[arg-type]
    yield service
    await shutdown_service()


def tracker_with(text: str, intent: str, entities: list[dict[str, Any]], **slots: Any) -> Any:
    return make_tracker(
        events=[user_message(text, intent, entities=entities, metadata={"user_id": "u"})],
        slots=slots,
    )


@pytest.mark.parametrize(
    ("text", "intent", "entities", "slot", "expected", "asked"),
    [
        # the entity wins, and asking for it counts as asking
        ("show me Books", "recommend", [{"entity": "category", "value": "Books"}], None,
         "books", True),
        # no entity: the category slot from an earlier turn (asked back then, not now)
        ("what else?", "recommend", [], "kitchen", "kitchen", False),
        # ask_category without an entity: the words go to the engine to resolve
        ("do you sell running shoes?", "ask_category", [], None,
         "do you sell running shoes?", True),
    ],
)  # fmt: skip
async def test_recommend_passes_the_category(
    engine: RecordingService,
    text: str,
    intent: str,
    entities: list[dict[str, Any]],
    slot: str | None,
    expected: str,
    asked: bool,
) -> None:
    """The asked category reaches the engine from entity, slot or words; only this
    message's own category counts as asked."""
    tracker = tracker_with(text, intent, entities, category=slot)
    events = await run_action(ActionRecommendProducts(), tracker)
    assert engine.calls == [("recommend", expected)]
    assert engine.category_asked == [asked]
    assert slots_from_events(events)["recommendation_source"] == "popular"


async def test_requests_name_the_conversation_and_message(engine: RecordingService) -> None:
    """The engine gets the sender id and message id it keys counters and event ids by."""
    tracker = make_tracker(
        sender_id="conversation-7",
        events=[user_message("books", "recommend", metadata={"user_id": "u"})],
    )
    await run_action(ActionRecommendProducts(), tracker)
    assert engine.requests[0].conversation == ConversationRef("conversation-7", "m-1")
    assert engine.requests[0].identity.external_id == "u"


async def test_similar_uses_the_product_entity(engine: RecordingService) -> None:
    """'Something like the X' sends X to the engine."""
    tracker = tracker_with(
        "something like the trail shoes",
        "ask_similar",
        [{"entity": "product", "value": "trail shoes"}],
    )
    await run_action(ActionSimilarProducts(), tracker)
    assert engine.calls == [("similar", "trail shoes")]
    # the request goes along, so that the products shown are recorded
    assert engine.requests[0].conversation.message_id == "m-1"


async def test_feedback_records_the_shown_skus(engine: RecordingService) -> None:
    """A deny after recommendations stores -1 for each shown product."""
    shown = [
        {"sku": "SKU-1", "title": "A", "price": 1.0},
        {"sku": "SKU-2", "title": "B", "price": 2.0},
    ]
    tracker = tracker_with("no", "deny", [], recommended_products=shown)
    events = await run_action(ActionRecordRecommendationFeedback(), tracker)
    assert events == []
    assert engine.calls == [("feedback", (["SKU-1", "SKU-2"], False))]
    # the same event ids as before chat-side events existed: stored rows stay deduplicated
    digest = hashlib.sha256(b"default|m-1").hexdigest()[:24]
    assert engine.event_prefixes == [f"chat-{digest}"]


@pytest.mark.parametrize(
    "slot_value",
    [None, "not a list", [{"title": "no sku"}], [42]],  # odd slot values from a channel
)
def test_shown_skus_ignores_malformed_slot_values(slot_value: Any) -> None:
    """Malformed recommended_products never crash the feedback action."""
    assert shown_skus(make_tracker(slots={"recommended_products": slot_value})) == []
