"""Adaptive allocation through the service and the CLI: new customers follow the weights
in force, exposed customers keep their arm, and the commands show the weights."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import (
    ConversationRef,
    PersonalizationRequest,
    PersonalizationService,
    decide,
)
from rasa_personalize.identity import CustomerIdentity
from rasa_personalize.rules import RuleBook
from rasa_personalize.rules.experiments import ExperimentUnit, experiment_secret
from rasa_personalize.store.models import ExperimentExposure
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.factories import NOW, add_customer, add_interactions, add_product

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
      - {name: twenty, weight: 50, then: {discount_pct: 20}}
    goal: purchase
    window_days: 7
    allocation: thompson
    min_exposures_per_arm: 20
"""
UTC_NOON = ConversationContext(utc_offset_minutes=0)
runner = CliRunner()


def chat(customer: str) -> PersonalizationRequest:
    return PersonalizationRequest(
        CustomerIdentity(customer, "message_metadata", verified=True),
        UTC_NOON,
        ConversationRef(f"conversation-of-{customer}", "message-0"),
    )


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "personalization.yml"
    path.write_text(RULES, encoding="utf-8")
    return path


def service_for(store: SqlStore, url: str, rules_file: Path) -> PersonalizationService:
    return PersonalizationService(
        make_settings(url, rules_path=rules_file),
        store,
        clock=lambda: NOW,
        rules=RuleBook(rules_file),
    )


async def seed(store: SqlStore, arms: dict[str, tuple[int, int]]) -> None:
    """Per arm, customers '<arm>-<n>' exposed three days ago; the first ``conversions`` of
    them bought two days ago."""
    async with store.sessions.begin() as session:
        shoes = await add_product(session, "SKU-1", "shoes", price=30.0)
        for arm, (exposures, conversions) in arms.items():
            for index in range(exposures):
                customer = await add_customer(session, f"{arm}-{index}")
                session.add(
                    ExperimentExposure(
                        experiment="bigger_discount",
                        customer_key=customer.customer_key,
                        arm=arm,
                        exposed_at=NOW - timedelta(days=3),
                    )
                )
                if index < conversions:
                    await add_interactions(session, customer, shoes, "purchase", 1, days_ago=2)


async def test_exposed_customers_keep_their_arm_and_new_ones_follow_the_weights(
    store: SqlStore, database_url: str, rules_file: Path
) -> None:
    """Twenty converted 12 of 40, control 1 of 40: new customers get twenty about 95% of
    the time, while each of the 80 exposed customers keeps the arm of their exposure
    (most control customers' hash now points at twenty)."""
    await seed(store, {"control": (40, 1), "twenty": (40, 12)})
    service = service_for(store, database_url, rules_file)
    assert await service.allocation.refresh()
    weights = service.allocation.in_force["bigger_discount"]
    assert weights.share_of("twenty") == pytest.approx(0.95, abs=0.01)
    for arm, discount in (("control", 10), ("twenty", 20)):
        for index in range(40):
            plan = await service.personalize(chat(f"{arm}-{index}"))
            assert plan["discount_pct"] == discount, (arm, index)
    new = Counter(
        [(await service.personalize(chat(f"new-{index}")))["discount_pct"] for index in range(300)]
    )
    assert new[20] / 300 == pytest.approx(0.95, abs=0.05)
    # The background refresher started with the first answer and computed the same weights.
    assert service.allocation.running
    await service.allocation.wait_for_pass()
    assert service.allocation.in_force["bigger_discount"] == weights
    await service.close()
    assert not service.allocation.running


async def test_the_request_path_assigns_by_the_weights_in_force(
    sqlite_store: SqlStore, sqlite_url: str, rules_file: Path
) -> None:
    """10,000 new customers split as the weights computed from the store say (within
    2 points), and differently from the configured 50/50."""
    await seed(sqlite_store, {"control": (100, 10), "twenty": (100, 14)})
    service = service_for(sqlite_store, sqlite_url, rules_file)
    assert await service.allocation.refresh()
    rules = service.rules.current()
    allocations = service.allocation.current(rules)
    expected = allocations["bigger_discount"].share_of("twenty")
    assert 0.7 < expected < 0.9
    secret = experiment_secret(TEST_SECRET)
    arms = Counter(
        decide(
            None,
            NOW,
            UTC_NOON,
            rules,
            experiment_unit=ExperimentUnit(f"{n:064x}", secret, allocations),
        )[1].arm
        for n in range(10_000)
    )
    assert arms["twenty"] / 10_000 == pytest.approx(expected, abs=0.02)
    await service.close()


def test_the_commands_show_the_allocation_and_the_weights_in_force(
    sqlite_url: str, rules_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`experiments list` and `report` name the allocation and show the weights every
    server computes (the same counts as of the same time, the same draws)."""

    async def prepare() -> dict[str, Any]:
        store = await migrated_store(sqlite_url)
        await seed(store, {"control": (40, 1), "twenty": (40, 12)})
        await store.dispose()
        return {}

    asyncio.run(prepare())
    monkeypatch.setenv("PERSONALIZE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("PERSONALIZE_RULES_PATH", str(rules_file))
    listed = runner.invoke(app, ["experiments", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)["experiments"]
    assert (row["allocation"], row["min_exposures_per_arm"], row["refresh_minutes"]) == (
        "thompson",
        20,
        5,
    )
    assert row["adapted"] is True
    assert row["current_weights"]["twenty"] == pytest.approx(0.95, abs=0.01)
    assert row["current_weights"]["control"] == pytest.approx(0.05, abs=0.01)
    table = runner.invoke(app, ["experiments", "list"])
    assert "adapting" in table.output
    assert "94.9%" in table.output  # twenty's share now
    report = runner.invoke(app, ["experiments", "report", "bigger_discount", "--json"])
    assert report.exit_code == 0, report.output
    document = json.loads(report.stdout)
    assert document["allocation"] == "thompson"
    assert document["current_weights"] == row["current_weights"]
    assert document["srm_p_value"] is None  # no split to check when the weights move
    shown = runner.invoke(app, ["experiments", "report", "bigger_discount"])
    assert shown.exit_code == 0, shown.output
    assert "Allocation: thompson, weights in force control 5" in shown.output
    assert "Sample ratio: not checked" in shown.output
