"""The webhook through rasa-sdk's real Sanic app, with our extensions attached."""

from __future__ import annotations

import gc
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.server import create_personalize_app
from rasa_personalize.testing import action_call, slots_from_events, tracker_state
from rasa_personalize.webhook import (
    _envelope_is_valid,
    _warm_up_then_freeze,
    _WebhookEnvelope,
    attach_extensions,
)
from tests.conftest import make_settings

PRIVATE = "jane.doe@example.com"  # stands for any personal data inside a tracker


def call(action: str = "action_session_start", **tracker: Any) -> dict[str, Any]:
    tracker.setdefault("sender_id", PRIVATE)
    return action_call(action, tracker_state(**tracker))


@pytest.fixture
async def app(sqlite_store: Any, sqlite_url: str) -> AsyncIterator[Sanic[Any, Any]]:
    """Our app over an empty migrated SQLite store, plus one action that always fails."""
    executor = ActionExecutor()
    executor.register_package("rasa_personalize.handlers")

    async def explode(dispatcher: Any, tracker: Any, domain: Any) -> list[Any]:
        raise RuntimeError(f"failed for {tracker.sender_id}")

    executor.register_function("action_explode", explode)
    install_service(PersonalizationService(make_settings(sqlite_url), sqlite_store))
    yield attach_extensions(create_app(executor), max_body_bytes=64 * 1024)
    await shutdown_service()


async def test_session_start_over_http(app: Sanic[Any, Any]) -> None:
    """A well-formed call answers 200 with the slots and Rasa's session events."""
    _, response = await app.asgi_client.post(
        "/webhook", json=call(session_metadata={"user_id": "nobody-yet"})
    )
    assert response.status == 200
    events = response.json["events"]
    assert events[0]["event"] == "session_started"
    assert (events[-1]["event"], events[-1]["name"]) == ("action", "action_listen")
    assert slots_from_events(events)["customer_segment"] == "new_visitor"


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        # not JSON at all
        (b"{not json", {}, 400, "body is not valid JSON"),
        # JSON, but not an object
        (b"[1, 2]", {}, 400, "invalid action call"),
        # no tracker
        (json.dumps({"next_action": "action_session_start"}).encode(), {}, 400, "tracker"),
        # tracker without sender id
        (
            json.dumps({"next_action": "x", "tracker": {"slots": {}}}).encode(),
            {},
            400,
            "tracker.sender_id",
        ),
        # events of the wrong type
        (
            json.dumps(
                {"next_action": "x", "tracker": {"sender_id": PRIVATE, "events": "e"}}
            ).encode(),
            {},
            400,
            "tracker.events",
        ),
        # claims deflate but is not
        (b"plain", {"Content-Encoding": "deflate"}, 400, "deflate"),
        # a small deflate body that inflates past the limit
        (
            zlib.compress(b" " * (1024 * 1024)),
            {"Content-Encoding": "deflate"},
            413,
            "body too large",
        ),
    ],
)
async def test_malformed_bodies_get_a_short_4xx_without_echo(
    app: Sanic[Any, Any], body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    """Bad input is refused with a reason, and nothing of the request comes back."""
    _, response = await app.asgi_client.post("/webhook", content=body, headers=headers)
    assert response.status == status
    assert message in response.json["error"]
    assert PRIVATE not in response.text
    assert len(response.text) < 300


async def test_oversized_body_is_refused(app: Sanic[Any, Any]) -> None:
    """Past the body limit the server answers 413 before parsing."""
    huge = call(slots={"note": "x" * (128 * 1024)})
    _, response = await app.asgi_client.post("/webhook", json=huge)
    assert response.status == 413
    assert PRIVATE not in response.text


async def test_action_exception_is_a_500_without_the_tracker(
    app: Sanic[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Stock rasa-sdk would echo the request body; ours says only that it failed."""
    _, response = await app.asgi_client.post("/webhook", json=call("action_explode"))
    assert response.status == 500
    assert response.json == {"error": "internal error in the action server"}
    assert PRIVATE not in caplog.text.replace(f"failed for {PRIVATE}", "")


async def test_unknown_action_is_a_404_naming_the_action(app: Sanic[Any, Any]) -> None:
    """rasa-sdk's own 404 for unknown actions is kept."""
    _, response = await app.asgi_client.post("/webhook", json=call("action_nope"))
    assert response.status == 404
    assert response.json["action_name"] == "action_nope"
    assert PRIVATE not in response.text


async def test_store_down_still_answers_200_with_defaults(tmp_path: Path) -> None:
    """With the store unreachable the webhook answers defaults, not an error."""
    url = f"sqlite:///{tmp_path / 'gone' / 'store.db'}"
    install_service(PersonalizationService(make_settings(url)))
    app = create_personalize_app()
    try:
        _, response = await app.asgi_client.post(
            "/webhook", json=call("action_refresh_personalization", user_id="demo-loyal")
        )
    finally:
        await shutdown_service()
    assert response.status == 200
    assert slots_from_events(response.json["events"])["loyalty_tier"] == "none"


async def test_health_and_actions_endpoints_still_work(app: Sanic[Any, Any]) -> None:
    """rasa-sdk's own endpoints are untouched."""
    _, health = await app.asgi_client.get("/health")
    _, actions = await app.asgi_client.get("/actions")
    assert health.json == {"status": "ok"}
    assert {a["name"] for a in actions.json} >= {"action_session_start"}


async def test_json_nested_ten_thousand_deep_is_a_400(app: Sanic[Any, Any]) -> None:
    """A body deeper than the interpreter's recursion limit: a short 400, not a 500."""
    body = b'{"next_action": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    _, response = await app.asgi_client.post("/webhook", content=body)
    assert response.status == 400
    assert response.json == {"error": "body is nested deeper than 64 levels"}


# Pieces of action calls, right and wrong: the fast envelope check must never accept one
# that pydantic's envelope refuses.
_FIELD = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.text(min_size=250, max_size=260),
    st.integers(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.lists(st.one_of(st.dictionaries(st.text(max_size=2), st.none()), st.integers()), max_size=3),
)
_CALLS = st.dictionaries(
    st.sampled_from(["next_action", "tracker", "domain", "version", "other"]),
    st.one_of(
        _FIELD,
        st.dictionaries(
            st.sampled_from(["sender_id", "slots", "latest_message", "events", "paused"]),
            _FIELD,
        ),
    ),
)


@given(payload=_CALLS)
def test_the_fast_envelope_check_accepts_only_what_pydantic_accepts(payload: Any) -> None:
    """Whatever passes without pydantic, pydantic's envelope accepts too."""
    if _envelope_is_valid(payload):
        _WebhookEnvelope.model_validate(payload)


def test_a_recorded_action_call_takes_the_fast_check() -> None:
    """A real action call from Rasa is accepted without building the pydantic model."""
    tracker = json.loads(
        (Path(__file__).parent / "data" / "tracker_mid_conversation.json").read_text()
    )
    assert _envelope_is_valid(action_call("action_session_start", tracker))
    assert not _envelope_is_valid({"next_action": "", "tracker": tracker})


class _FailingWarmUp:
    async def warm_up(self) -> None:
        raise RuntimeError("store down at start")


async def test_what_the_warm_up_loaded_is_left_out_of_collections() -> None:
    """After the warm-up, even a failed one, full collections no longer walk what the
    process holds (a pause of tens of milliseconds each, on every request in flight)."""
    try:
        with pytest.raises(RuntimeError):
            await _warm_up_then_freeze(_FailingWarmUp())  # type: ignore[arg-type]
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


async def test_the_decoded_body_is_let_go_with_the_answer(app: Sanic[Any, Any]) -> None:
    """Once answered, the request no longer holds the tracker it decoded (it would wait
    for a garbage collection otherwise), and the answer is the usual one."""
    held: list[Any] = []

    @app.on_response
    async def remember(request: Any, _response: Any) -> None:
        held.append(request.parsed_json)

    _, response = await app.asgi_client.post("/webhook", json=call())
    assert response.status == 200
    assert response.json["events"][0]["event"] == "session_started"
    assert held == [None]
