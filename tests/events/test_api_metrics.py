"""personalize_events_total{stage="api"}: what the events API answered, by outcome."""

from __future__ import annotations

import pytest

from rasa_personalize.runtime import shutdown_service
from tests.events.test_api import auth, event
from tests.events.test_api_consent import consent_path, make_api
from tests.prometheus_tools import sample

OUTCOMES = ("accepted", "duplicate", "rejected", "suppressed")


def counts(stage: str) -> dict[str, float]:
    return {o: sample("personalize_events_total", stage=stage, outcome=o) for o in OUTCOMES}


async def test_every_outcome_of_a_batch_is_counted(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of each, two rejections; the same answer in the response and the counters."""
    app, _, keys, _ = await make_api(sqlite_url, monkeypatch)
    try:
        _, denied = await app.asgi_client.put(
            consent_path(), json={"deny": ["tracking"]}, headers=auth(keys["admin"])
        )
        assert denied.status == 200
        other = "someone-else"
        body = {
            "events": [
                event("a"),  # PRIVATE said no to tracking: suppressed
                event("b", customer=other),  # accepted
                event("b", customer=other),  # the same id again: duplicate
                event("c", customer=other, kind="hover"),  # no such kind: rejected
                event("d", customer=other, product="GHOST"),  # no such product: rejected
            ]
        }
        before = counts("api")
        _, response = await app.asgi_client.post(
            "/personalize/events", json=body, headers=auth(keys["ingest"])
        )
        after = counts("api")
    finally:
        await shutdown_service()

    assert response.status == 200
    assert (response.json["accepted"], response.json["suppressed"]) == (["b"], ["a"])
    assert {o: after[o] - before[o] for o in OUTCOMES} == {
        "accepted": 1,
        "duplicate": 1,
        "rejected": 2,
        "suppressed": 1,
    }
