"""The demo shop's own action, tested as a user tests theirs: with rasa_personalize.testing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.catalogue import ActionListCategories, category_sentence
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action
from tests.conftest import make_settings
from tests.factories import add_product


@pytest.fixture
async def shop(sqlite_store: SqlStore, sqlite_url: str) -> AsyncIterator[PersonalizationService]:
    """Three running products, two kitchen ones (one sold out), one book."""
    async with sqlite_store.sessions.begin() as session:
        for n in range(3):
            await add_product(session, f"RUN-{n}", "running")
        await add_product(session, "KIT-1", "kitchen")
        await add_product(session, "KIT-2", "kitchen", in_stock=False)
        await add_product(session, "BOOK-1", "books")
    service = PersonalizationService(make_settings(sqlite_url), sqlite_store)
    install_service(service)
    await service.warm_up()  # as the server does at start, so the budget is not spent here
    yield service
    await shutdown_service()


@pytest.mark.parametrize(
    ("names", "sentence"),
    [
        ([], ""),  # nothing to say
        (["running"], "running"),  # one needs no "and"
        (["running", "books"], "running and books"),
        (["running", "kitchen", "books"], "running, kitchen and books"),
    ],
)
def test_category_sentence(names: list[str], sentence: str) -> None:
    """Categories read as an English list."""
    assert category_sentence(names) == sentence


async def test_names_the_categories_with_most_products_in_stock_first(
    shop: PersonalizationService,
) -> None:
    """ "What do you sell?" names in-stock categories, largest first, and sets no slot."""
    dispatcher = CollectingDispatcher()
    events = await run_action(ActionListCategories(), make_tracker(), dispatcher=dispatcher)
    assert events == []
    assert [m["response"] for m in dispatcher.messages] == ["utter_list_categories"]
    # kitchen and books have one in-stock product each: ties read alphabetically.
    assert dispatcher.messages[0]["categories"] == "running, books and kitchen"


async def test_apologises_when_the_catalogue_cannot_be_read() -> None:
    """A store that is down: the apology response, not an error."""
    down = make_settings("sqlite:////nonexistent-folder/store.db")
    install_service(PersonalizationService(down))
    try:
        dispatcher = CollectingDispatcher()
        events = await run_action(ActionListCategories(), make_tracker(), dispatcher=dispatcher)
    finally:
        await shutdown_service()
    assert events == []
    assert [m["response"] for m in dispatcher.messages] == ["utter_categories_unavailable"]
