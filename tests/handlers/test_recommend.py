"""Recommendation actions over trackers: entities, slots, and what reaches the engine."""

from __future__ import annotations

from typing import Any

import pytest

from actions.handlers.recommend import (
    ActionRecommendProducts,
    ActionRecordRecommendationFeedback,
    ActionSimilarProducts,
    shown_skus,
)
from actions.runtime import install_service, shutdown_service
from actions.slots import SlotPlan
from actions.testing import make_tracker, run_action, slots_from_events, user_message


class RecordingService:
    """Stands in for the engine and records what the actions ask of it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def recommend(self, request: Any, *, category: str | None = None) -> SlotPlan:
        self.calls.append(("recommend", category))
        return SlotPlan({"recommended_products": [], "recommendation_source": "popular"})

    async def similar(self, product: str) -> SlotPlan:
        self.calls.append(("similar", product))
        return SlotPlan({"recommended_products": []})

    async def record_feedback(self, request: Any, skus: list[str], **kwargs: Any) -> int:
        self.calls.append(("feedback", (skus, kwargs["liked"])))
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
    ("text", "entities", "slot", "expected"),
    [
        # the entity wins
        ("show me Books", [{"entity": "category", "value": "Books"}], None, "books"),
        # no entity: the category slot from an earlier turn
        ("what else?", [], "kitchen", "kitchen"),
        # ask_category without an entity: the words go to the engine to resolve
        ("do you sell running shoes?", [], None, "do you sell running shoes?"),
    ],
)
async def test_recommend_passes_the_category(
    engine: RecordingService,
    text: str,
    entities: list[dict[str, Any]],
    slot: str | None,
    expected: str,
) -> None:
    """The asked category reaches the engine from entity, slot or words."""
    tracker = tracker_with(text, "ask_category", entities, category=slot)
    events = await run_action(ActionRecommendProducts(), tracker)
    assert engine.calls == [("recommend", expected)]
    assert slots_from_events(events)["recommendation_source"] == "popular"


async def test_similar_uses_the_product_entity(engine: RecordingService) -> None:
    """'Something like the X' sends X to the engine."""
    tracker = tracker_with(
        "something like the trail shoes",
        "ask_similar",
        [{"entity": "product", "value": "trail shoes"}],
    )
    await run_action(ActionSimilarProducts(), tracker)
    assert engine.calls == [("similar", "trail shoes")]


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


@pytest.mark.parametrize(
    "slot_value",
    [None, "not a list", [{"title": "no sku"}], [42]],  # odd slot values from a channel
)
def test_shown_skus_ignores_malformed_slot_values(slot_value: Any) -> None:
    """Malformed recommended_products never crash the feedback action."""
    assert shown_skus(make_tracker(slots={"recommended_products": slot_value})) == []
