"""Session start and mid-conversation refresh of the customer's slots."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecuted, EventType, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from rasa_personalize.handlers.base import PersonalizingAction, slot_events
from rasa_personalize.slots import SlotPlan

SESSION_METADATA_SLOT = "session_started_metadata"


def _carries_over_slots(domain: DomainDict | None) -> bool:
    # rasa-sdk passes None when Rasa sent no domain; Rasa's default is to carry over.
    session_config: Any = (domain or {}).get("session_config") or {}
    return bool(session_config.get("carry_over_slots_to_new_session", True))


class ActionSessionStart(PersonalizingAction):
    """Rasa's default session start (carried-over slots, then listen) plus profile slots.

    To add a shop's own session-start logic, subclass this in your actions package and
    override :meth:`extra_session_events`; your subclass then serves
    ``action_session_start`` in place of this one.
    """

    at_session_start = True

    def name(self) -> str:
        """The Rasa default action this replaces."""
        return "action_session_start"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """SessionStarted, carried-over slots, the customer's slots, then action_listen."""
        plan = await self.personalize(tracker)
        events: list[EventType] = [SessionStarted()]
        if _carries_over_slots(domain):
            events.extend(
                SlotSet(name, value)
                for name, value in tracker.current_slot_values().items()
                if value is not None and name not in plan.values and name != SESSION_METADATA_SLOT
            )
        # SessionStarted resets the slots; keep the new session's metadata like Rasa does.
        metadata = tracker.get_slot(SESSION_METADATA_SLOT)
        if metadata:
            events.append(SlotSet(SESSION_METADATA_SLOT, metadata))
        events.extend(slot_events(plan))
        events.extend(await self.extra_session_events(dispatcher, tracker, domain, plan))
        events.append(ActionExecuted("action_listen"))
        return events

    async def extra_session_events(
        self,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
        plan: SlotPlan,
    ) -> list[EventType]:
        """A subclass's own events, after the customer's slots and before action_listen.

        Args:
            dispatcher: to send messages at session start.
            tracker: the conversation, as rasa-sdk passes it to ``run``.
            domain: the assistant's domain.
            plan: the customer's slots, as set at this session start.

        Returns:
            Events to add (none by default).
        """
        return []


class ActionRefreshPersonalization(PersonalizingAction):
    """Re-read the customer's profile mid-conversation and set the same slots."""

    def name(self) -> str:
        """Name used in the domain and stories."""
        return "action_refresh_personalization"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """The customer's slots, as at session start."""
        return slot_events(await self.personalize(tracker))
