"""What a new visitor says they are shopping for, remembered as their interest."""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from rasa_personalize.handlers import request_from_tracker
from rasa_personalize.handlers.recommend import latest_entity
from rasa_personalize.runtime import personalization_service
from rasa_personalize.text import bounded_text

logger = logging.getLogger(__name__)


class ActionRememberInterest(Action):
    """Store the category named in answer to ``utter_ask_shopping_interest``.

    A signed-in customer's answer becomes their interest tag (``interested_in_<category>``,
    through the plugin's engine), and only then the bot says so (``utter_interest_saved``).
    An anonymous visitor's answer stays in the conversation's ``category`` slot, which the
    next recommendations follow.
    """

    def name(self) -> str:
        """Name used in the domain and rules."""
        return "action_remember_interest"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """No events; ``utter_interest_saved`` when the interest was stored."""
        category = latest_entity(tracker, "category") or bounded_text(tracker.get_slot("category"))
        if not category:
            return []
        try:
            stored = await personalization_service().record_chat_interest(
                request_from_tracker(tracker, at_session_start=False), category.lower()
            )
        except Exception:
            # The conversation goes on without it; the traceback carries no tracker content.
            logger.exception("action_remember_interest failed; the interest is not stored")
            stored = False
        if stored:
            dispatcher.utter_message(response="utter_interest_saved", category=category.lower())
        return []
