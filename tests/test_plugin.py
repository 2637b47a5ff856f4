"""Installing the plugin on a rasa-sdk app: registration, same-name rule, idempotence."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from rasa_sdk import Action
from rasa_sdk.endpoint import create_app
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic

from rasa_personalize.errors import PluginError
from rasa_personalize.handlers import ActionSessionStart
from rasa_personalize.plugin import (
    _secret_key,
    install,
    plugin_action_names,
    register_plugin_actions,
)
from rasa_personalize.runtime import current_service

PLUGIN_ACTIONS = {
    "action_session_start",
    "action_refresh_personalization",
    "action_recommend_products",
    "action_similar_products",
    "action_record_recommendation_feedback",
    "action_set_consent",
    "action_data_summary",
    "action_erase_customer",
    "action_like_category",
    "action_dislike_category",
}


@pytest.fixture
def user_classes() -> Iterator[list[type[Any]]]:
    """Action classes a test defines as "the user's"; forgotten again afterwards.

    rasa-sdk finds actions by scanning every loaded Action subclass, so a class left
    behind would be served by every later test's executor.
    """
    defined: list[type[Any]] = []
    yield defined
    defined.clear()
    gc.collect()


def test_the_plugin_serves_exactly_these_actions() -> None:
    """Our actions, and not the abstract base class."""
    assert set(plugin_action_names()) == PLUGIN_ACTIONS


def test_install_finds_rasa_sdks_executor_and_registers_our_actions() -> None:
    """The executor is found in the app's routes (guards against rasa-sdk changing that)."""
    executor = ActionExecutor()
    install(create_app(executor))
    assert set(executor.actions) >= PLUGIN_ACTIONS


def test_install_twice_changes_nothing() -> None:
    """The hook and ``personalize serve`` may both install: routes are added once."""
    app = create_app(ActionExecutor())
    install(app)
    routes = len(app.router.routes)
    install(app)
    assert len(app.router.routes) == routes


def test_an_app_without_rasa_sdk_routes_is_refused() -> None:
    """Without an executor to register on, the error says how to build the app."""

    with pytest.raises(PluginError, match="create_app"):
        install(Sanic("not_rasa_sdk"))


def test_a_users_subclass_of_ours_replaces_ours_quietly(
    user_classes: list[type[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """Subclassing keeps personalization, so no warning is logged."""

    class ShopSessionStart(ActionSessionStart):
        __module__ = "actions.session"
        __qualname__ = "ShopSessionStart"

    user_classes.append(ShopSessionStart)
    executor = ActionExecutor()
    with caplog.at_level(logging.WARNING):
        replaced = register_plugin_actions(executor)
    assert replaced == {"action_session_start": "actions.session.ShopSessionStart"}
    assert isinstance(executor.actions["action_session_start"].__self__, ShopSessionStart)
    assert not caplog.records


def test_an_unrelated_user_action_of_the_same_name_wins_with_a_warning(
    user_classes: list[type[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """The name is the user's: their action serves it, and the log says ours is unused."""

    class OwnRecommendations(Action):  # type: ignore[misc]  # rasa-sdk is untyped
        __module__ = "actions.shop"

        def name(self) -> str:
            return "action_recommend_products"

        async def run(self, dispatcher: Any, tracker: Any, domain: Any) -> list[Any]:
            return [SlotSet("recommendation_text", "the shop's own")]

    user_classes.append(OwnRecommendations)
    executor = ActionExecutor()
    with caplog.at_level(logging.WARNING):
        register_plugin_actions(executor)
    assert isinstance(executor.actions["action_recommend_products"].__self__, OwnRecommendations)
    assert isinstance(executor.actions["action_session_start"].__self__, ActionSessionStart)
    assert "action_recommend_products" in caplog.text
    assert "does not personalize" in caplog.text


async def test_the_correlation_key_never_builds_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the service exists, a log line inside a conversation asks for the key: it
    comes from the settings, and no service is built (building one logs, which would ask
    for the key again, without end)."""
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", "correlation-secret-0123456789abcdef")
    assert current_service() is None
    assert _secret_key() == "correlation-secret-0123456789abcdef"
    assert current_service() is None
