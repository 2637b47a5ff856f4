"""A simulated experiment through the real webhook and events API: customers see their arm
in the slots, buy at a known rate for what they saw, and the report finds those rates."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor

from rasa_personalize.clock import utc_now
from rasa_personalize.engine import PersonalizationService
from rasa_personalize.events.api import attach_event_routes
from rasa_personalize.events.apikeys import create_api_key
from rasa_personalize.experiments.stats import ArmCounts, analyze
from rasa_personalize.rules import RuleBook, load_rules
from rasa_personalize.runtime import install_service, personalization_service, shutdown_service
from rasa_personalize.store.experiments import experiment_outcomes
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import action_call, slots_from_events, tracker_state
from rasa_personalize.webhook import attach_extensions
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import add_product

RULES = """\
rules:
  - name: a discount for everyone
    when: {segment: new_visitor}
    then: {offer_type: discount, discount_pct: 10}
experiments:
  - name: bigger_discount
    status: running
    arms:
      - {name: control, weight: 50}
      - {name: twenty, weight: 50, then: {discount_pct: 20}}
    goal: purchase
    window_days: 7
"""
# What a shopper does after hearing the offer: the truth the report must find.
PURCHASE_RATE = {10: 0.20, 20: 0.32}
CUSTOMERS = 800


@pytest.fixture
async def shop(
    sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The action server (webhook and events API over one store), listening on a local
    port, a client for it, and an ingest key."""
    rules_file = tmp_path / "personalization.yml"
    rules_file.write_text(RULES, encoding="utf-8")
    # What the server would read at start, should it build a service of its own.
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERSONALIZE_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("PERSONALIZE_RULES_PATH", str(rules_file))
    async with sqlite_store.sessions.begin() as session:
        await add_product(session, "SKU-1", "shoes", price=50.0)
        _, ingest_key = await create_api_key(session, "ingest", label="shop backend")
    settings = make_settings(sqlite_url, rules_path=rules_file)
    install_service(PersonalizationService(settings, sqlite_store, rules=RuleBook(rules_file)))
    executor = ActionExecutor()
    executor.register_package("rasa_personalize.handlers")
    app = attach_event_routes(attach_extensions(create_app(executor)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert server is not None
    await server.startup()
    await server.after_start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
        yield client, ingest_key
    await server.before_stop()
    await server.close()
    await server.after_stop()
    await shutdown_service()


async def test_the_report_finds_the_known_rates(shop: tuple[httpx.AsyncClient, str]) -> None:
    client, ingest_key = shop
    rng = random.Random(20261207)
    for index in range(CUSTOMERS):
        customer = f"shopper-{index:04d}"
        tracker = tracker_state(sender_id=f"conversation-{index}", user_id=customer)
        answer = await client.post("/webhook", json=action_call("action_session_start", tracker))
        assert answer.status_code == 200
        discount = slots_from_events(answer.json()["events"])["discount_pct"]
        if rng.random() < PURCHASE_RATE[discount]:
            purchase = {
                "event_id": f"order-{index}",
                "customer": customer,
                "product": "SKU-1",
                "kind": "purchase",
                "price": 50.0,
                # After the answer: the purchase follows the offer.
                "timestamp": utc_now().isoformat(),
            }
            stored = await client.post(
                "/personalize/events",
                json={"events": [purchase]},
                headers={"Authorization": f"Bearer {ingest_key}"},
            )
            assert stored.json()["accepted"] == [f"order-{index}"], stored.json()
    service = personalization_service()
    await service.drain()

    (experiment,) = load_rules(service.settings.rules_path).experiments
    async with service.store.sessions() as session:
        outcomes = await experiment_outcomes(
            session, experiment.name, experiment.goal, timedelta(days=experiment.window_days)
        )
    counts = [
        ArmCounts(arm.name, arm.weight, outcomes.arms[arm.name].exposures,
                  outcomes.arms[arm.name].conversions, outcomes.arms[arm.name].revenue)
        for arm in experiment.arms
    ]  # fmt: skip
    analysis = analyze(counts, "control")
    assert sum(arm.exposures for arm in analysis.arms) == CUSTOMERS
    assert not analysis.srm_flagged
    for arm, discount in (("control", 10), ("twenty", 20)):
        result = analysis.arm(arm)
        assert result.rate_ci_low is not None
        assert result.rate_ci_high is not None
        assert result.rate_ci_low <= PURCHASE_RATE[discount] <= result.rate_ci_high
        assert result.revenue_per_exposed == pytest.approx(50.0 * (result.rate or 0.0))
    twenty = analysis.arm("twenty")
    assert twenty.ci_low is not None
    assert twenty.ci_high is not None
    assert twenty.ci_low <= PURCHASE_RATE[20] - PURCHASE_RATE[10] <= twenty.ci_high
