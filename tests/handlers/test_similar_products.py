""" "More like this" through the action: the card's button payload, the rules' strategy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rasa_sdk import Tracker

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers.recommend import ActionSimilarProducts, product_cards
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from tests.recommend.test_similar import TRAIL, bundle_shop


@pytest.fixture
async def shop(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[PersonalizationService]:
    service = await bundle_shop(sqlite_store, sqlite_url, tmp_path)
    install_service(service)
    yield service
    await shutdown_service()


def clicked_more_like_this(title: str, user_id: str) -> Tracker:
    """The tracker after a click on a card's button: Rasa parses the payload
    ``/ask_similar{"product": ...}`` into the intent and its entity."""
    button = product_cards([{"sku": "X", "title": title, "price": 1.0}])["payload"]["elements"][0]
    payload = button["buttons"][0]["payload"]
    intent, _, entities = payload.removeprefix("/").partition("{")
    product = json.loads("{" + entities)["product"]
    return make_tracker(
        events=[
            user_message(
                payload,
                intent,
                entities=[{"entity": "product", "value": product}],
                metadata={"user_id": user_id},
            )
        ]
    )


@pytest.mark.parametrize(
    ("user_id", "first", "source", "reason"),
    [
        # the rules choose bought_together: X's strongest partner in stock
        (
            "bundler",
            "BOTTLE",
            "bought_together",
            f"because they are often bought together with {TRAIL}",
        ),
        # no rule for this shopper: products like X (equally like it: the lower sku first)
        ("browser", "SHOE-RACE", "content", f"because they are like {TRAIL}"),
    ],
)
async def test_more_like_this_follows_the_rules_strategy(
    shop: PersonalizationService, user_id: str, first: str, source: str, reason: str
) -> None:
    """The button names X by its title; the answer depends on the shopper's strategy."""
    events = await run_action(ActionSimilarProducts(), clicked_more_like_this(TRAIL, user_id))
    slots = slots_from_events(events)

    assert slots["recommended_products"][0]["sku"] == first
    assert TRAIL not in [p["title"] for p in slots["recommended_products"]]
    assert (slots["recommendation_source"], slots["recommendation_reason"]) == (source, reason)
