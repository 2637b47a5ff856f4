"""Prometheus metrics of the action server, in this process's registry (one process)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic
from sqlalchemy import exc as sqlalchemy_exc

from rasa_personalize import metrics
from rasa_personalize.cache.breaker import RedisBreaker
from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import PersonalizationRequest, PersonalizationService
from rasa_personalize.errors import StoreUnavailableError
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.plugin import install
from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.artifacts import ModelHolder, als_dir, save_artifact
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.migrate import upgrade
from rasa_personalize.store.records import CustomerSnapshot
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import NOT_INLINE, SqlStore
from rasa_personalize.testing import action_call, tracker_state
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW, add_customer, add_interactions, add_product
from tests.prometheus_tools import sample, value_in
from tests.recommend.conftest import checkerboard

ACTION = "action_refresh_personalization"
UTC_NOON = ConversationContext(utc_offset_minutes=0)
WEBHOOK_TOKEN = "metrics-test-token-0123456789abcdef"  # a test value, not a secret


def request(external_id: str) -> PersonalizationRequest:
    return PersonalizationRequest(CustomerIdentity(external_id, "message_metadata"), UTC_NOON)


def defaults(reason: str) -> float:
    return sample("personalize_defaults_total", reason=reason)


def all_defaults() -> dict[str, float]:
    return {reason: defaults(reason) for reason in metrics.DEFAULTS_REASONS}


def changed(before: dict[str, float]) -> dict[str, float]:
    """The reasons whose count moved since ``before``, by how much."""
    return {r: v - before[r] for r, v in all_defaults().items() if v != before[r]}


@pytest.fixture
async def seeded(sqlite_store: SqlStore) -> SqlStore:
    """A SQLite store with a gold customer "ada" and a product."""
    async with sqlite_store.sessions.begin() as session:
        tv = await add_product(session, "SKU-EL-1", "electronics", price=900.0)
        ada = await add_customer(session, "ada", tier="gold")
        await add_interactions(session, ada, tv, "purchase", 6, days_ago=5)
        await rebuild_profile_metrics(session, now=NOW)
    return sqlite_store


@pytest.fixture
async def app(
    seeded: SqlStore, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Sanic[Any, Any]]:
    """rasa-sdk's app with the plugin installed and a webhook token set."""
    # The test client stops the server after each request, which closes the service;
    # the next request builds one from these settings.
    for name, value in {
        "PERSONALIZE_DATABASE_URL": sqlite_url,
        "PERSONALIZE_SECRET_KEY": TEST_SECRET,
        "PERSONALIZE_MODEL_DIR": str(tmp_path / "models"),
        "PERSONALIZE_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    install_service(PersonalizationService(make_settings(sqlite_url), seeded))
    yield install(create_app(ActionExecutor()))
    await shutdown_service()


async def call(app: Sanic[Any, Any], action: str, sender: str = "web-1") -> int:
    body = action_call(action, tracker_state(sender_id=sender, user_id="ada"))
    _, response = await app.asgi_client.post(f"/webhook?token={WEBHOOK_TOKEN}", json=body)
    status: int = response.status
    return status


# -- actions --------------------------------------------------------------------------------


async def test_n_action_calls_add_n_to_the_histogram_and_to_metrics(app: Sanic[Any, Any]) -> None:
    """Five webhook calls: the count grows by five, and /metrics (no token) says so."""
    before = sample("personalize_action_seconds_count", action=ACTION)
    for _ in range(5):
        assert await call(app, ACTION) == 200
    after = sample("personalize_action_seconds_count", action=ACTION)

    _, response = await app.asgi_client.get("/metrics")

    assert after - before == 5
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert value_in(response.text, "personalize_action_seconds_count", action=ACTION) == after
    # Every call took some time, and far less than the 5 s bucket.
    assert sample("personalize_action_seconds_sum", action=ACTION) > 0
    assert sample("personalize_action_seconds_bucket", action=ACTION, le="5.0") == after


async def test_an_unknown_action_name_never_becomes_a_label(app: Sanic[Any, Any]) -> None:
    """The name comes from the request: only registered names are recorded."""
    invented = "action_invented_by_the_caller"
    assert await call(app, invented) == 404
    _, response = await app.asgi_client.get("/metrics")
    assert invented not in response.text


async def test_timing_twice_counts_once() -> None:
    """time_actions is idempotent: wrapping the executor again adds no second count."""
    executor = ActionExecutor()
    executor.register_package("rasa_personalize.handlers")
    metrics.time_actions(executor)
    metrics.time_actions(executor)
    before = sample("personalize_action_seconds_count", action="action_similar_products")
    # No product named: the action answers at once, without the service.
    await executor.run(action_call("action_similar_products", tracker_state(sender_id="x")))
    assert sample("personalize_action_seconds_count", action="action_similar_products") == (
        before + 1
    )


# -- defaults, by reason --------------------------------------------------------------------


async def test_a_known_customer_with_consent_counts_no_defaults(
    seeded: SqlStore, sqlite_url: str
) -> None:
    """Personalized answers count nothing."""
    service = PersonalizationService(make_settings(sqlite_url), seeded, clock=lambda: NOW)
    before = all_defaults()
    plan = await service.personalize(request("ada"))
    assert plan["loyalty_tier"] == "gold"
    assert changed(before) == {}


async def test_an_unknown_customer_counts_unknown_customer(
    seeded: SqlStore, sqlite_url: str
) -> None:
    service = PersonalizationService(make_settings(sqlite_url), seeded, clock=lambda: NOW)
    before = all_defaults()
    await service.personalize(request("stranger"))
    assert changed(before) == {"unknown_customer": 1}


async def test_a_customer_without_consent_counts_no_consent(
    seeded: SqlStore, sqlite_url: str
) -> None:
    """PERSONALIZE_CONSENT_DEFAULT=denied and no answer of theirs: no profile is used."""
    settings = make_settings(sqlite_url, consent_default="denied")
    service = PersonalizationService(settings, seeded, clock=lambda: NOW)
    before = all_defaults()
    plan = await service.personalize(request("ada"))
    assert plan["loyalty_tier"] == "none"
    assert changed(before) == {"no_consent": 1}


async def test_a_store_that_is_down_counts_store_down(tmp_path: Path) -> None:
    """An outage, then the open breaker: both answers count store_down."""
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'store.db'}"
    service = PersonalizationService(make_settings(url, store_retry_after_s=60.0))
    before = all_defaults()
    await service.personalize(request("ada"))
    await service.personalize(request("ada"))
    await service.close()
    assert changed(before) == {"store_down": 2}


class SlowStore(SqlStore):
    """A store whose snapshot reads outlast any action budget."""

    async def load_snapshot(self, customer_key: str) -> CustomerSnapshot | None:
        await asyncio.sleep(30)
        return None


async def test_a_slow_store_counts_timeout(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SlowStore(sqlite_url)
    monkeypatch.setattr(store, "inline_snapshot", lambda _key: NOT_INLINE)
    service = PersonalizationService(make_settings(sqlite_url, action_budget_s=0.1), store)
    before = all_defaults()
    await service.personalize(request("ada"))
    await service.close()
    assert changed(before) == {"timeout": 1}


async def test_a_value_the_store_refuses_counts_store_error(
    seeded: SqlStore, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request's data error is no outage: its own reason, and the breaker stays shut."""

    async def refused(customer_key: str) -> CustomerSnapshot | None:
        raise sqlalchemy_exc.DataError("SELECT 1", {}, ValueError("invalid byte sequence"))

    monkeypatch.setattr(seeded, "load_snapshot", refused)
    monkeypatch.setattr(seeded, "inline_snapshot", lambda _key: NOT_INLINE)
    service = PersonalizationService(make_settings(sqlite_url), seeded, clock=lambda: NOW)
    before = all_defaults()
    await service.personalize(request("ada"))
    assert changed(before) == {"store_error": 1}


async def test_recommendations_with_the_store_down_count_store_down(tmp_path: Path) -> None:
    """A recommendation whose profile read failed is a default answer too."""
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'store.db'}"
    service = PersonalizationService(
        make_settings(url, store_retry_after_s=60.0, model_dir=tmp_path / "models")
    )
    before = all_defaults()
    await service.recommend(request("ada"))
    await service.close()
    assert changed(before) == {"store_down": 1}


@pytest.mark.parametrize(
    ("cause", "reason"),
    [
        # the action budget ran out
        (asyncio.TimeoutError(), "timeout"),
        # a connection refused: an outage
        (sqlalchemy_exc.OperationalError("SELECT 1", {}, OSError("refused")), "store_down"),
        # a value the database refused: this request only
        (sqlalchemy_exc.IntegrityError("INSERT", {}, ValueError("duplicate")), "store_error"),
        # the breaker was open: no cause, the store was not asked
        (None, "store_down"),
    ],
)
def test_store_failure_reasons(cause: BaseException | None, reason: str) -> None:
    error = StoreUnavailableError("x")
    error.__cause__ = cause
    assert metrics.store_failure_reason(error) == reason


# -- breakers ----------------------------------------------------------------------------


def breaker_open(dependency: str) -> float:
    return sample("personalize_breaker_open", dependency=dependency)


@pytest.fixture
def no_open_breakers() -> None:
    """Start with no breaker open: a service an earlier test left alive (a failure under
    load keeps one referenced) would hold the process-wide gauge at 1."""
    gc.collect()
    server = metrics.server_metrics()
    for dependency, breakers in server.open_breakers.items():
        breakers.clear()
        server.breaker_by_dependency[dependency].set(0)


@pytest.mark.usefixtures("no_open_breakers")
async def test_the_store_breaker_gauge_follows_an_outage_and_the_recovery(tmp_path: Path) -> None:
    """1 from the first failure until the first success, 0 after."""
    folder = tmp_path / "later"
    url = f"sqlite:///{folder / 'store.db'}"
    service = PersonalizationService(make_settings(url), clock=lambda: NOW)
    await service.personalize(request("ada"))
    during = breaker_open("store")
    folder.mkdir()
    await asyncio.to_thread(upgrade, url)
    await service.personalize(request("ada"))
    after = breaker_open("store")
    await service.close()
    assert (during, after) == (1, 0)


@pytest.mark.usefixtures("no_open_breakers")
def test_the_redis_gauge_stays_open_while_any_breaker_is() -> None:
    """Two Redis breakers in one process: the gauge drops only when both answer again."""
    cache = RedisBreaker("cache", timeout_s=0.1)
    stream = RedisBreaker("stream", timeout_s=0.1)
    cache.record_failure(OSError("down"))
    stream.record_failure(OSError("down"))
    both = breaker_open("redis")
    cache.record_success()
    one = breaker_open("redis")
    stream.record_success()
    none = breaker_open("redis")
    assert (both, one, none) == (1, 1, 0)


# -- recommendations and the model --------------------------------------------------------


async def test_a_served_list_counts_its_source(
    seeded: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """The source counted is the recommendation_source slot the customer got."""
    service = PersonalizationService(
        make_settings(sqlite_url, model_dir=tmp_path / "models"), seeded, clock=lambda: NOW
    )
    counts = {
        s: sample("personalize_recommendations_total", source=s)
        for s in metrics.RECOMMENDATION_SOURCES
    }
    plan = await service.recommend(request("stranger"))
    await service.close()
    source = plan["recommendation_source"]
    moved = {
        s: sample("personalize_recommendations_total", source=s) - before
        for s, before in counts.items()
        if sample("personalize_recommendations_total", source=s) != before
    }
    assert source in metrics.RECOMMENDATION_SOURCES
    assert moved == {source: 1}


def test_the_served_model_and_its_age(tmp_path: Path) -> None:
    """Version 1, then version 2: one info series at 1, the other at 0; the age follows."""
    model_dir = als_dir(tmp_path / "models")
    model = AlsRecommender(
        factors=2, regularization=0.1, iterations=5, random_state=0, num_threads=1
    ).fit(checkerboard())
    trained = datetime.now(timezone.utc) - timedelta(days=3)
    first = save_artifact(model, model_dir, trained_at=trained)
    holder = ModelHolder(model_dir, check_interval_s=0.0)
    assert holder.get() is not None
    text_1 = metrics.exposition()[0].decode()
    second = save_artifact(model, model_dir, trained_at=trained + timedelta(days=2))
    assert holder.get() is not None
    text_2 = metrics.exposition()[0].decode()

    assert value_in(text_1, "personalize_model_info", version=first.version) == 1
    age_1 = value_in(text_1, "personalize_model_age_seconds")
    assert age_1 is not None
    assert abs(age_1 - 3 * 86400) < 60
    assert value_in(text_2, "personalize_model_info", version=first.version) == 0
    assert value_in(text_2, "personalize_model_info", version=second.version) == 1
    age_2 = value_in(text_2, "personalize_model_age_seconds")
    assert age_2 is not None
    assert abs(age_2 - 86400) < 60


def test_multiprocess_directory_cleans_a_given_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory the operator named is kept but emptied of an earlier run's files."""
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_1234.db").write_bytes(b"old")
    (folder / "notes.txt").write_text("kept")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(folder))
    with metrics.multiprocess_directory() as used:
        assert used == folder
        assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert os.environ[metrics.MULTIPROC_ENV] == str(folder)
    assert folder.is_dir()


def test_multiprocess_directory_makes_and_removes_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    with metrics.multiprocess_directory() as used:
        assert os.environ[metrics.MULTIPROC_ENV] == str(used)
        assert used.is_dir()
    assert metrics.MULTIPROC_ENV not in os.environ
    assert not used.exists()


async def test_no_customer_id_or_key_in_any_label(app: Sanic[Any, Any]) -> None:
    """A canary customer id sent to every action: /metrics never shows it, nor its key."""
    canary = "canary-7f3a9c@example.com"
    for action in (ACTION, "action_recommend_products", "action_session_start", "action_x"):
        body = action_call(action, tracker_state(sender_id=canary, user_id=canary))
        await app.asgi_client.post(f"/webhook?token={WEBHOOK_TOKEN}", json=body)
    _, response = await app.asgi_client.get("/metrics")
    assert response.status == 200
    assert "personalize_action_seconds_count" in response.text
    assert "canary" not in response.text
    assert customer_key(TEST_SECRET, canary) not in response.text


async def test_a_timed_executor_pickles_and_still_times() -> None:
    """rasa-sdk's server pickles the executor to start its workers: the timing survives."""
    executor = ActionExecutor()
    executor.register_package("rasa_personalize.handlers")
    metrics.time_actions(executor)
    copy = pickle.loads(pickle.dumps(executor))
    metrics.time_actions(copy)  # the worker installs the plugin again: still one timing
    before = sample("personalize_action_seconds_count", action="action_similar_products")
    await copy.run(action_call("action_similar_products", tracker_state(sender_id="x")))
    assert sample("personalize_action_seconds_count", action="action_similar_products") == (
        before + 1
    )


def test_rasa_sdk_workers_without_a_directory_get_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ACTION_SERVER_SANIC_WORKERS=2 alone: each scrape would see one worker, so say so."""
    monkeypatch.setenv("ACTION_SERVER_SANIC_WORKERS", "2")
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="rasa_personalize.metrics"):
        metrics.attach_metrics_route(Sanic("metrics_warning_test"))
    assert "PROMETHEUS_MULTIPROC_DIR" in caplog.text
