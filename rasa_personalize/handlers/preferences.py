"""What a shopper likes and does not want: "I love running", "stop showing me kitchen stuff".

A verified customer's words become tags of their profile (source ``chat``) through
:meth:`~rasa_personalize.engine.PersonalizationService.record_chat_preference`, which the
recommendations and the decision rules then follow. An anonymous visitor's are not
stored, and the response says so.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import ClassVar, Final

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from rasa_personalize.handlers.base import request_from_tracker
from rasa_personalize.handlers.recommend import latest_entity
from rasa_personalize.preferences import ChatPreference, PreferenceStatus
from rasa_personalize.recommend.service import resolve_category
from rasa_personalize.responses import (
    DISLIKE_SAVED,
    LIKE_SAVED,
    PREFERENCE_NEEDS_LOGIN,
    PREFERENCE_NOT_SAVED,
    PREFERENCE_UNKNOWN_CATEGORY,
)
from rasa_personalize.runtime import personalization_service
from rasa_personalize.text import bounded_text

logger = logging.getLogger(__name__)

# The slot (and entity) the category is read from; set only where the domain declares it.
CATEGORY_SLOT: Final = "category"

# What the bot says when the preference was not stored, by the engine's reason.
NOT_STORED_RESPONSES: Final[dict[PreferenceStatus, str]] = {
    "needs_login": PREFERENCE_NEEDS_LOGIN,
    "not_stored": PREFERENCE_NOT_SAVED,
    "unknown_category": PREFERENCE_UNKNOWN_CATEGORY,
}


class CategoryPreferenceAction(Action, ABC):
    """Store the category the latest message names (entity ``category``, else the slot)
    as a like or a dislike, and say what became of it.

    Abstract, so rasa-sdk does not register it; :class:`ActionLikeCategory` and
    :class:`ActionDislikeCategory` are the actions.
    """

    liked: ClassVar[bool]
    saved_response: ClassVar[str]

    @abstractmethod
    def name(self) -> str:
        """The action's name in the domain."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """The saved response (filled with ``{category}``), or why it was not saved; the
        ``category`` slot events of :meth:`category_events`."""
        words = latest_entity(tracker, CATEGORY_SLOT) or bounded_text(
            tracker.get_slot(CATEGORY_SLOT)
        )
        if not words:
            dispatcher.utter_message(response=PREFERENCE_UNKNOWN_CATEGORY)
            return []
        try:
            outcome = await personalization_service().record_chat_preference(
                request_from_tracker(tracker, at_session_start=False),
                words.lower(),
                liked=self.liked,
            )
        except Exception:
            # The conversation goes on; the traceback carries no tracker content.
            logger.exception("%s failed; the preference is not stored", self.name())
            outcome = ChatPreference("not_stored")
        response = self.saved_response if outcome.stored else NOT_STORED_RESPONSES[outcome.status]
        if outcome.category is None:
            dispatcher.utter_message(response=response)
            return []
        dispatcher.utter_message(response=response, category=outcome.category)
        if CATEGORY_SLOT not in domain.get("slots", {}):
            return []  # a domain without the slot: Rasa would log an error for it
        return self.category_events(tracker, outcome.category)

    @abstractmethod
    def category_events(self, tracker: Tracker, category: str) -> list[EventType]:
        """The ``category`` slot after the shopper spoke of the catalogue's ``category``."""


class ActionLikeCategory(CategoryPreferenceAction):
    """ "I love running": the tag ``interested_in_running`` (and no longer
    ``not_interested_in_running``); the ``category`` slot becomes the liked category, so
    the next recommendations in this conversation follow it, signed in or not."""

    liked = True
    saved_response = LIKE_SAVED

    def name(self) -> str:
        """The action's name in the domain."""
        return "action_like_category"

    def category_events(self, tracker: Tracker, category: str) -> list[EventType]:
        """``category`` set to the liked one."""
        return [SlotSet(CATEGORY_SLOT, category)]


class ActionDislikeCategory(CategoryPreferenceAction):
    """ "Stop showing me kitchen stuff": the tag ``not_interested_in_kitchen`` (and no
    longer ``interested_in_kitchen``), which keeps kitchen products out of every
    recommendation unless the shopper asks for kitchen. The ``category`` slot is cleared
    when it holds the disliked category (NLU may just have filled it from these words)."""

    liked = False
    saved_response = DISLIKE_SAVED

    def name(self) -> str:
        """The action's name in the domain."""
        return "action_dislike_category"

    def category_events(self, tracker: Tracker, category: str) -> list[EventType]:
        """``category`` cleared if it means the disliked category; else nothing."""
        current = bounded_text(tracker.get_slot(CATEGORY_SLOT))
        if current and resolve_category(current, frozenset({category})) == category:
            return [SlotSet(CATEGORY_SLOT, None)]
        return []
