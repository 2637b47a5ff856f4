"""The shared base of personalizing actions: tracker in, SlotPlan out, never an exception."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet

from rasa_personalize.clock import utc_now
from rasa_personalize.context import context_from_metadata
from rasa_personalize.engine import ConversationRef, PersonalizationRequest, default_plan
from rasa_personalize.identity import resolve_customer
from rasa_personalize.runtime import personalization_service
from rasa_personalize.settings import Settings
from rasa_personalize.slots import SlotPlan

logger = logging.getLogger(__name__)


def request_from_tracker(
    tracker: Tracker, *, at_session_start: bool, settings: Settings | None = None
) -> PersonalizationRequest:
    """Pull who and where out of a tracker: the only place that reads trackers for this.

    Args:
        tracker: the conversation.
        at_session_start: True inside ``action_session_start``.
        settings: whose identity secret verifies ``user_id`` claims; None (the usual case)
            takes the running service's, so a shop's own action verifies like ours.
    """
    if settings is None:
        settings = personalization_service().settings
    message: dict[str, Any] = tracker.latest_message or {}
    message_metadata = message.get("metadata")
    session_metadata = tracker.get_slot("session_started_metadata")
    identity = resolve_customer(
        sender_id=tracker.sender_id,
        latest_message_metadata=message_metadata,
        session_started_metadata=session_metadata,
        at_session_start=at_session_start,
        identity_secret=settings.identity_secret_value,
    )
    context_metadata = session_metadata if at_session_start else message_metadata
    channel = tracker.get_latest_input_channel()
    message_id = message.get("message_id")
    conversation = ConversationRef(
        tracker.sender_id, message_id if isinstance(message_id, str) else None
    )
    return PersonalizationRequest(
        identity, context_from_metadata(context_metadata, channel), conversation
    )


def slot_events(plan: SlotPlan) -> list[EventType]:
    """SlotSet events for every slot of the plan, in contract order."""
    return [SlotSet(name, value) for name, value in plan.values.items()]


class PersonalizingAction(Action, ABC):
    """Base of actions that set the profile slots. Abstract: rasa-sdk does not register it."""

    at_session_start = False

    @abstractmethod
    def name(self) -> str:
        """The action's name in the domain; abstract so this base is never registered."""

    async def personalize(self, tracker: Tracker) -> SlotPlan:
        """The customer's slot plan; defaults whatever goes wrong, with the reason logged."""
        try:
            request = request_from_tracker(tracker, at_session_start=self.at_session_start)
            return await personalization_service().personalize(request)
        except Exception:
            # Last line of defence: a bug must not cost the customer the conversation, and
            # the traceback carries no tracker content.
            logger.exception("%s failed; answering default slots", self.name())
            return default_plan(utc_now())
