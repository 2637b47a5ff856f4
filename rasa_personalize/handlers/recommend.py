"""Recommendation actions: recommend, "something like X", and feedback on what was shown."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from rasa_personalize.engine import ConversationRef
from rasa_personalize.events.validation import MAX_SKU_LENGTH
from rasa_personalize.handlers.base import request_from_tracker, slot_events
from rasa_personalize.runtime import personalization_service
from rasa_personalize.slots import SlotPlan
from rasa_personalize.text import (
    MAX_LIST_ITEMS,
    MAX_TEXT_LENGTH,
    bounded_text,
    has_control_characters,
)

logger = logging.getLogger(__name__)

MAX_ENTITY_LENGTH = 128
# Input channels whose chat widgets draw a `template`/`generic` attachment as a card
# carousel: Rasa's socket.io channel hands the attachment to the widget as it is (Rasa
# Webchat draws it). Every other channel gets the spoken list in `recommendation_text`.
CARD_CHANNELS: Final = frozenset({"socketio"})
MORE_LIKE_THIS: Final = "More like this"
NO_RECOMMENDATIONS = SlotPlan(
    {
        "recommended_products": [],
        "recommendation_text": "I can't look up products right now, sorry.",
        "recommendation_reason": None,
        "recommendation_source": None,
    }
)


def latest_entity(tracker: Tracker, name: str) -> str | None:
    """The latest message's entity ``name``, cleaned, if it is plausible text.

    Control characters are stripped; a value longer than ``MAX_ENTITY_LENGTH`` is no
    product or category name and is ignored.
    """
    value = next(tracker.get_latest_entity_values(name), None)
    if isinstance(value, str) and len(value) <= MAX_TEXT_LENGTH:
        text = bounded_text(value)
        if text is not None and len(text) <= MAX_ENTITY_LENGTH:
            return text
    return None


def shown_products(tracker: Tracker) -> list[dict[str, Any]]:
    """The first ``MAX_LIST_ITEMS`` products of the ``recommended_products`` slot.

    The slot comes back from whoever calls the webhook: more items than a page shows
    are ignored rather than sent to the store.
    """
    shown: Any = tracker.get_slot("recommended_products") or []
    if not isinstance(shown, list):
        return []
    return [product for product in shown[:MAX_LIST_ITEMS] if isinstance(product, dict)]


def product_cards(products: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A carousel attachment, one card per product: title, price and a "More like this" button.

    ``products`` as the ``recommended_products`` slot carries them (``{sku, title, price}``;
    the catalogue holds no image, so cards have none). The button sends ``ask_similar`` with
    the product, as typing "something like the X" does.
    """
    elements: list[dict[str, Any]] = []
    for product in products:
        title = str(product.get("title") or product.get("sku") or "")
        element: dict[str, Any] = {"title": title}
        price = product.get("price")
        if isinstance(price, int | float) and not isinstance(price, bool):
            element["subtitle"] = f"{price:.2f}"
        similar = "/ask_similar" + json.dumps({"product": title})
        element["buttons"] = [{"title": MORE_LIKE_THIS, "type": "postback", "payload": similar}]
        elements.append(element)
    return {"type": "template", "payload": {"template_type": "generic", "elements": elements}}


def send_product_cards(
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    plan: SlotPlan,
    channels: frozenset[str] = CARD_CHANNELS,
) -> None:
    """The plan's products as a carousel, when the customer writes from a channel in
    ``channels``; nothing otherwise (``utter_recommendations`` says the list)."""
    products = plan.values.get("recommended_products")
    if products and tracker.get_latest_input_channel() in channels:
        # rasa-sdk types `attachment` as text; Rasa passes any JSON on to the channel.
        dispatcher.utter_message(**{"attachment": product_cards(products)})


def shown_skus(tracker: Tracker) -> list[str]:
    """The skus in the ``recommended_products`` slot (what the customer was last shown).

    At most ``MAX_LIST_ITEMS``; a sku that is not plausible (too long, control
    characters) is skipped.
    """
    skus: list[str] = []
    for product in shown_products(tracker):
        sku = product.get("sku")
        if (
            isinstance(sku, str)
            and 0 < len(sku) <= MAX_SKU_LENGTH
            and not has_control_characters(sku)
        ):
            skus.append(sku)
    return skus


class ActionRecommendProducts(Action):
    """Fill the recommendation slots for the customer, in the asked category if any.

    On a channel in ``card_channels`` the products are also sent as a card carousel.
    """

    card_channels: ClassVar[frozenset[str]] = CARD_CHANNELS

    def name(self) -> str:
        """Name used in the domain and stories."""
        return "action_recommend_products"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """recommended_products, recommendation_text/_reason/_source."""
        try:
            entity = latest_entity(tracker, "category")
            category = entity or bounded_text(tracker.get_slot("category"))
            message: dict[str, Any] = tracker.latest_message or {}
            asked_for_category = message.get("intent", {}).get("name") == "ask_category"
            if not category and asked_for_category:
                # NLU missed the entity: the engine finds a category named in the words
                # (the first MAX_TEXT_LENGTH characters).
                category = bounded_text(message.get("text"))
            plan = await personalization_service().recommend(
                request_from_tracker(tracker, at_session_start=False),
                category=category.lower() if isinstance(category, str) else None,
                # Only this message counts as asking: a category slot from an earlier
                # turn narrows the answer but was asked (and recorded) back then.
                category_asked=bool(entity) or asked_for_category,
            )
        except Exception:
            # A bug must not cost the conversation; the traceback carries no tracker data.
            logger.exception("%s failed; answering without recommendations", self.name())
            plan = NO_RECOMMENDATIONS
        send_product_cards(dispatcher, tracker, plan, self.card_channels)
        return slot_events(plan)


class ActionSimilarProducts(Action):
    """Answer "something like X": products similar to the one the customer names (as
    cards too on a channel in ``card_channels``)."""

    card_channels: ClassVar[frozenset[str]] = CARD_CHANNELS

    def name(self) -> str:
        """Name used in the domain and stories."""
        return "action_similar_products"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """The recommendation slots, filled with products like the named one."""
        product = latest_entity(tracker, "product")
        if product is None:
            shown = shown_products(tracker)
            product = bounded_text(shown[0].get("title")) if shown else None
        if not product:
            return slot_events(
                SlotPlan(
                    {
                        "recommended_products": [],
                        "recommendation_text": "Which product do you have in mind?",
                        "recommendation_reason": None,
                        "recommendation_source": None,
                    }
                )
            )
        try:
            plan = await personalization_service().similar(
                product, request=request_from_tracker(tracker, at_session_start=False)
            )
        except Exception:
            logger.exception("%s failed; answering without recommendations", self.name())
            plan = NO_RECOMMENDATIONS
        send_product_cards(dispatcher, tracker, plan, self.card_channels)
        return slot_events(plan)


class ActionRecordRecommendationFeedback(Action):
    """Store the customer's yes/no to the products just shown as feedback interactions."""

    def name(self) -> str:
        """Name used in the domain and stories."""
        return "action_record_recommendation_feedback"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """No events: the verdict goes to the store (affirm +1, deny -1 per product)."""
        intent = (tracker.latest_message or {}).get("intent", {}).get("name")
        skus = shown_skus(tracker)
        if intent not in {"affirm", "deny"} or not skus:
            return []
        try:
            request = request_from_tracker(tracker, at_session_start=False)
            # Stable per message (a retried call stores nothing twice), hashed.
            conversation = request.conversation or ConversationRef(tracker.sender_id)
            prefix = conversation.event_prefix()
            await personalization_service().record_feedback(
                request, skus, liked=intent == "affirm", event_prefix=prefix
            )
        except Exception:
            logger.exception("%s failed; feedback not stored", self.name())
        return []
