"""What the shop sells: "what do you sell?" answered from the live catalogue."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher

from rasa_personalize.runtime import personalization_service

# More than this many categories reads as a list nobody listens to.
MOST_CATEGORIES = 6


def category_sentence(names: list[str]) -> str:
    """``["running", "kitchen", "books"]`` -> ``"running, kitchen and books"``."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


class ActionListCategories(Action):
    """Name the categories with the most products in stock, from the plugin's catalogue."""

    def name(self) -> str:
        """Name used in the domain and rules."""
        return "action_list_categories"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        """One message: the categories, or an apology when the catalogue cannot be read."""
        categories = await personalization_service().categories()
        if not categories:
            dispatcher.utter_message(response="utter_categories_unavailable")
            return []
        names = [category.name for category in categories[:MOST_CATEGORIES]]
        more = len(categories) - len(names)
        sentence = category_sentence(names) + (f", and {more} more" if more > 0 else "")
        dispatcher.utter_message(response="utter_list_categories", categories=sentence)
        return []
