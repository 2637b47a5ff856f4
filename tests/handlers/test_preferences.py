"""'I love running', 'stop showing me running stuff': the like and dislike actions store
the preference through the engine, say what became of it, and keep the category slot
in step."""

from __future__ import annotations

from typing import Any

import pytest
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers import ActionDislikeCategory, ActionLikeCategory
from rasa_personalize.identity import customer_key
from rasa_personalize.store.models import Customer, CustomerTag
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action, user_message
from tests.conftest import TEST_SECRET

# The part of the domain Rasa sends that the actions read: is there a category slot?
DOMAIN = {"slots": {"category": {"type": "text"}}}
SIGNED_IN = {"user_id": "demo-bargain"}


def said(
    text: str,
    intent: str,
    entity: str | None,
    metadata: dict[str, str] | None = None,
    **slots: Any,
) -> Any:
    entities = [{"entity": "category", "value": entity}] if entity else []
    message = user_message(text, intent, entities=entities, metadata=metadata or {})
    return make_tracker(sender_id="conversation-9", events=[message], slots=slots)


async def run(
    action: Any, tracker: Any, domain: dict[str, Any] | None = None
) -> tuple[list[dict[str, Any]], list[tuple[str, str | None]]]:
    """The events and (response, category) of each message."""
    dispatcher = CollectingDispatcher()
    events = await run_action(action, tracker, dispatcher=dispatcher, domain=domain or DOMAIN)
    return events, [(m["response"], m.get("category")) for m in dispatcher.messages]


async def tags_of(store: SqlStore, external_id: str) -> list[tuple[str, str]]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(CustomerTag.tag, CustomerTag.source)
            .join(Customer, Customer.id == CustomerTag.customer_id)
            .where(Customer.customer_key == customer_key(TEST_SECRET, external_id))
        )
        return sorted((str(tag), str(source)) for tag, source in rows.all())


async def test_a_dislike_is_stored_confirmed_and_clears_the_category_slot(
    service: PersonalizationService, store: SqlStore
) -> None:
    """demo-bargain's running interest becomes a dislike; NLU had just filled the slot
    with running from these words, so it is cleared."""
    tracker = said(
        "stop showing me running stuff", "express_disinterest", "running", SIGNED_IN,
        category="running",
    )  # fmt: skip

    events, messages = await run(ActionDislikeCategory(), tracker)

    assert messages == [("utter_dislike_saved", "running")]
    assert events == [SlotSet("category", None)]
    assert await tags_of(store, "demo-bargain") == [("not_interested_in_running", "chat")]


async def test_a_dislike_leaves_another_category_in_the_slot(
    service: PersonalizationService, store: SqlStore
) -> None:
    """The slot holds electronics: a dislike of running does not touch it."""
    tracker = said(
        "no more running gear", "express_disinterest", "running", SIGNED_IN,
        category="electronics",
    )  # fmt: skip

    events, messages = await run(ActionDislikeCategory(), tracker)

    assert messages == [("utter_dislike_saved", "running")]
    assert events == []


async def test_a_like_is_stored_and_the_slot_follows_it(
    service: PersonalizationService, store: SqlStore
) -> None:
    """'I love gadgets' (NLU gave 'electronic'): the catalogue's electronics, stored and
    set as the conversation's category."""
    tracker = said("I love gadgets", "express_interest", "electronic", SIGNED_IN)

    events, messages = await run(ActionLikeCategory(), tracker)

    assert messages == [("utter_like_saved", "electronics")]
    assert events == [SlotSet("category", "electronics")]
    assert ("interested_in_electronics", "chat") in await tags_of(store, "demo-bargain")


async def test_the_category_slot_answers_when_the_message_names_none(
    service: PersonalizationService, store: SqlStore
) -> None:
    """'Stop showing me these' after running picks: the slot's category is disliked."""
    tracker = said(
        "stop showing me these", "express_disinterest", None, SIGNED_IN, category="running"
    )

    events, messages = await run(ActionDislikeCategory(), tracker)

    assert messages == [("utter_dislike_saved", "running")]
    assert events == [SlotSet("category", None)]


@pytest.mark.parametrize(
    ("action", "events"),
    [
        # the like still narrows this conversation's recommendations
        (ActionLikeCategory(), [SlotSet("category", "running")]),
        # the slot NLU filled from the words is cleared all the same
        (ActionDislikeCategory(), [SlotSet("category", None)]),
    ],
)
async def test_an_anonymous_visitor_hears_it_is_remembered_only_when_signed_in(
    service: PersonalizationService, store: SqlStore, action: Any, events: list[Any]
) -> None:
    """No user_id: nothing stored for anyone, and the bot says so."""
    tracker = said("running", "express_interest", "running", category="running")

    got, messages = await run(action, tracker)

    assert messages == [("utter_preference_needs_login", "running")]
    assert got == events
    async with store.sessions() as session:
        tags = await session.scalars(select(CustomerTag.tag).where(CustomerTag.source == "chat"))
        assert tags.all() == []


@pytest.mark.parametrize(
    ("entity", "slots"),
    [
        # a category the catalogue does not have
        ("spaceships", {}),
        # no category in the words or the conversation
        (None, {}),
    ],
)
async def test_no_catalogue_category_asks_again(
    service: PersonalizationService, store: SqlStore, entity: str | None, slots: dict[str, Any]
) -> None:
    """Nothing stored, no slot touched, and the bot asks which category."""
    tracker = said("no more of that", "express_disinterest", entity, SIGNED_IN, **slots)

    events, messages = await run(ActionDislikeCategory(), tracker)

    assert (events, messages) == ([], [("utter_preference_unknown_category", None)])
    assert await tags_of(store, "demo-bargain") == [("interested_in_running", "test")]


async def test_a_domain_without_the_category_slot_gets_no_slot_event(
    service: PersonalizationService, store: SqlStore
) -> None:
    """Another shop's domain: stored and said, no SlotSet for a slot Rasa does not know."""
    tracker = said("I love running", "express_interest", "running", SIGNED_IN)

    events, messages = await run(ActionLikeCategory(), tracker, domain={"slots": {}})

    assert (events, messages) == ([], [("utter_like_saved", "running")])


async def test_an_engine_failure_is_said_and_the_conversation_goes_on(
    service: PersonalizationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug below the action: logged, 'couldn't save that', no exception for Rasa."""

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "record_chat_preference", broken)
    tracker = said("I love running", "express_interest", "running", SIGNED_IN)

    events, messages = await run(ActionLikeCategory(), tracker)

    assert (events, messages) == ([], [("utter_preference_not_saved", None)])
