"""The baseline action for the webhook benchmark: parses the call like any action, does nothing."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher


class ActionBenchNoop(Action):  # type: ignore[misc]  # rasa-sdk is untyped
    """Returns no events: the cost of rasa-sdk and HTTP alone."""

    def name(self) -> str:
        return "action_bench_noop"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        return []
