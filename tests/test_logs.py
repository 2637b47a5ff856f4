"""Logs: one JSON object per line, correlation ids, and no personal data on any path.

The canary tests run the real app (rasa-sdk's, with the plugin installed) with a canary
planted in every field that can hold personal data: sender id, ``user_id`` and the rest
of the metadata, slots, message text and entities, event fields, API path ids and
bodies. Every line logged at DEBUG, by any logger of the server, must parse as JSON with
the required keys, and the canary must appear in none.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic
from typer.testing import CliRunner

from rasa_personalize import logs
from rasa_personalize.cli.main import app as cli_app
from rasa_personalize.errors import ConfigurationError, StoreUnavailableError
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.identity import sign_user_id
from rasa_personalize.logs import (
    PersonalizeLogHandler,
    bind_conversation,
    configure_logging,
    conversation_correlation_id,
    correlation_id,
    safe_traceback,
    unbind,
)
from rasa_personalize.plugin import install, plugin_action_names
from rasa_personalize.slots import SLOT_CONTRACT
from rasa_personalize.testing import action_call, tracker_state, user_message
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import add_product

# Stands for any personal data. Not a word that appears in code, so a traceback's source
# lines (which show variable names, never values) cannot match it by accident.
CANARY = "zq7-pii-0x51c4"
IDENTITY_SECRET = "identity-secret-for-log-tests"
REQUIRED_KEYS = {"timestamp", "level", "logger", "event"}
HEX16 = re.compile(r"^[0-9a-f]{16}$")
# The test's own HTTP client (httpx) logs the URLs it calls: those lines are the caller's,
# not the server's, and a profile URL holds the customer id by design.
CLIENT_LOGGERS = ("httpx", "httpcore")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log record of the process, at DEBUG, as the json format writes it."""
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", level=logging.DEBUG, stream=buffer)
    yield buffer
    root.removeHandler(handler)  # type: ignore[arg-type]
    root.setLevel(level)
    logging.captureWarnings(False)


def server_lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    """The captured lines, each parsed (a line that is not one JSON object fails)."""
    parsed: list[dict[str, Any]] = []
    for line in buffer.getvalue().splitlines():
        document = json.loads(line)
        assert isinstance(document, dict), line
        assert set(document) >= REQUIRED_KEYS, line
        if not document["logger"].startswith(CLIENT_LOGGERS):
            parsed.append(document)
    return parsed


def assert_no_canary(buffer: io.StringIO) -> list[dict[str, Any]]:
    """Parse the lines, check the canary is in none, and return them."""
    lines = server_lines(buffer)
    leaks = [line for line in lines if CANARY in json.dumps(line, ensure_ascii=False)]
    assert leaks == []
    return lines


@pytest.fixture
async def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sanic[Any, Any]:
    """rasa-sdk's app with the plugin installed, over a SQLite store with one product, and
    an admin API key. Services come from the environment, as on a real server."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await migrated_store(url)
    async with store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", title="Trail shoes")
        _, admin_key = await create_api_key(session, "admin", label="logs test")
    await store.dispose()
    settings = {
        "DATABASE_URL": url,
        "SECRET_KEY": TEST_SECRET,
        "IDENTITY_SECRET": IDENTITY_SECRET,
        "MODEL_DIR": str(tmp_path / "models"),
        "RULES_PATH": str(tmp_path / "no-rules.yml"),
        "TAGS_PATH": str(tmp_path / "no-tags.yml"),
        "STORE_RETRY_AFTER_S": "0",
    }
    for name, value in settings.items():
        monkeypatch.setenv(f"PERSONALIZE_{name}", value)
    executor = ActionExecutor()
    app = install(create_app(executor), executor)
    app.ctx.admin_key = admin_key
    return app


def canary_call(action: str, intent: str, *, verified: bool) -> dict[str, Any]:
    """An action call with the canary in every field a shop or a shopper fills."""
    user_hash = sign_user_id(IDENTITY_SECRET, CANARY) if verified else CANARY
    metadata = {
        "user_id": CANARY,
        "user_hash": user_hash,
        "timezone": CANARY,
        "utc_offset_minutes": CANARY,
        "channel": CANARY,
        "device": CANARY,
        "location": CANARY,
    }
    message = user_message(
        text=CANARY,
        intent=intent,
        metadata=metadata,
        entities=[
            {"entity": "category", "value": CANARY},
            {"entity": "product", "value": CANARY},
        ],
        input_channel=CANARY,
    )
    slots: dict[str, Any] = dict.fromkeys(SLOT_CONTRACT, CANARY)
    slots["recommended_products"] = [{"sku": CANARY, "title": CANARY, "price": 1.0}]
    slots["category"] = CANARY
    state = tracker_state(
        sender_id=CANARY, session_metadata=metadata, slots=slots, events=[message]
    )
    state["latest_message"]["message_id"] = CANARY
    return action_call(action, state)


# The intent each action reads (and a second one where the intent changes the path).
ACTION_INTENTS = {
    "action_session_start": ("greet",),
    "action_refresh_personalization": ("greet",),
    "action_recommend_products": ("ask_category",),
    "action_similar_products": ("greet",),
    "action_record_recommendation_feedback": ("affirm", "deny"),
    "action_set_consent": ("allow_data_use", "deny_data_use", "greet"),
    "action_data_summary": ("greet",),
    "action_erase_customer": ("affirm",),
    "action_like_category": ("express_interest",),
    "action_dislike_category": ("express_disinterest",),
}


async def test_every_action_logs_json_without_the_canary(
    app: Sanic[Any, Any], json_log: io.StringIO
) -> None:
    """Each plugin action, verified and unverified, leaves JSON lines and no canary."""
    assert set(ACTION_INTENTS) >= set(plugin_action_names())
    for action in plugin_action_names():
        for intent in ACTION_INTENTS.get(action, ("greet",)):
            for verified in (False, True):
                _, response = await app.asgi_client.post(
                    "/webhook", json=canary_call(action, intent, verified=verified)
                )
                assert response.status == 200, (action, response.text)
    lines = assert_no_canary(json_log)
    expected = conversation_correlation_id(TEST_SECRET, CANARY)
    # rasa-sdk's executor logs each call at DEBUG, inside the conversation's scope.
    received = [line for line in lines if line["event"].startswith("Received request to run")]
    assert len(received) >= len(plugin_action_names())
    assert {line.get("correlation_id") for line in received} == {expected}


async def test_bad_webhook_input_logs_no_canary(
    app: Sanic[Any, Any], json_log: io.StringIO
) -> None:
    """Malformed bodies, wrong types and unknown actions: 4xx answers, clean lines."""
    bodies: list[bytes] = [
        # not JSON, with the canary inside
        f'{{"tracker": "{CANARY}'.encode(),
        # a tracker whose events are not a list
        json.dumps(
            {
                "next_action": "action_session_start",
                "tracker": {"sender_id": CANARY, "events": CANARY},
            }
        ).encode(),
        # an action nobody registered (its name is the assistant's, not personal data)
        json.dumps(action_call("action_nobody_has", tracker_state(sender_id=CANARY))).encode(),
        # an event rasa-sdk cannot read
        json.dumps(
            action_call(
                "action_session_start",
                tracker_state(sender_id=CANARY, events=[{"event": CANARY, "text": CANARY}]),
            )
        ).encode(),
    ]
    for body in bodies:
        _, response = await app.asgi_client.post("/webhook", content=body)
        assert response.status in {200, 400, 404}, response.text
        assert CANARY not in response.text
    assert_no_canary(json_log)


def profile(path: str = "") -> str:
    return f"/personalize/profiles/{quote(CANARY, safe='')}{path}"


async def test_events_and_privacy_api_log_no_canary(
    app: Sanic[Any, Any], json_log: io.StringIO
) -> None:
    """Events in, profile reads, writes, consent, export and erasure, right and wrong."""
    admin = {"Authorization": f"Bearer {app.ctx.admin_key}"}
    event = {
        "event_id": CANARY,
        "customer": CANARY,
        "product": "SKU-1",
        "kind": "view",
        "timestamp": "2026-01-01T10:00:00Z",
        "channel": CANARY,
        "device": CANARY,
        "location": CANARY,
        "category": CANARY,
    }
    bad_event = dict.fromkeys(event, CANARY)
    requests: list[tuple[str, str, dict[str, Any] | None]] = [
        ("post", "/personalize/events", {"events": [event, bad_event, CANARY]}),
        ("post", "/personalize/events", {CANARY: CANARY}),
        ("put", profile(), {"loyalty_tier": "gold", "attributes": {"note": CANARY}}),
        ("put", profile(), {"loyalty_tier": CANARY, CANARY: CANARY}),
        ("get", profile(), None),
        ("put", profile("/consent"), {"grant": ["tracking"], "policy_version": CANARY}),
        ("put", profile("/consent"), {"grant": [CANARY]}),
        ("get", profile("/consent"), None),
        ("get", profile("/export"), None),
        ("delete", profile(), None),
        ("get", profile(), None),
    ]
    request_ids: set[str] = set()
    for method, path, body in requests:
        send = getattr(app.asgi_client, method)
        kwargs: dict[str, Any] = {"headers": admin}
        if body is not None:
            kwargs["json"] = body
        _, response = await send(path, **kwargs)
        assert response.status < 500, (method, path, response.text)
        if "x-request-id" in response.headers:
            request_ids.add(response.headers["x-request-id"])
    # A wrong key: the refusal path.
    _, refused = await app.asgi_client.get(profile(), headers={"Authorization": f"Bearer {CANARY}"})
    assert refused.status == 401
    lines = assert_no_canary(json_log)
    assert all(HEX16.match(value) for value in request_ids)
    assert len(request_ids) >= len(requests) - 1  # the streamed export sends its own headers
    # Lines of the plugin's API carry the request's id (the export's contact-key warning,
    # for one); only a streamed answer, whose headers went first, does not repeat it.
    logged = {
        str(line["correlation_id"])
        for line in lines
        if line["logger"].startswith("rasa_") and "correlation_id" in line
    }
    assert logged  # the export's contact-key warning, at least
    assert all(HEX16.match(value) for value in logged)


async def test_store_and_redis_down_log_no_canary(
    app: Sanic[Any, Any], json_log: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unreachable store and an unreachable Redis: defaults, 503s, and clean lines."""
    # A directory where the database file should be: every connection fails.
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", f"sqlite:///{tmp_path}")
    # Nothing listens on port 1: connections are refused at once.
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", "redis://127.0.0.1:1/0")
    for action in ("action_session_start", "action_recommend_products", "action_data_summary"):
        _, response = await app.asgi_client.post(
            "/webhook", json=canary_call(action, "ask_category", verified=True)
        )
        assert response.status == 200
    admin = {"Authorization": f"Bearer {app.ctx.admin_key}"}
    _, response = await app.asgi_client.get(profile(), headers=admin)
    assert response.status in {401, 503}
    lines = assert_no_canary(json_log)
    warnings = [line["event"] for line in lines if line["level"] == "warning"]
    assert any("store is unavailable" in event for event in warnings)
    assert any("Redis" in event and "unavailable" in event for event in warnings)


async def test_failing_action_and_api_log_types_not_messages(
    app: Sanic[Any, Any], json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug whose message quotes personal data: the traceback is logged, the message not."""

    async def recommend_fails(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError(f"cannot recommend for {CANARY}")

    def document_fails(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError(f"cannot render {CANARY}")

    monkeypatch.setattr("rasa_personalize.engine.PersonalizationService.recommend", recommend_fails)
    monkeypatch.setattr("rasa_personalize.events.api.profile_document", document_fails)
    _, response = await app.asgi_client.post(
        "/webhook", json=canary_call("action_recommend_products", "ask_category", verified=True)
    )
    assert response.status == 200
    admin = {"Authorization": f"Bearer {app.ctx.admin_key}"}
    await app.asgi_client.put(profile(), json={"loyalty_tier": "gold"}, headers=admin)
    _, response = await app.asgi_client.get(profile(), headers=admin)
    assert response.status == 500
    lines = assert_no_canary(json_log)
    failed = [line for line in lines if "exception" in line]
    assert {line["exception"].splitlines()[-1] for line in failed} >= {
        "ValueError (message withheld: it may quote personal data)",
        "RuntimeError (message withheld: it may quote personal data)",
    }
    action_failure = next(line for line in failed if "ValueError" in line["exception"])
    assert action_failure["correlation_id"] == conversation_correlation_id(TEST_SECRET, CANARY)
    assert "recommend_fails" in action_failure["exception"]  # the frames stay


# -- the pieces ---------------------------------------------------------------------


def test_correlation_id_is_a_keyed_hash_of_the_sender() -> None:
    """16 hex digits, stable per secret and sender, different across secrets and senders."""
    first = conversation_correlation_id(TEST_SECRET, CANARY)
    assert HEX16.match(first)
    assert first == conversation_correlation_id(TEST_SECRET, CANARY)
    assert first != conversation_correlation_id(TEST_SECRET, CANARY + "x")
    assert first != conversation_correlation_id("another-secret-0123456789", CANARY)
    assert CANARY not in first


def test_correlation_scope_binds_and_unbinds() -> None:
    """The id is current inside the scope only, and its repr never shows the sender id."""
    assert correlation_id() is None
    token = bind_conversation(CANARY, lambda: TEST_SECRET)
    try:
        assert correlation_id() == conversation_correlation_id(TEST_SECRET, CANARY)
        assert CANARY not in repr(logs._current.get())
    finally:
        unbind(token)
    assert correlation_id() is None


def test_an_unreadable_secret_still_hashes_the_sender() -> None:
    """With invalid settings the id comes from a random key of the process: still no sender id."""

    def broken() -> str:
        raise ConfigurationError("invalid settings: PERSONALIZE_SECRET_KEY: too short")

    token = bind_conversation(CANARY, broken)
    try:
        value = correlation_id()
    finally:
        unbind(token)
    assert value is not None
    assert HEX16.match(value)
    assert value != conversation_correlation_id(TEST_SECRET, CANARY)


def test_safe_traceback_keeps_our_messages_and_withholds_others() -> None:
    """Our errors' messages are written to be shown; a cause's message is withheld."""
    try:
        try:
            int(CANARY)
        except ValueError as cause:
            raise StoreUnavailableError("store unavailable") from cause
    except StoreUnavailableError as error:
        text = safe_traceback(error)
    assert CANARY not in text
    assert "ValueError (message withheld" in text
    assert "rasa_personalize.errors.StoreUnavailableError: store unavailable" in text
    assert "The above exception was the direct cause" in text
    assert "int(CANARY)" in text  # the source line, naming the variable only


def test_safe_traceback_keeps_messages_that_name_code() -> None:
    """A NameError names a variable of the code, never a value: its message stays."""
    try:
        eval("undefined_name_in_code")  # raises NameError on purpose
    except NameError as error:
        text = safe_traceback(error)
    assert text.splitlines()[-1] == "NameError: name 'undefined_name_in_code' is not defined"


def test_console_format_is_one_readable_line() -> None:
    """The default format: time, level, event and logger name on one line."""
    buffer = io.StringIO()
    handler = configure_logging("console", stream=buffer)
    try:
        logging.getLogger("rasa_personalize.test").warning("store down for %d s", 5)
    finally:
        logging.getLogger().removeHandler(handler)  # type: ignore[arg-type]
    (line,) = buffer.getvalue().splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[warning\s*\] store down for 5 s", line)
    assert "rasa_personalize.test" in line


def test_json_lines_carry_the_correlation_id_and_extra_fields() -> None:
    """Inside a scope every line has the id; ``extra`` fields are kept; keys lead in order."""
    buffer = io.StringIO()
    handler = configure_logging("json", stream=buffer)
    token = bind_conversation(CANARY, lambda: TEST_SECRET)
    try:
        logging.getLogger("rasa_personalize.test").warning("slow", extra={"duration_ms": 12})
    finally:
        unbind(token)
        logging.getLogger().removeHandler(handler)  # type: ignore[arg-type]
    document = json.loads(buffer.getvalue())
    assert list(document)[:5] == ["timestamp", "level", "logger", "correlation_id", "event"]
    assert document["correlation_id"] == conversation_correlation_id(TEST_SECRET, CANARY)
    assert (document["level"], document["event"], document["duration_ms"]) == (
        "warning",
        "slow",
        12,
    )
    assert document["timestamp"].endswith("Z")


def test_access_lines_lose_address_query_and_profile_ids() -> None:
    """Sanic's access line: no client address, no ?token=, no customer id in the path."""
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", level=logging.INFO, stream=buffer)
    try:
        logging.getLogger("sanic.access").info(
            "",
            extra={
                "host": "203.0.113.9:51000",
                "request": f"GET http://127.0.0.1:5055{profile('/consent')}?token=secret-token",
                "status": 200,
                "byte": 10,
            },
        )
    finally:
        root.removeHandler(handler)  # type: ignore[arg-type]
        root.setLevel(level)
    document = json.loads(buffer.getvalue())
    assert document["request"] == "GET /personalize/profiles/<customer>/consent"
    assert "host" not in document
    assert "secret-token" not in buffer.getvalue()
    assert document["status"] == 200


def test_a_host_programs_handlers_are_left_alone_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inside rasa-sdk's process: unset, nothing changes; set, its handlers get the format."""
    root = logging.getLogger()
    host = logging.StreamHandler(io.StringIO())
    formatter = logging.Formatter("%(message)s")
    host.setFormatter(formatter)
    root.addHandler(host)
    try:
        assert configure_logging(only_if_set=True) is None
        assert host.formatter is formatter
        monkeypatch.setenv("PERSONALIZE_LOG_FORMAT", "json")
        assert configure_logging(only_if_set=True) is None  # the host's handler stays its own
        assert host.formatter is not formatter
        assert not any(isinstance(h, PersonalizeLogHandler) for h in root.handlers)
        logging.getLogger("rasa_personalize.test").warning("hello")
        assert json.loads(host.stream.getvalue())["event"] == "hello"
    finally:
        root.removeHandler(host)
        logging.captureWarnings(False)


def test_an_invalid_log_format_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo stops the start with the variable's name and the allowed values."""
    monkeypatch.setenv("PERSONALIZE_LOG_FORMAT", "xml")
    with pytest.raises(ConfigurationError, match="PERSONALIZE_LOG_FORMAT: Input should be"):
        configure_logging(only_if_set=True)


def test_the_cli_refuses_an_invalid_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """``personalize`` exits 2 with one line naming the variable, before any command runs."""
    monkeypatch.setenv("PERSONALIZE_LOG_FORMAT", "xml")
    result = CliRunner().invoke(cli_app, ["rules", "check"])
    assert result.exit_code == 2
    assert "PERSONALIZE_LOG_FORMAT: Input should be 'console' or 'json'" in result.output
