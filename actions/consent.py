"""The consent question, asked once: "may I use what you look at and buy here?".

The plugin stores what a shopper says about their data when they say it in so many words
(``allow_data_use``, ``deny_data_use``, answered by ``action_set_consent``). The demo shop
also asks, once per conversation, while the answer is unknown; a plain yes or no to that
question is stored the same way.
"""

from __future__ import annotations

from typing import Any, Final

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from rasa_personalize.handlers import ActionSetConsent
from rasa_personalize.handlers.privacy import CONSENT_INTENTS

# What a yes or a no to the consent question means, as the plugin's consent intents.
ANSWER_MEANS: Final = {"affirm": "allow_data_use", "deny": "deny_data_use"}


class ActionAskConsent(Action):
    """Ask for consent and remember that it was asked (slot ``consent_asked``).

    The rules run this only while ``personalization_consent`` is unknown and
    ``consent_asked`` is unset, so a shopper who answers something else is not asked again.
    """

    def name(self) -> str:
        """Name used in the domain and rules."""
        return "action_ask_consent"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """``utter_ask_consent`` and ``consent_asked`` set."""
        dispatcher.utter_message(response="utter_ask_consent")
        return [SlotSet("consent_asked", True)]


class ActionAnswerConsent(ActionSetConsent):
    """A yes or no to ``utter_ask_consent``: stored, confirmed and applied at once, as
    "you can use my data" or "don't use my data" would be."""

    def name(self) -> str:
        """Name used in the domain and rules."""
        return "action_answer_consent"

    def consent_answer(self, tracker: Tracker) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """affirm grants what ``allow_data_use`` grants, deny denies what ``deny_data_use``
        denies; any other intent answers nothing."""
        intent = (tracker.latest_message or {}).get("intent", {}).get("name")
        meant = ANSWER_MEANS.get(intent or "")
        return CONSENT_INTENTS[meant] if meant else None
