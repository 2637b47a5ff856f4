"""The new visitor's answer to "what are you shopping for?", remembered through the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import select

from actions.interests import ActionRememberInterest
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers import ActionRefreshPersonalization
from rasa_personalize.identity import customer_key, sign_user_id
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import Customer, CustomerTag, Interaction
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer, add_product

IDENTITY_SECRET = "identity-secret-for-interest-tests"


async def start(store: SqlStore, database_url: str, **settings: Any) -> PersonalizationService:
    """A service over a shop with running and kitchen products, installed and warm."""
    service = PersonalizationService(
        make_settings(database_url, **settings), store, clock=lambda: NOW
    )
    install_service(service)
    await service.warm_up()
    return service


@pytest.fixture
async def shop(store: SqlStore) -> AsyncIterator[SqlStore]:
    """Two running products and a kitchen one; demo-new is known, with no history."""
    async with store.sessions.begin() as session:
        await add_product(session, "RUN-1", "running")
        await add_product(session, "RUN-2", "running")
        await add_product(session, "KIT-1", "kitchen")
        await add_customer(session, "demo-new")
    yield store
    await shutdown_service()


def answer(
    text: str = "running shoes",
    entity: str | None = "running",
    metadata: dict[str, Any] | None = None,
    **slots: Any,
) -> Any:
    """The customer's answer to utter_ask_shopping_interest, as ask_category."""
    entities = [{"entity": "category", "value": entity}] if entity else []
    message = user_message(text, "ask_category", entities=entities, metadata=metadata or {})
    return make_tracker(sender_id="conversation-7", events=[message], slots=slots)


async def tags_of(store: SqlStore, external_id: str) -> list[tuple[str, str]]:
    """(tag, source) of a customer's tags."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(CustomerTag.tag, CustomerTag.source)
            .join(Customer, Customer.id == CustomerTag.customer_id)
            .where(Customer.customer_key == customer_key(TEST_SECRET, external_id))
        )
        return sorted((tag, source) for tag, source in rows.all())


async def remember(tracker: Any) -> CollectingDispatcher:
    dispatcher = CollectingDispatcher()
    assert await run_action(ActionRememberInterest(), tracker, dispatcher=dispatcher) == []
    return dispatcher


async def test_a_known_customers_answer_becomes_their_interest_tag(
    shop: SqlStore, database_url: str
) -> None:
    """Stored as interested_in_running (source chat), said back, and in their next slots."""
    await start(shop, database_url)
    tracker = answer(metadata={"user_id": "demo-new"})

    dispatcher = await remember(tracker)

    assert await tags_of(shop, "demo-new") == [("interested_in_running", "chat")]
    assert [(m["response"], m["category"]) for m in dispatcher.messages] == [
        ("utter_interest_saved", "running")
    ]
    slots = slots_from_events(await run_action(ActionRefreshPersonalization(), tracker))
    assert slots["user_tags"] == ["interested_in_running"]


async def test_a_customer_not_yet_in_the_store_is_added_with_the_interest(
    shop: SqlStore, database_url: str
) -> None:
    """A signed-in first-timer: the category asked brings them in, then the tag."""
    await start(shop, database_url)

    await remember(answer("something for the kitchen", "kitchen", {"user_id": "first-timer"}))

    assert await tags_of(shop, "first-timer") == [("interested_in_kitchen", "chat")]
    async with shop.sessions() as session:
        kinds = (await session.scalars(select(Interaction.kind))).all()
    assert kinds == ["category_asked"]


async def test_the_same_answer_twice_keeps_one_tag(shop: SqlStore, database_url: str) -> None:
    """A retried call (same message) stores the tag and the category asked once."""
    await start(shop, database_url)
    tracker = answer(metadata={"user_id": "demo-new"})

    await remember(tracker)
    await remember(tracker)

    assert await tags_of(shop, "demo-new") == [("interested_in_running", "chat")]
    async with shop.sessions() as session:
        asked = (await session.scalars(select(Interaction.event_id))).all()
    assert len(asked) == 1


@pytest.mark.parametrize(
    ("metadata", "identity_secret"),
    [
        # an anonymous visitor: the answer stays in the conversation's category slot
        ({}, None),
        # a claim without its user_hash while proof is required: nobody's tag is written
        ({"user_id": "demo-new"}, IDENTITY_SECRET),
        # a claim with a wrong user_hash
        ({"user_id": "demo-new", "user_hash": "0" * 64}, IDENTITY_SECRET),
    ],
)
async def test_nothing_is_stored_for_anyone_but_a_customer_proven_as_themselves(
    shop: SqlStore, database_url: str, metadata: dict[str, str], identity_secret: str | None
) -> None:
    """No tag, no customer created, and the bot does not claim to remember."""
    await start(shop, database_url, identity_secret=identity_secret)

    dispatcher = await remember(answer(metadata=metadata))

    assert await tags_of(shop, "demo-new") == []
    assert dispatcher.messages == []
    async with shop.sessions() as session:
        assert (await session.scalars(select(CustomerTag.tag))).all() == []


async def test_a_signed_customer_is_stored_when_proof_is_required(
    shop: SqlStore, database_url: str
) -> None:
    """The user_hash the shop's server signs is proof enough."""
    await start(shop, database_url, identity_secret=IDENTITY_SECRET)
    signed = {"user_id": "demo-new", "user_hash": sign_user_id(IDENTITY_SECRET, "demo-new")}

    await remember(answer(metadata=signed))

    assert await tags_of(shop, "demo-new") == [("interested_in_running", "chat")]


@pytest.mark.parametrize(
    ("decisions", "consent_default"),
    [
        # the customer said no to personalization: their profile gets nothing new
        ({"personalization": False}, "granted"),
        # no answer, and the shop's default is no
        ({}, "denied"),
    ],
)
async def test_no_interest_is_stored_without_personalization_consent(
    shop: SqlStore, database_url: str, decisions: dict[str, bool], consent_default: str
) -> None:
    """Without consent to personalize, nothing is added to the profile."""
    if decisions:
        async with shop.sessions.begin() as session:
            await set_consent(
                session,
                customer_key(TEST_SECRET, "demo-new"),
                decisions,
                source="cli",
                policy_version=None,
                now=NOW,
            )
    await start(shop, database_url, consent_default=consent_default)

    dispatcher = await remember(answer(metadata={"user_id": "demo-new"}))

    assert await tags_of(shop, "demo-new") == []
    assert dispatcher.messages == []


@pytest.mark.parametrize(
    ("category", "slots"),
    [
        # a category the catalogue does not have is no interest to store
        ("spaceships", {}),
        # no category in the answer, none in the conversation: nothing to remember
        (None, {}),
    ],
)
async def test_an_answer_without_a_catalogue_category_stores_nothing(
    shop: SqlStore, database_url: str, category: str | None, slots: dict[str, Any]
) -> None:
    """No tag and no message."""
    await start(shop, database_url)

    dispatcher = await remember(answer("hmm", category, {"user_id": "demo-new"}, **slots))

    assert await tags_of(shop, "demo-new") == []
    assert dispatcher.messages == []


async def test_the_category_slot_answers_when_the_message_names_none(
    shop: SqlStore, database_url: str
) -> None:
    """NLU filled the slot but gave no entity this time: the slot's category is stored."""
    await start(shop, database_url)

    await remember(answer("that one", None, {"user_id": "demo-new"}, category="Kitchen"))

    assert await tags_of(shop, "demo-new") == [("interested_in_kitchen", "chat")]
