"""Spans of the action server, recorded with an in-memory exporter: names, nesting,
attributes, and never a customer id or key."""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic

from rasa_personalize import tracing
from rasa_personalize.errors import ConfigurationError
from rasa_personalize.identity import customer_key
from rasa_personalize.instrumentation import ObservedActionExecutor, observe_actions
from rasa_personalize.logs import conversation_correlation_id
from rasa_personalize.plugin import _secret_key, install
from rasa_personalize.testing import action_call, tracker_state
from rasa_personalize.tracing import (
    ACTION_SPAN,
    RECOMMEND_SPAN,
    REDIS_SPAN,
    RULES_SPAN,
    STORE_READ_SPAN,
    disable_tracing,
    enable_tracing,
    span,
    start_tracing,
    stop_tracing,
    traced,
    tracing_enabled,
)
from tests.conftest import TEST_SECRET, migrated_store
from tests.factories import add_customer, add_interactions, add_product

CANARY = "zq7-pii-0x51c4"  # stands for any personal data
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for the test; off again after it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    enable_tracing(provider)
    yield exporter
    disable_tracing()
    provider.shutdown()


@pytest.fixture
async def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sanic[Any, Any]:
    """rasa-sdk's app with the plugin, over a store where the canary is a customer with a
    purchase, so both the profile and the recommendation read it."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = await migrated_store(url)
    async with store.sessions.begin() as session:
        trail = await add_product(session, "SKU-1", "shoes", title="Trail shoes")
        road = await add_product(session, "SKU-2", "shoes", title="Road shoes")
        customer = await add_customer(session, CANARY, tier="gold")
        await add_interactions(session, customer, trail, "purchase", 1, days_ago=2)
        other = await add_customer(session, "another-customer")
        await add_interactions(session, other, road, "purchase", 3, days_ago=2)
    await store.dispose()
    for name, value in {
        "DATABASE_URL": url,
        "SECRET_KEY": TEST_SECRET,
        "MODEL_DIR": str(tmp_path / "models"),
        "RULES_PATH": str(tmp_path / "no-rules.yml"),
    }.items():
        monkeypatch.setenv(f"PERSONALIZE_{name}", value)
    executor = ActionExecutor()
    return install(create_app(executor), executor)


def call(action: str) -> dict[str, Any]:
    return action_call(action, tracker_state(sender_id=CANARY, user_id=CANARY))


async def run_action(
    app: Sanic[Any, Any], action: str, headers: dict[str, str] | None = None
) -> None:
    _, response = await app.asgi_client.post("/webhook", json=call(action), headers=headers)
    assert response.status == 200


def action_tree(exporter: InMemorySpanExporter) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The one action span and every span of its trace below it."""
    finished = exporter.get_finished_spans()
    (action,) = [s for s in finished if s.name == ACTION_SPAN]
    assert action.context is not None
    below = [
        s
        for s in finished
        if s is not action
        and s.context is not None
        and s.context.trace_id == action.context.trace_id
    ]
    return action, below


def assert_nothing_personal(exporter: InMemorySpanExporter) -> None:
    """No span's name, attributes, events or status holds the canary or a customer key."""
    key = customer_key(TEST_SECRET, CANARY)
    for finished in exporter.get_finished_spans():
        text = finished.to_json()
        assert CANARY not in text
        assert key not in text
        assert not finished.events  # no exception events: they would carry messages


async def test_session_start_spans(app: Sanic[Any, Any], spans: InMemorySpanExporter) -> None:
    """action_session_start: an action span over the store read and the rules."""
    await run_action(app, "action_session_start")
    action, below = action_tree(spans)
    assert action.parent is None  # rasa-sdk's tracing is off: ours is the root
    assert action.attributes is not None
    assert action.attributes["personalize.action.name"] == "action_session_start"
    assert action.attributes["personalize.correlation_id"] == conversation_correlation_id(
        TEST_SECRET, CANARY
    )
    names = sorted({s.name for s in below})
    assert names == [RULES_SPAN, STORE_READ_SPAN]
    assert action.context is not None
    assert all(s.parent is not None and s.parent.span_id == action.context.span_id for s in below)
    (read,) = [s for s in below if s.name == STORE_READ_SPAN]
    # The test store is a SQLite file in WAL mode: read on the loop's thread.
    assert dict(read.attributes or {}) == {
        "personalize.store.path": "inline",
        "personalize.store.reader": "snapshot",
    }
    (rules,) = [s for s in below if s.name == RULES_SPAN]
    # At session start the customer is who the session's metadata says: nobody here.
    assert dict(rules.attributes or {}) == {"personalize.rules.rule": "new visitor"}
    assert_nothing_personal(spans)


async def test_recommend_spans(app: Sanic[Any, Any], spans: InMemorySpanExporter) -> None:
    """action_recommend_products: store reads, rules, then the recommendation chain."""
    await run_action(app, "action_recommend_products")
    action, below = action_tree(spans)
    assert action.attributes is not None
    assert action.attributes["personalize.action.name"] == "action_recommend_products"
    assert action.context is not None
    children = [
        s for s in below if s.parent is not None and s.parent.span_id == action.context.span_id
    ]
    assert {s.name for s in children} == {STORE_READ_SPAN, RULES_SPAN, RECOMMEND_SPAN}
    readers = sorted(
        str((s.attributes or {})["personalize.store.reader"])
        for s in children
        if s.name == STORE_READ_SPAN
    )
    # The snapshot, then the known customer's items (both inline on SQLite).
    assert readers == ["_read_customer_items", "snapshot"]
    (recommend,) = [s for s in children if s.name == RECOMMEND_SPAN]
    attributes = dict(recommend.attributes or {})
    assert attributes["personalize.recommend.kind"] == "chain"
    assert attributes["personalize.recommend.strategy"] == "default"
    assert attributes["personalize.recommend.source"] == "popular"
    assert attributes["personalize.recommend.count"] == 1  # SKU-1 was bought: only SKU-2
    # Rules before the recommendation, which ends last.
    (rules,) = [s for s in children if s.name == RULES_SPAN]
    assert rules.end_time is not None
    assert recommend.start_time is not None
    assert rules.end_time <= recommend.start_time
    assert_nothing_personal(spans)


async def test_redis_calls_are_spans(
    app: Sanic[Any, Any], spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Redis configured (here refused at once), each guarded call is a failed span
    that names its target and the error's type, never its message."""
    monkeypatch.setenv("PERSONALIZE_REDIS_URL", "redis://127.0.0.1:1/0")
    await run_action(app, "action_session_start")
    _, below = action_tree(spans)
    redis = [s for s in below if s.name == REDIS_SPAN]
    assert redis
    for each in redis:
        assert (
            dict(each.attributes or {})["personalize.redis.target"] == "profile cache and counters"
        )
        assert each.status.status_code is StatusCode.ERROR
        assert each.status.description == "RedisUnavailableError"
    assert_nothing_personal(spans)


async def test_the_callers_trace_is_continued(
    app: Sanic[Any, Any], spans: InMemorySpanExporter
) -> None:
    """A W3C traceparent from Rasa makes the action span a child in Rasa's trace."""
    parent = "00f067aa0ba902b7"
    await run_action(
        app, "action_session_start", headers={"traceparent": f"00-{TRACE_ID}-{parent}-01"}
    )
    action, _ = action_tree(spans)
    assert action.context is not None
    assert action.parent is not None
    assert format(action.context.trace_id, "032x") == TRACE_ID
    assert format(action.parent.span_id, "016x") == parent


async def test_rasa_sdks_tracing_is_reused(
    app: Sanic[Any, Any], spans: InMemorySpanExporter
) -> None:
    """With endpoints.yml tracing, rasa-sdk's provider records ours under its webhook span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # What rasa-sdk's before_server_start listener leaves when endpoints.yml has tracing:.
    app.ctx.tracer_provider = provider
    disable_tracing()
    try:
        await run_action(app, "action_session_start")
    finally:
        app.ctx.tracer_provider = None
    finished = {s.name: s for s in exporter.get_finished_spans()}
    webhook, action = finished["create_app.webhook"], finished[ACTION_SPAN]
    assert action.parent is not None
    assert webhook.context is not None
    assert action.parent.span_id == webhook.context.span_id
    assert spans.get_finished_spans() == ()  # the test's own provider saw nothing
    assert not tracing_enabled()  # switched off with the server


async def test_off_records_nothing(app: Sanic[Any, Any]) -> None:
    """Off by default: a webhook call starts no tracer and records no span."""
    assert not tracing_enabled()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await run_action(app, "action_recommend_products")
    assert exporter.get_finished_spans() == ()
    assert not tracing_enabled()


async def test_off_calls_go_straight_through() -> None:
    """Tracing off: a traced coroutine function hands back the original coroutine."""

    async def work(value: int) -> int:
        return value + 1

    wrapped = traced("x")(work)
    coroutine = wrapped(1)
    assert coroutine.cr_code is work.__code__  # type: ignore[attr-defined]
    assert await coroutine == 2
    with span("y") as current:
        assert current is None


def test_failures_are_marked_by_type_only(spans: InMemorySpanExporter) -> None:
    """An exception marks the span failed with its type; its message goes nowhere."""

    @traced("failing", lambda value: {"size": len(value)})
    def fail(value: str) -> None:
        raise ValueError(f"bad {value}")

    with pytest.raises(ValueError, match="bad"):
        fail(CANARY)
    (failed,) = spans.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError"
    assert dict(failed.attributes or {}) == {"size": len(CANARY), "error.type": "ValueError"}
    assert CANARY not in failed.to_json()


async def test_otlp_endpoint_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """PERSONALIZE_OTLP_ENDPOINT: an OTLP/HTTP exporter to <endpoint>/v1/traces, batched."""
    monkeypatch.setenv("PERSONALIZE_OTLP_ENDPOINT", "http://127.0.0.1:4318/")
    assert start_tracing() == "otlp"
    try:
        assert tracing_enabled()
        provider = tracing._owned_provider
        assert provider is not None
        (processor,) = provider._active_span_processor._span_processors
        assert type(processor).__name__ == "BatchSpanProcessor"
        exporter = processor._batch_processor._exporter  # type: ignore[attr-defined]
        assert exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
        assert provider.resource.attributes["service.name"] == "rasa-personalize"
    finally:
        stop_tracing()  # no span was made: nothing is sent
    assert not tracing_enabled()
    assert tracing._owned_provider is None


def test_without_configuration_tracing_stays_off() -> None:
    """No endpoints.yml tracing and no PERSONALIZE_OTLP_ENDPOINT: off."""
    assert start_tracing() == "off"
    assert not tracing_enabled()


@pytest.mark.parametrize(
    "value",
    [
        # not a URL
        "collector:4318",
        # gRPC is not what the exporter speaks
        "grpc://collector:4317",
    ],
)
def test_an_invalid_endpoint_names_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """The variable and the rule, never the value (it may carry credentials)."""
    monkeypatch.setenv("PERSONALIZE_OTLP_ENDPOINT", value)
    with pytest.raises(ConfigurationError, match="PERSONALIZE_OTLP_ENDPOINT") as raised:
        start_tracing()
    assert value not in str(raised.value)


async def test_the_correlation_id_matches_the_logs(
    app: Sanic[Any, Any], spans: InMemorySpanExporter
) -> None:
    """The span's correlation id is the logs' one, keyed by the running service's secret."""
    await run_action(app, "action_refresh_personalization")
    action, _ = action_tree(spans)
    assert action.attributes is not None
    value = str(action.attributes["personalize.correlation_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", value)
    assert value == conversation_correlation_id(TEST_SECRET, CANARY)
    assert CANARY not in json.dumps(dict(action.attributes))


def test_the_observed_executor_still_pickles() -> None:
    """rasa-sdk's server pickles its executor to start workers: observing keeps that."""
    executor = ActionExecutor()
    executor.register_package("rasa_personalize.handlers")
    observe_actions(executor, _secret_key)
    observe_actions(executor, _secret_key)  # idempotent
    copy = pickle.loads(pickle.dumps(executor))
    assert type(copy) is ObservedActionExecutor
    assert set(copy.actions) == set(executor.actions)
