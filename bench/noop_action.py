"""The baseline action for the webhook benchmark: parses the call like any action, does nothing.

``bench/webhook_throughput.py`` serves it alone on a stock rasa-sdk server
(``python -m rasa_sdk --actions bench.noop_action``, without this distribution's plugin hook).
"""

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
