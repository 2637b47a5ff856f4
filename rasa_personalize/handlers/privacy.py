"""What a shopper says about their data in the conversation: consent, "what do you know
about me?", and "forget me" (after an explicit yes, for a verified customer only)."""

from __future__ import annotations

import logging
from typing import Any, Final

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from rasa_personalize.clock import utc_now
from rasa_personalize.engine import default_plan
from rasa_personalize.errors import StoreUnavailableError
from rasa_personalize.handlers.base import request_from_tracker, slot_events
from rasa_personalize.privacy.consent import MARKETING, PERSONALIZATION, TRACKING
from rasa_personalize.responses import (
    CONSENT_DENIED,
    CONSENT_GRANTED,
    CONSENT_NOT_SAVED,
    DATA_SUMMARY,
    ERASURE_DONE,
    ERASURE_FAILED,
    ERASURE_NEEDS_LOGIN,
)
from rasa_personalize.runtime import personalization_service

logger = logging.getLogger(__name__)

# The intents of the demo assistant, and what each asks for: (grant, deny).
CONSENT_INTENTS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    # "stop personalizing", "don't use my data": no profile, no tracking, no offers.
    "deny_data_use": ((), (PERSONALIZATION, TRACKING, MARKETING)),
    # "you can use my data": profile and tracking; offers stay as they were.
    "allow_data_use": ((PERSONALIZATION, TRACKING), ()),
}


class ActionSetConsent(Action):
    """Store the customer's answer about their data, confirm it, and re-personalize.

    The latest intent decides (see :data:`CONSENT_INTENTS`); the profile slots are set
    again at once, so a "don't use my data" takes effect in this very conversation.
    """

    def name(self) -> str:
        """The action's name in the domain."""
        return "action_set_consent"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """Confirm with ``utter_consent_denied`` or ``utter_consent_granted``, or say it
        could not be saved (``utter_consent_not_saved``)."""
        asked = self.consent_answer(tracker)
        if asked is None:
            logger.warning("action_set_consent ran after an intent it does not know")
            dispatcher.utter_message(response=CONSENT_NOT_SAVED)
            return []
        grant, deny = asked
        service = personalization_service()
        request = request_from_tracker(tracker, at_session_start=False)
        try:
            stored = await service.record_chat_consent(request, grant=grant, deny=deny)
            plan = await service.personalize(request)
        except Exception:
            # The conversation goes on; the traceback carries no tracker content.
            logger.exception("action_set_consent failed")
            stored, plan = False, default_plan(utc_now())
        if not stored:
            dispatcher.utter_message(response=CONSENT_NOT_SAVED)
            return slot_events(plan)
        dispatcher.utter_message(response=CONSENT_DENIED if deny else CONSENT_GRANTED)
        return slot_events(plan)

    def consent_answer(self, tracker: Tracker) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """The purposes the latest message grants and denies, by its intent; None: none.

        A shop's subclass may read more, such as a yes or no to its own consent question.
        """
        intent = (tracker.latest_message or {}).get("intent", {}).get("name")
        return CONSENT_INTENTS.get(intent or "")


class ActionDataSummary(Action):
    """Answer "what do you know about me?": tier, segment, tags, favourite category and the
    number of interactions on record, never contacts (slot ``data_summary``)."""

    def name(self) -> str:
        """The action's name in the domain."""
        return "action_data_summary"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """Sets ``data_summary`` and says it with ``utter_data_summary``."""
        service = personalization_service()
        try:
            summary = await service.data_summary(
                request_from_tracker(tracker, at_session_start=False)
            )
        except Exception:
            logger.exception("action_data_summary failed")
            summary = "I can't look that up right now, sorry."
        dispatcher.utter_message(response=DATA_SUMMARY, data_summary=summary)
        return [SlotSet("data_summary", summary)]


class ActionEraseCustomer(Action):
    """Erase the customer who asked, after they said yes to ``utter_confirm_erasure``.

    Only a verified customer (a ``user_id`` signed with the identity secret) is erased;
    anyone else hears ``utter_erasure_needs_login``. Afterwards the conversation goes on
    as a new visitor's.
    """

    def name(self) -> str:
        """The action's name in the domain."""
        return "action_erase_customer"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """``utter_erasure_done``, ``utter_erasure_needs_login`` or ``utter_erasure_failed``."""
        service = personalization_service()
        request = request_from_tracker(tracker, at_session_start=False)
        try:
            receipt = await service.erase_from_chat(request)
        except StoreUnavailableError:
            dispatcher.utter_message(response=ERASURE_FAILED)
            return []
        except Exception:
            logger.exception("action_erase_customer failed")
            dispatcher.utter_message(response=ERASURE_FAILED)
            return []
        if receipt is None:
            dispatcher.utter_message(response=ERASURE_NEEDS_LOGIN)
            return []
        if not receipt.complete:
            # The SQL rows are gone; Redis or the model files were not reached.
            logger.warning("A chat erasure was incomplete: %s", ", ".join(receipt.failed))
        dispatcher.utter_message(response=ERASURE_DONE)
        events: list[Any] = slot_events(default_plan(utc_now(), request.context))
        return [*events, SlotSet("data_summary", None)]
