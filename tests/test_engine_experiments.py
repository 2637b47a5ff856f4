"""Experiments through the service and the store: arms in the slots, one exposure per
customer, conversions in the window, consent respected, and the CLI report."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import ConversationRef, PersonalizationRequest, PersonalizationService
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.rules import RuleBook
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.experiments import experiment_outcomes
from rasa_personalize.store.models import CustomerAlias, ExperimentExposure
from rasa_personalize.store.repository import rebuild_profile_metrics
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.factories import NOW, add_customer, add_interactions, add_product
from tests.prometheus_tools import sample

RULES = """\
rules:
  - name: everyone
    when: {segment: [new_visitor, frequent_buyer, price_sensitive, loyal, at_risk, browser]}
    then: {offer_type: discount, discount_pct: 10}
experiments:
  - name: bigger_discount
    status: running
    arms:
      - {name: control, weight: 50}
      - {name: twenty, weight: 50, then: {discount_pct: 20, response_variant: bold}}
    goal: purchase
    window_days: 7
"""
UTC_NOON = ConversationContext(utc_offset_minutes=0)
EXPOSURES = "personalize_experiment_exposures_total"
runner = CliRunner()


def chat(customer: str, turn: int = 0) -> PersonalizationRequest:
    return PersonalizationRequest(
        CustomerIdentity(customer, "message_metadata", verified=True),
        UTC_NOON,
        ConversationRef(f"conversation-of-{customer}", f"message-{turn}"),
    )


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "personalization.yml"
    path.write_text(RULES, encoding="utf-8")
    return path


def service_for(
    store: SqlStore, url: str, rules_file: Path, **settings: Any
) -> PersonalizationService:
    return PersonalizationService(
        make_settings(url, rules_path=rules_file, **settings),
        store,
        clock=lambda: NOW,
        rules=RuleBook(rules_file),
    )


async def exposures(store: SqlStore) -> dict[str, str]:
    async with store.sessions() as session:
        rows = await session.execute(
            select(ExperimentExposure.customer_key, ExperimentExposure.arm)
        )
        return {str(key): str(arm) for key, arm in rows.all()}


async def test_arms_shape_the_slots_and_each_customer_is_exposed_once(
    sqlite_store: SqlStore, sqlite_url: str, rules_file: Path
) -> None:
    """Forty customers, three turns each: half hear 20% (and the 'bold' wording), half the
    rule's 10%; one exposure row each, with the arm their slots showed."""
    names = [f"customer-{index}" for index in range(40)]
    async with sqlite_store.sessions.begin() as session:
        for name in names:
            await add_customer(session, name)
    service = service_for(sqlite_store, sqlite_url, rules_file)
    counted = {
        arm: sample(EXPOSURES, experiment="bigger_discount", arm=arm)
        for arm in ("control", "twenty")
    }
    seen: dict[str, set[tuple[Any, Any]]] = {}
    for turn in range(3):
        for name in names:
            plan = await service.personalize(chat(name, turn))
            seen.setdefault(name, set()).add((plan["discount_pct"], plan["response_variant"]))
    await service.drain()
    assert all(len(answers) == 1 for answers in seen.values())  # the same arm every turn
    answers = Counter(next(iter(answers)) for answers in seen.values())
    assert set(answers) == {(10, None), (20, "bold")}
    stored = await exposures(sqlite_store)
    assert len(stored) == 40
    for name in names:
        arm = stored[customer_key(TEST_SECRET, name)]
        assert arm == ("twenty" if next(iter(seen[name]))[0] == 20 else "control")
    # The metric counts each customer once, by arm (no customer in any label).
    for arm in ("control", "twenty"):
        exposed = sum(1 for value in stored.values() if value == arm)
        assert sample(EXPOSURES, experiment="bigger_discount", arm=arm) - counted[arm] == exposed
    await service.close()


async def test_no_exposure_without_tracking_and_no_arm_without_personalization(
    sqlite_store: SqlStore, sqlite_url: str, rules_file: Path
) -> None:
    async with sqlite_store.sessions.begin() as session:
        for name in ("untracked", "private"):
            await add_customer(session, name)
        await set_consent(
            session, customer_key(TEST_SECRET, "untracked"), {"tracking": False},
            source="cli", policy_version=None, now=NOW,
        )  # fmt: skip
        await set_consent(
            session, customer_key(TEST_SECRET, "private"), {"personalization": False},
            source="cli", policy_version=None, now=NOW,
        )  # fmt: skip
    service = service_for(sqlite_store, sqlite_url, rules_file)
    await service.personalize(chat("untracked"))
    private = await service.personalize(chat("private"))
    await service.drain()
    assert await exposures(sqlite_store) == {}
    # The private customer is decided as a visitor, outside the experiment.
    assert (private["discount_pct"], private["response_variant"]) == (10, None)
    await service.close()


async def test_outcomes_count_goal_events_in_the_window_only(store: SqlStore) -> None:
    """A purchase 2 days after exposure converts; one before it or after the window does
    not; an alias's exposure reaches the merged customer's purchases; revenue adds up."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes", price=50.0)
        buyer = await add_customer(session, "buyer")
        late = await add_customer(session, "late")
        merged = await add_customer(session, "merged")
        await add_customer(session, "idle")
        old_key = customer_key(TEST_SECRET, "merged-old-id")
        session.add(CustomerAlias(alias_key=old_key, customer_id=merged.id, match="exact"))
        exposed_at = NOW - timedelta(days=10)
        for key, arm in (
            (buyer.customer_key, "twenty"),
            (late.customer_key, "twenty"),
            (old_key, "control"),
            (customer_key(TEST_SECRET, "idle"), "control"),
        ):
            session.add(ExperimentExposure(
                experiment="bigger_discount", customer_key=key, arm=arm, exposed_at=exposed_at
            ))  # fmt: skip
        await add_interactions(session, buyer, shoes, "purchase", 2, days_ago=8, paid=40.0)
        await add_interactions(session, late, shoes, "purchase", 1, days_ago=1)  # day 9: late
        await add_interactions(session, late, shoes, "purchase", 1, days_ago=11)  # before
        await add_interactions(session, merged, shoes, "purchase", 1, days_ago=5)
        await add_interactions(session, buyer, shoes, "view", 3, days_ago=9)  # not the goal
    async with store.sessions() as session:
        outcomes = await experiment_outcomes(
            session, "bigger_discount", "purchase", timedelta(days=7)
        )
    twenty, control = outcomes.arms["twenty"], outcomes.arms["control"]
    assert (twenty.exposures, twenty.conversions, twenty.revenue) == (2, 1, 80.0)
    assert (control.exposures, control.conversions, control.revenue) == (2, 1, 50.0)
    assert [(day.day, dict(day.arms)) for day in outcomes.daily] == [
        (exposed_at.date(), {"twenty": (2, 1), "control": (2, 1)})
    ]
    async with store.sessions() as session:
        accepted = await experiment_outcomes(session, "bigger_discount", "accept", timedelta(7))
    assert {arm: outcome.conversions for arm, outcome in accepted.arms.items()} == {
        "control": 0, "twenty": 0,
    }  # fmt: skip


def test_the_report_command_prints_the_arms_as_json(
    sqlite_url: str, rules_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`personalize experiments report NAME --json` on a store with known outcomes."""

    async def seed() -> None:
        store = await migrated_store(sqlite_url)
        async with store.sessions.begin() as session:
            shoes = await add_product(session, "SKU-1", "shoes", price=30.0)
            for index in range(200):
                customer = await add_customer(session, f"c{index}")
                arm = "twenty" if index % 2 else "control"
                session.add(ExperimentExposure(
                    experiment="bigger_discount", customer_key=customer.customer_key, arm=arm,
                    exposed_at=NOW - timedelta(days=6),
                ))  # fmt: skip
                # Per ten customers: three of five in twenty buy, one of five in control.
                if (arm == "twenty" and index % 10 in (1, 3, 5)) or (
                    arm == "control" and index % 10 == 0
                ):
                    await add_interactions(session, customer, shoes, "purchase", 1, days_ago=5)
            await rebuild_profile_metrics(session, now=NOW)
        await store.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERSONALIZE_RULES_PATH", str(rules_file))
    result = runner.invoke(app, ["experiments", "report", "bigger_discount", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["experiment"] == "bigger_discount"
    control, twenty = report["arms"]
    assert (control["name"], control["exposures"], control["conversions"]) == ("control", 100, 20)
    assert (twenty["name"], twenty["exposures"], twenty["conversions"]) == ("twenty", 100, 60)
    assert control["uplift"] is None
    assert twenty["uplift"] == pytest.approx(0.4)
    assert twenty["ci_low"] < 0.4 < twenty["ci_high"]
    assert twenty["p_value"] < 0.01
    assert twenty["prob_beat_control"] > 0.99
    assert report["srm_p_value"] == pytest.approx(1.0)

    page = tmp_path / "report.html"
    shown = runner.invoke(app, ["experiments", "report", "bigger_discount", "--html", str(page)])
    assert shown.exit_code == 0, shown.output
    assert "twenty" in shown.output
    assert "consistent with the weights" in shown.output
    html = page.read_text(encoding="utf-8")
    assert "bigger_discount" in html
    assert "<img" in html or "<svg" in html  # the pictures are inline

    listed = runner.invoke(app, ["experiments", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (experiment,) = json.loads(listed.stdout)["experiments"]
    assert [(arm["name"], arm["exposures"]) for arm in experiment["arms"]] == [
        ("control", 100), ("twenty", 100),
    ]  # fmt: skip

    unknown = runner.invoke(app, ["experiments", "report", "bigger_discont"])
    assert unknown.exit_code == 2
    assert "did you mean 'bigger_discount'" in unknown.output
