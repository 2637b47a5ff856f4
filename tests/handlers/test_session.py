"""action_session_start and action_refresh_personalization over recorded trackers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rasa_sdk.events import ActionExecuted, SessionStarted, SlotSet

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers.session import ActionRefreshPersonalization, ActionSessionStart
from rasa_personalize.runtime import install_service
from rasa_personalize.slots import PROFILE_SLOTS
from rasa_personalize.testing import load_tracker, make_tracker, run_action, slots_from_events
from tests.conftest import make_settings

DATA = Path(__file__).parent.parent / "data"
CARRY_OVER = {"session_config": {"carry_over_slots_to_new_session": True}}
NO_CARRY_OVER = {"session_config": {"carry_over_slots_to_new_session": False}}


async def test_session_start_keeps_rasa_default_shape(service: PersonalizationService) -> None:
    """SessionStarted first, action_listen last, profile slots in between."""
    events = await run_action(
        ActionSessionStart(), load_tracker(DATA / "tracker_session_start.json"), CARRY_OVER
    )
    assert events[0] == SessionStarted()
    assert events[-1] == ActionExecuted("action_listen")
    assert set(PROFILE_SLOTS) <= set(slots_from_events(events))


async def test_session_start_identifies_by_session_metadata(
    service: PersonalizationService,
) -> None:
    """demo-bargain comes from session_started_metadata: price_sensitive, 15% off."""
    events = await run_action(
        ActionSessionStart(), load_tracker(DATA / "tracker_session_start.json"), CARRY_OVER
    )
    slots = slots_from_events(events)
    assert slots["customer_segment"] == "price_sensitive"
    assert slots["offer_type"] == "discount"
    assert slots["discount_pct"] == 15
    assert slots["user_tags"] == ["interested_in_running"]
    assert slots["favorite_category"] == "running"
    assert slots["is_returning_customer"] is True


async def test_session_start_carries_over_other_slots_and_the_metadata(
    service: PersonalizationService,
) -> None:
    """Slots of the last session survive; ours are recomputed, not carried over."""
    events = await run_action(
        ActionSessionStart(), load_tracker(DATA / "tracker_session_start.json"), CARRY_OVER
    )
    assert SlotSet("requested_category", "running") in events
    # the stale favourite from the last session is replaced, not repeated
    assert SlotSet("favorite_category", "books") not in events
    metadata = slots_from_events(events)["session_started_metadata"]
    assert metadata["user_id"] == "demo-bargain"


async def test_session_start_without_carry_over_sets_only_profile_slots(
    service: PersonalizationService,
) -> None:
    """With carry-over off, only our slots and the session metadata are set."""
    events = await run_action(
        ActionSessionStart(), load_tracker(DATA / "tracker_session_start.json"), NO_CARRY_OVER
    )
    assert set(slots_from_events(events)) == {*PROFILE_SLOTS, "session_started_metadata"}


async def test_refresh_mid_conversation_uses_the_latest_message(
    service: PersonalizationService,
) -> None:
    """A 30-event conversation of demo-loyal: gold, loyal, exclusive access, afternoon in Berlin."""
    events = await run_action(
        ActionRefreshPersonalization(), load_tracker(DATA / "tracker_mid_conversation.json")
    )
    assert events == [
        SlotSet("customer_segment", "loyal"),
        SlotSet("loyalty_tier", "gold"),
        SlotSet("is_returning_customer", True),
        SlotSet("user_tags", ["premium"]),
        SlotSet("favorite_category", "electronics"),
        SlotSet("offer_type", "exclusive_access"),
        SlotSet("discount_pct", 0),
        SlotSet("time_of_day", "afternoon"),
        SlotSet("personalization_consent", "unknown"),
        SlotSet("response_variant", None),
        SlotSet("purchase_propensity", "unknown"),
    ]


async def test_sender_id_only_is_an_unknown_customer(service: PersonalizationService) -> None:
    """No user_id anywhere and an unknown sender: new visitor defaults."""
    events = await run_action(
        ActionRefreshPersonalization(), load_tracker(DATA / "tracker_sender_only.json")
    )
    slots = slots_from_events(events)
    assert slots["customer_segment"] == "new_visitor"
    assert slots["loyalty_tier"] == "none"
    assert slots["offer_type"] == "none"


@pytest.mark.parametrize("sender_id", ["demo-loyal"])
async def test_sender_id_identifies_when_no_metadata(
    service: PersonalizationService, sender_id: str
) -> None:
    """Channels without metadata still personalize by sender id."""
    tracker: Any = make_tracker(sender_id=sender_id)
    slots = slots_from_events(await run_action(ActionRefreshPersonalization(), tracker))
    assert slots["loyalty_tier"] == "gold"


async def test_store_down_gives_defaults_not_an_exception(tmp_path: Path) -> None:
    """The action answers default slots when the store cannot be opened."""
    url = f"sqlite:///{tmp_path / 'gone' / 'store.db'}"
    down = PersonalizationService(make_settings(url))
    install_service(down)
    try:
        events = await run_action(
            ActionRefreshPersonalization(), make_tracker(user_id="demo-loyal")
        )
    finally:
        await down.close()
    assert slots_from_events(events)["customer_segment"] == "new_visitor"


async def test_a_bug_in_the_engine_is_logged_and_answered_with_defaults(
    service: PersonalizationService,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even an unexpected error keeps the conversation going, with the traceback logged."""

    async def broken(*_: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(service, "personalize", broken)
    events = await run_action(ActionRefreshPersonalization(), make_tracker(user_id="demo-loyal"))
    assert slots_from_events(events)["customer_segment"] == "new_visitor"
    assert "action_refresh_personalization failed" in caplog.text
    assert "demo-loyal" not in caplog.text
