"""Recommendations as a card carousel on channels that draw cards, text elsewhere."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rasa_sdk.executor import CollectingDispatcher

from rasa_personalize.handlers.recommend import (
    CARD_CHANNELS,
    ActionRecommendProducts,
    ActionSimilarProducts,
    product_cards,
)
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.slots import SlotPlan
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from tests.conftest import make_settings

PRODUCTS = [
    {"sku": "RUN-1", "title": "Stride Pro Running Cap", "price": 19.5},
    {"sku": "RUN-2", "title": 'Pacer 12" Trail Shoes', "price": 120},
]


class FixedAnswers:
    """Stands in for the engine: the same products for every question."""

    def __init__(self, products: list[dict[str, Any]]) -> None:
        self.settings = make_settings("sqlite:///unused.db")
        self.plan = SlotPlan(
            {
                "recommended_products": products,
                "recommendation_text": "Here are my picks.",
                "recommendation_reason": "because you asked" if products else None,
                "recommendation_source": "content" if products else None,
            }
        )

    async def recommend(self, request: Any, **kwargs: Any) -> SlotPlan:
        return self.plan

    async def similar(self, product: str, **kwargs: Any) -> SlotPlan:
        return self.plan

    async def close(self) -> None:
        """Nothing to release."""


@pytest.fixture
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[FixedAnswers]:
    service = FixedAnswers(getattr(request, "param", PRODUCTS))
    install_service(service)  # type: ignore[arg-type]
    yield service
    await shutdown_service()


def from_channel(channel: str, intent: str = "ask_recommendation") -> Any:
    entities = [{"entity": "product", "value": "running cap"}] if intent == "ask_similar" else []
    message = user_message("show me", intent, entities=entities, input_channel=channel)
    return make_tracker(events=[message])


def test_cards_are_the_generic_template_with_title_price_and_a_button() -> None:
    """The attachment Rasa's socket.io channel and web widgets draw as a carousel."""
    cards = product_cards(PRODUCTS)

    assert cards["type"] == "template"
    assert cards["payload"]["template_type"] == "generic"
    first, second = cards["payload"]["elements"]
    assert (first["title"], first["subtitle"]) == ("Stride Pro Running Cap", "19.50")
    assert (second["title"], second["subtitle"]) == ('Pacer 12" Trail Shoes', "120.00")
    assert first["buttons"] == [
        {
            "title": "More like this",
            "type": "postback",
            "payload": '/ask_similar{"product": "Stride Pro Running Cap"}',
        }
    ]
    assert "image_url" not in first  # the catalogue holds no images


def test_a_button_payload_is_valid_json_whatever_the_title() -> None:
    """A quote in a title cannot break the ask_similar payload Rasa parses."""
    payload = product_cards(PRODUCTS)["payload"]["elements"][1]["buttons"][0]["payload"]

    assert payload.startswith("/ask_similar{")
    assert json.loads(payload.removeprefix("/ask_similar")) == {"product": 'Pacer 12" Trail Shoes'}


def test_a_product_without_a_price_has_no_subtitle() -> None:
    """Nothing made up: a missing or non-numeric price is left out."""
    elements = product_cards([{"sku": "X-1", "title": "Mystery"}, {"sku": "X-2", "price": True}])[
        "payload"
    ]["elements"]

    assert [e.get("subtitle") for e in elements] == [None, None]
    assert elements[1]["title"] == "X-2"  # no title: the sku names the card


@pytest.mark.parametrize("action", [ActionRecommendProducts(), ActionSimilarProducts()])
@pytest.mark.parametrize(
    ("channel", "cards"),
    [
        ("socketio", 1),  # Rasa's socket.io channel: the widget draws the carousel
        ("rest", 0),  # REST, and every other channel: the spoken list only
        ("facebook", 0),
    ],
)
async def test_cards_go_only_to_channels_that_draw_them(
    engine: FixedAnswers, action: Any, channel: str, cards: int
) -> None:
    """One attachment message on a card channel; the slots are the same on every channel."""
    dispatcher = CollectingDispatcher()
    intent = "ask_similar" if isinstance(action, ActionSimilarProducts) else "ask_recommendation"

    events = await run_action(action, from_channel(channel, intent), dispatcher=dispatcher)

    attachments = [m["attachment"] for m in dispatcher.messages if m.get("attachment")]
    assert attachments == [product_cards(PRODUCTS)] * cards
    assert len(dispatcher.messages) == cards
    assert slots_from_events(events)["recommended_products"] == PRODUCTS


@pytest.mark.parametrize("engine", [[]], indirect=True)
async def test_nothing_to_show_sends_no_empty_carousel(engine: FixedAnswers) -> None:
    """No products: no attachment, even on a card channel."""
    dispatcher = CollectingDispatcher()

    await run_action(ActionRecommendProducts(), from_channel("socketio"), dispatcher=dispatcher)

    assert dispatcher.messages == []


async def test_a_shop_chooses_its_own_card_channels(
    engine: FixedAnswers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """card_channels (a subclass's to set): cards over REST for a shop's own front end."""
    monkeypatch.setattr(ActionRecommendProducts, "card_channels", CARD_CHANNELS | {"rest"})
    dispatcher = CollectingDispatcher()

    await run_action(ActionRecommendProducts(), from_channel("rest"), dispatcher=dispatcher)

    assert [m["attachment"] for m in dispatcher.messages] == [product_cards(PRODUCTS)]
