"""The demo's consent question: asked once, and a yes or no to it stored like the plugin's
own consent intents."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.consent import ActionAnswerConsent, ActionAskConsent
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.identity import customer_key
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.models import ConsentState
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer


@pytest.fixture
async def service(sqlite_store: SqlStore, sqlite_url: str) -> AsyncIterator[SqlStore]:
    """demo-loyal, gold, who never answered; a service over them, installed."""
    async with sqlite_store.sessions.begin() as session:
        await add_customer(session, "demo-loyal", tier="gold")
    install_service(
        PersonalizationService(make_settings(sqlite_url), sqlite_store, clock=lambda: NOW)
    )
    yield sqlite_store
    await shutdown_service()


def reply(intent: str, text: str) -> object:
    return make_tracker(
        events=[user_message(text, intent, metadata={"user_id": "demo-loyal"})],
        slots={"consent_asked": True, "personalization_consent": "unknown"},
    )


async def answers(store: SqlStore) -> dict[str, bool]:
    """purpose -> granted, as stored for demo-loyal."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(ConsentState.purpose, ConsentState.granted).where(
                ConsentState.customer_key == customer_key(TEST_SECRET, "demo-loyal")
            )
        )
        return {str(purpose): bool(granted) for purpose, granted in rows.all()}


async def test_the_question_is_asked_and_marked_as_asked() -> None:
    """utter_ask_consent, and consent_asked set so that the rules ask no more."""
    dispatcher = CollectingDispatcher()

    events = await run_action(ActionAskConsent(), make_tracker(), dispatcher=dispatcher)

    assert events == [SlotSet("consent_asked", True)]
    assert [m["response"] for m in dispatcher.messages] == ["utter_ask_consent"]


@pytest.mark.parametrize(
    ("intent", "text", "stored", "response", "slot"),
    [
        # yes: what "you can use my data" grants (offers stay as they were)
        ("affirm", "yes", {"personalization": True, "tracking": True}, "utter_consent_granted",
         "granted"),
        # no: what "don't use my data" denies, offers included
        ("deny", "no", {"personalization": False, "tracking": False, "marketing": False},
         "utter_consent_denied", "denied"),
    ],
)  # fmt: skip
async def test_a_yes_or_no_is_stored_confirmed_and_applied(
    service: SqlStore,
    intent: str,
    text: str,
    stored: dict[str, bool],
    response: str,
    slot: str,
) -> None:
    """The answer is stored, confirmed, and the slots follow it at once."""
    dispatcher = CollectingDispatcher()

    events = await run_action(ActionAnswerConsent(), reply(intent, text), dispatcher=dispatcher)

    assert await answers(service) == stored
    assert [m["response"] for m in dispatcher.messages] == [response]
    slots = slots_from_events(events)
    assert slots["personalization_consent"] == slot
    assert slots["loyalty_tier"] == ("gold" if intent == "affirm" else "none")


async def test_any_other_answer_stores_nothing(service: SqlStore) -> None:
    """Another intent is no answer to the question: nothing stored, and the bot says so."""
    dispatcher = CollectingDispatcher()

    events = await run_action(ActionAnswerConsent(), reply("greet", "hello"), dispatcher=dispatcher)

    assert await answers(service) == {}
    assert events == []
    assert [m["response"] for m in dispatcher.messages] == ["utter_consent_not_saved"]
