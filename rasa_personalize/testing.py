"""Helpers to test Rasa actions without Rasa: build action calls and trackers, run actions.

Public on purpose: assistant developers can test their own actions next to ours.

    tracker = make_tracker(user_id="demo-loyal")
    events = await run_action(ActionRefreshPersonalization(), tracker)
    assert SlotSet("loyalty_tier", "gold") in events
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher


def user_message(
    text: str = "hi",
    intent: str = "greet",
    *,
    metadata: Mapping[str, Any] | None = None,
    entities: Sequence[Mapping[str, Any]] = (),
    input_channel: str = "rest",
    timestamp: float = 1_700_000_000.0,
) -> dict[str, Any]:
    """A ``user`` event as Rasa sends it in a tracker."""
    return {
        "event": "user",
        "timestamp": timestamp,
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": 0.98},
            "entities": [dict(e) for e in entities],
            "text": text,
        },
        "input_channel": input_channel,
        "metadata": dict(metadata or {}),
    }


def tracker_state(
    *,
    sender_id: str = "default",
    user_id: str | None = None,
    session_metadata: Mapping[str, Any] | None = None,
    slots: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] = (),
    message_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A tracker as Rasa serialises it in an action call.

    ``user_id`` puts the id in the latest message's metadata; ``session_metadata`` fills the
    ``session_started_metadata`` slot as Rasa does at session start.
    """
    metadata = dict(message_metadata or {})
    if user_id is not None:
        metadata["user_id"] = user_id
    all_events = [dict(e) for e in events]
    if metadata or not any(e.get("event") == "user" for e in all_events):
        all_events.append(user_message(metadata=metadata))
    latest = next(e for e in reversed(all_events) if e.get("event") == "user")
    all_slots = dict(slots or {})
    if session_metadata is not None:
        all_slots["session_started_metadata"] = dict(session_metadata)
    return {
        "sender_id": sender_id,
        "slots": all_slots,
        "latest_message": {
            "intent": latest["parse_data"]["intent"],
            "entities": latest["parse_data"]["entities"],
            "text": latest["text"],
            "message_id": "m-1",
            "metadata": latest["metadata"],
        },
        "latest_event_time": latest["timestamp"],
        "followup_action": None,
        "paused": False,
        "events": all_events,
        "latest_input_channel": latest["input_channel"],
        "active_loop": {},
        "latest_action": {"action_name": "action_listen"},
        "latest_action_name": "action_listen",
    }


def make_tracker(**kwargs: Any) -> Tracker:
    """A rasa-sdk Tracker built by :func:`tracker_state` (same keyword arguments)."""
    return Tracker.from_dict(tracker_state(**kwargs))


def load_tracker(path: str | Path) -> Tracker:
    """A Tracker from a recorded tracker JSON file (as in ``tests/data``)."""
    return Tracker.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def action_call(
    action_name: str, tracker: Mapping[str, Any], domain: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The body Rasa POSTs to the action server's ``/webhook``."""
    return {
        "next_action": action_name,
        "sender_id": tracker["sender_id"],
        "tracker": dict(tracker),
        "domain": dict(domain or {}),
        "version": "3.6.21",
    }


async def run_action(
    action: Action,
    tracker: Tracker,
    domain: Mapping[str, Any] | None = None,
    *,
    dispatcher: CollectingDispatcher | None = None,
) -> list[dict[str, Any]]:
    """Run one action as the executor would; returns its events.

    Pass a ``dispatcher`` (a fresh ``CollectingDispatcher()``) to read the messages the
    action sent, from ``dispatcher.messages``.
    """
    events: list[dict[str, Any]] = await action.run(
        dispatcher if dispatcher is not None else CollectingDispatcher(),
        tracker,
        dict(domain or {}),
    )
    return events


def slots_from_events(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The last value each ``slot`` event sets, by slot name."""
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
