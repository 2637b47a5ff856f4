"""The webhook token through rasa-sdk's real Sanic app: every form Rasa sends, nothing else."""

from __future__ import annotations

import base64
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic

from rasa_personalize import webhook
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.errors import ConfigurationError
from rasa_personalize.plugin import install
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.server import create_personalize_app
from rasa_personalize.testing import action_call, slots_from_events, tracker_state
from rasa_personalize.webhook import attach_extensions
from tests.conftest import make_settings

TOKEN = "webhook-token-for-tests-0123456789"  # a test value
PRIVATE = "jane.doe@example.com"  # stands for any personal data inside a tracker


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def call() -> dict[str, Any]:
    return action_call(
        "action_refresh_personalization", tracker_state(sender_id=PRIVATE, user_id="nobody")
    )


@pytest.fixture
async def app(sqlite_store: Any, sqlite_url: str) -> AsyncIterator[Sanic[Any, Any]]:
    """Our hardened app over an empty SQLite store, guarded by ``TOKEN``."""
    executor = ActionExecutor()
    executor.register_package("rasa_personalize.handlers")
    install_service(PersonalizationService(make_settings(sqlite_url), sqlite_store))
    yield attach_extensions(create_app(executor), webhook_token=TOKEN)
    await shutdown_service()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        # endpoints.yml `token:` (Rasa sends it as a query parameter)
        (f"/webhook?token={TOKEN}", {}),
        # endpoints.yml `headers: {Authorization: "Bearer <token>"}`
        ("/webhook", {"Authorization": f"Bearer {TOKEN}"}),
        # the scheme's case does not matter (RFC 9110)
        ("/webhook", {"Authorization": f"bearer {TOKEN}"}),
        # endpoints.yml `basic_auth: {username: rasa, password: <token>}`
        ("/webhook", {"Authorization": basic("rasa", TOKEN)}),
        # any username: only the password is the token
        ("/webhook", {"Authorization": basic("", TOKEN)}),
        # the trailing-slash route, with the token
        (f"/webhook/?token={TOKEN}", {}),
        # Rasa's other `params:` beside the token
        (f"/webhook?shop=demo&token={TOKEN}", {}),
    ],
)
async def test_each_form_rasa_sends_is_accepted(
    app: Sanic[Any, Any], path: str, headers: dict[str, str]
) -> None:
    """The token in any form endpoints.yml can send lets the action run."""
    _, response = await app.asgi_client.post(path, json=call(), headers=headers)
    assert response.status == 200
    assert slots_from_events(response.json["events"])["customer_segment"] == "new_visitor"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        # no token at all
        ("/webhook", {}),
        # the trailing-slash spelling of the same route
        ("/webhook/", {}),
        # a wrong token in the query
        ("/webhook?token=not-the-token-at-all", {}),
        # the token's prefix only
        (f"/webhook?token={TOKEN[:-1]}", {}),
        # an empty token parameter
        ("/webhook?token=", {}),
        # a wrong bearer token
        ("/webhook", {"Authorization": "Bearer not-the-token-at-all"}),
        # the token as the Basic username, not the password
        ("/webhook", {"Authorization": basic(TOKEN, "x")}),
        # Basic credentials that are not base64
        ("/webhook", {"Authorization": "Basic %%%"}),
        # Basic credentials without a colon
        ("/webhook", {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()}),
        # the token under an unknown scheme
        ("/webhook", {"Authorization": f"Token {TOKEN}"}),
        # the token under another parameter name
        (f"/webhook?api_key={TOKEN}", {}),
        # a non-ASCII token must not crash the comparison
        ("/webhook?token=jänë-not-the-token", {}),
    ],
)
async def test_missing_or_wrong_token_is_a_401_without_echo(
    app: Sanic[Any, Any], path: str, headers: dict[str, str]
) -> None:
    """No action runs; the answer names the problem and quotes nothing of the request."""
    _, response = await app.asgi_client.post(path, json=call(), headers=headers)
    assert response.status == 401
    assert response.json == {"error": "missing or wrong webhook token"}
    assert PRIVATE not in response.text
    assert "not-the-token" not in response.text
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_token_is_checked_before_the_body(app: Sanic[Any, Any]) -> None:
    """A caller without the token learns nothing about what a valid body looks like."""
    _, response = await app.asgi_client.post("/webhook", content=b"{not json")
    assert response.status == 401


async def test_actions_list_is_guarded(app: Sanic[Any, Any]) -> None:
    """GET /actions (which names every action) needs the token too."""
    _, refused = await app.asgi_client.get("/actions")
    _, listed = await app.asgi_client.get("/actions", headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status == 401
    assert listed.status == 200
    assert "action_session_start" in {entry["name"] for entry in listed.json}


async def test_health_stays_open(app: Sanic[Any, Any]) -> None:
    """Load balancers probe /health without credentials."""
    _, response = await app.asgi_client.get("/health")
    assert response.status == 200
    assert response.json == {"status": "ok"}


async def test_personalize_api_keeps_its_own_keys(app: Sanic[Any, Any], sqlite_url: str) -> None:
    """The webhook token is not an API key: /personalize/* answers with its own 401."""
    install(app)  # mounts the API; the token check is already attached
    _, response = await app.asgi_client.post(
        "/personalize/events",
        json={"events": []},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status == 401
    assert "key" in response.json["error"].lower()


async def test_the_comparison_is_constant_time(
    app: Sanic[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens are compared with hmac.compare_digest, never with ==."""
    compared: list[tuple[bytes, bytes]] = []
    real_compare_digest = hmac.compare_digest

    def recording_compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real_compare_digest(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", recording_compare_digest)
    _, response = await app.asgi_client.post(f"/webhook?token={TOKEN}", json=call())
    assert response.status == 200
    assert compared == [(TOKEN.encode(), TOKEN.encode())]


async def test_without_a_token_the_webhook_stays_open(
    sqlite_store: Any, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PERSONALIZE_WEBHOOK_TOKEN unset: the webhook answers as before."""
    monkeypatch.delenv("PERSONALIZE_WEBHOOK_TOKEN", raising=False)
    install_service(PersonalizationService(make_settings(sqlite_url), sqlite_store))
    try:
        _, response = await create_personalize_app().asgi_client.post("/webhook", json=call())
    finally:
        await shutdown_service()
    assert response.status == 200


async def test_install_reads_the_token_from_the_environment(
    sqlite_store: Any, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What both ways of serving go through guards the webhook with the configured token."""
    monkeypatch.setenv("PERSONALIZE_WEBHOOK_TOKEN", TOKEN)
    install_service(PersonalizationService(make_settings(sqlite_url), sqlite_store))
    app = create_personalize_app()
    try:
        _, refused = await app.asgi_client.post("/webhook", json=call())
        _, accepted = await app.asgi_client.post(f"/webhook?token={TOKEN}", json=call())
    finally:
        await shutdown_service()
    assert (refused.status, accepted.status) == (401, 200)


def test_a_short_token_stops_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token under 16 characters refuses to serve rather than serve an open webhook."""
    monkeypatch.setenv("PERSONALIZE_WEBHOOK_TOKEN", "too-short")
    with pytest.raises(ConfigurationError, match="PERSONALIZE_WEBHOOK_TOKEN") as refused:
        create_personalize_app()
    assert "too-short" not in str(refused.value)


async def test_cors_is_off_by_default_and_on_for_named_origins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`personalize serve` allows no browser origin unless --cors names one."""
    monkeypatch.delenv("PERSONALIZE_WEBHOOK_TOKEN", raising=False)
    origin = {"Origin": "https://shop.example"}
    _, closed = await create_personalize_app().asgi_client.get("/health", headers=origin)
    opened_app = create_personalize_app(cors_origins=["https://shop.example"])
    _, opened = await opened_app.asgi_client.get("/health", headers=origin)
    assert "access-control-allow-origin" not in closed.headers
    assert opened.headers["access-control-allow-origin"] == "https://shop.example"


async def test_unknown_urls_and_methods_are_answered_without_quoting_the_url(
    app: Sanic[Any, Any],
) -> None:
    """Sanic's own 404 and 405 messages name the URL, and a profile URL holds a customer id."""
    _, wrong_path = await app.asgi_client.get(f"/personalize/profiles/{PRIVATE}/exports")
    _, wrong_method = await app.asgi_client.patch("/webhook")

    assert (wrong_path.status, wrong_path.json) == (404, {"error": "not found"})
    assert (wrong_method.status, wrong_method.json) == (405, {"error": "method not allowed"})
