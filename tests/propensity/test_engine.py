"""The stored score reaches the conversation: the purchase_propensity slot and the
propensity_purchase_7d rule field, only with consent to use the profile."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from rasa_personalize.context import ConversationContext
from rasa_personalize.engine import (
    PersonalizationRequest,
    PersonalizationService,
    decide,
    default_plan,
)
from rasa_personalize.identity import CustomerIdentity, customer_key
from rasa_personalize.propensity.training import train_propensity
from rasa_personalize.rules import facts_from, parse_rules
from rasa_personalize.store.records import (
    CustomerSnapshot,
    Demographics,
    ProfileMetrics,
    PropensityRecord,
)
from rasa_personalize.store.repository import load_customer_snapshot
from tests.conftest import TEST_SECRET, make_settings, migrated_store
from tests.propensity.conftest import NOW

UTC = ConversationContext(utc_offset_minutes=0)
RULES = parse_rules(
    """
version: 1
defaults: {offer_type: none, discount_pct: 0}
rules:
  - name: likely buyers get free shipping
    when: {propensity_purchase_7d: {gte: 0.5}}
    then: {offer_type: free_shipping}
  - name: unlikely buyers get a nudge
    when: {propensity_purchase_7d: {lt: 0.1}}
    then: {offer_type: discount, discount_pct: 10}
"""
)


def snapshot(score: PropensityRecord | None, **consent: bool) -> CustomerSnapshot:
    """A returning customer with (or without) a stored purchase_7d score."""
    return CustomerSnapshot(
        customer_id=7,
        created_at=datetime(2025, 1, 1, tzinfo=timezone.utc),
        loyalty_tier="silver",
        demographics=Demographics(),
        attributes={},
        metrics=ProfileMetrics(
            interaction_count=9,
            propensity={"purchase_7d": score} if score is not None else {},
        ),
        profile_version=2,
        tags=(),
        segment=None,
        consent=consent,
    )


@pytest.mark.parametrize(
    ("score", "band", "offer"),
    [
        (PropensityRecord(0.62, "high", "p-1", NOW), "high", "free_shipping"),  # likely
        (PropensityRecord(0.05, "low", "p-1", NOW), "low", "discount"),  # unlikely
        (PropensityRecord(0.3, "medium", "p-1", NOW), "medium", "none"),  # neither rule
        (None, "unknown", "none"),  # never scored: no rule on the field matches
        (PropensityRecord(0.3, "huge", "p-1", NOW), "unknown", "none"),  # not a contract band
    ],
)
def test_the_slot_is_the_band_and_rules_read_the_score(
    score: PropensityRecord | None, band: str, offer: str
) -> None:
    """With consent (the default), the slot carries the band and the rule sees the score."""
    plan, _ = decide(snapshot(score), NOW, UTC, RULES)
    assert (plan["purchase_propensity"], plan["offer_type"]) == (band, offer)
    facts = facts_from(snapshot(score), "browser", UTC, NOW)
    assert facts.propensity_purchase_7d == (score.score if score is not None else None)


def test_without_consent_the_score_is_not_used() -> None:
    """A customer who said no to personalization: unknown slot, no field, no rule."""
    scored = snapshot(PropensityRecord(0.9, "high", "p-1", NOW), personalization=False)
    plan, decision = decide(scored, NOW, UTC, RULES)
    assert plan["purchase_propensity"] == "unknown"
    assert plan["offer_type"] == "none"
    assert decision.rule is None


def test_the_defaults_say_unknown() -> None:
    """An unknown visitor or a store that is down: unknown."""
    assert default_plan(NOW)["purchase_propensity"] == "unknown"


def test_a_stored_score_reaches_the_slot(demo_shop: Path, tmp_path: Path) -> None:
    """Trained on the demo shop, a named customer's stored band is what the engine sets."""
    path = tmp_path / "shop.db"
    shutil.copyfile(demo_shop, path)
    key = customer_key(TEST_SECRET, "demo-loyal")

    async def run() -> tuple[str, str | None]:
        store = await migrated_store(f"sqlite:///{path}")
        service = PersonalizationService(
            make_settings(f"sqlite:///{path}"), store, clock=lambda: NOW
        )
        try:
            async with store.sessions.begin() as session:
                await train_propensity(session, now=NOW)
            async with store.sessions() as session:
                stored = await load_customer_snapshot(session, key)
            assert stored is not None
            record = stored.metrics.propensity["purchase_7d"]
            request = PersonalizationRequest(
                CustomerIdentity("demo-loyal", "message_metadata"), UTC
            )
            plan = await service.personalize(request)
            return plan["purchase_propensity"], record.band
        finally:
            await service.close()
            await store.dispose()

    slot, band = asyncio.run(run())
    assert slot == band
    assert slot in ("low", "medium", "high")


def test_replacing_the_score_changes_the_snapshot() -> None:
    """Snapshots compare by value: a new score is a new snapshot (caches see the change)."""
    first = snapshot(PropensityRecord(0.2, "medium", "p-1", NOW))
    second = replace(first, metrics=replace(first.metrics, propensity={}))
    assert first != second
