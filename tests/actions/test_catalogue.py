"""The demo shop's own action, tested as a user tests theirs: with the plugin's test kit
(the ``personalize_store`` fixture and rasa_personalize.testing)."""

from __future__ import annotations

import pytest

from actions.catalogue import ActionListCategories, category_sentence
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.testing import ThrowawayStore, make_tracker, run_action


@pytest.fixture
async def shop(personalize_store: ThrowawayStore) -> PersonalizationService:
    """Three running products, two kitchen ones (one sold out), one book; the service
    started after them, as a server reads its catalogue at start (the store's fixture
    shuts it down)."""
    for n in range(3):
        await personalize_store.add_product(f"RUN-{n}", "running")
    await personalize_store.add_product("KIT-1", "kitchen")
    await personalize_store.add_product("KIT-2", "kitchen", in_stock=False)
    await personalize_store.add_product("BOOK-1", "books")
    return await personalize_store.start_service()


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
    run = await run_action(ActionListCategories(), make_tracker())
    assert run == []
    assert run.responses == ["utter_list_categories"]
    # kitchen and books have one in-stock product each: ties read alphabetically.
    assert run.messages[0]["categories"] == "running, books and kitchen"


async def test_apologises_when_the_catalogue_cannot_be_read(
    personalize_store: ThrowawayStore,
) -> None:
    """A store that is down: the apology response, not an error."""
    down = personalize_store.settings(database_url="sqlite:////nonexistent-folder/store.db")
    install_service(PersonalizationService(down))
    try:
        run = await run_action(ActionListCategories(), make_tracker())
    finally:
        await shutdown_service()
    assert run == []
    assert run.responses == ["utter_categories_unavailable"]
