"""Consent in the conversation: what a customer allowed decides what their actions read,
offer and store, on every backend and through the inline SQLite read alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers import (
    ActionRecommendProducts,
    ActionRecordRecommendationFeedback,
    ActionRefreshPersonalization,
)
from rasa_personalize.identity import customer_key
from rasa_personalize.runtime import install_service
from rasa_personalize.store.consent import set_consent
from rasa_personalize.store.models import Interaction
from rasa_personalize.store.sql_store import NOT_INLINE, SqlStore
from rasa_personalize.testing import load_tracker, run_action, slots_from_events
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW
from tests.handlers.test_chat_events import SENDER, add_catalogue, ask

DATA = Path(__file__).resolve().parent.parent / "data"
MID_CONVERSATION = DATA / "tracker_mid_conversation.json"  # demo-loyal, mid-conversation


async def answer(store: SqlStore, customer: str, **decisions: bool) -> None:
    async with store.sessions.begin() as session:
        await set_consent(
            session,
            customer_key(TEST_SECRET, customer),
            decisions,
            source="cli",
            policy_version=None,
            now=NOW,
        )


async def refreshed_slots(
    store: SqlStore, database_url: str, tmp_path: Path, consent_default: str = "granted"
) -> dict[str, object]:
    """The slots of demo-loyal's refresh, from a service with this consent default."""
    settings = make_settings(
        database_url, model_dir=tmp_path / "models", consent_default=consent_default
    )
    install_service(PersonalizationService(settings, store, clock=lambda: NOW))
    events = await run_action(ActionRefreshPersonalization(), load_tracker(MID_CONVERSATION))
    return slots_from_events(events)


async def test_without_an_answer_the_profile_is_used_and_consent_is_unknown(
    service: PersonalizationService,
) -> None:
    """Opt-out default (granted): a gold, loyal customer, and the dialogue may still ask."""
    slots = slots_from_events(
        await run_action(ActionRefreshPersonalization(), load_tracker(MID_CONVERSATION))
    )
    assert slots["loyalty_tier"] == "gold"
    assert slots["offer_type"] == "exclusive_access"
    assert slots["personalization_consent"] == "unknown"


async def test_denied_personalization_answers_the_defaults(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """Their tier, tags, segment and favourite stay unused; the slot says denied."""
    await answer(store, "demo-loyal", personalization=False)

    slots = await refreshed_slots(store, database_url, tmp_path)

    assert slots["customer_segment"] == "new_visitor"
    assert slots["loyalty_tier"] == "none"
    assert slots["is_returning_customer"] is False
    assert slots["user_tags"] == []
    assert slots["favorite_category"] is None
    assert slots["personalization_consent"] == "denied"


async def test_granted_personalization_overrides_an_opt_in_default(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """GDPR-style default (denied): only a customer who said yes is personalized."""
    await answer(store, "demo-loyal", personalization=True, marketing=True)

    slots = await refreshed_slots(store, database_url, tmp_path, consent_default="denied")

    assert slots["loyalty_tier"] == "gold"
    assert slots["offer_type"] == "exclusive_access"
    assert slots["personalization_consent"] == "granted"


async def test_an_opt_in_default_personalizes_nobody_who_never_answered(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """Default denied, no answer: the defaults, no offer, and the slot says unknown."""
    slots = await refreshed_slots(store, database_url, tmp_path, consent_default="denied")

    assert slots["loyalty_tier"] == "none"
    assert slots["offer_type"] == "none"
    assert slots["discount_pct"] == 0
    assert slots["personalization_consent"] == "unknown"


async def test_denied_marketing_means_no_offer_but_a_personal_answer(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """Personalization allowed, marketing denied: the tier stays, the offer goes."""
    await answer(store, "demo-loyal", personalization=True, marketing=False)

    slots = await refreshed_slots(store, database_url, tmp_path)

    assert slots["loyalty_tier"] == "gold"
    assert slots["offer_type"] == "none"
    assert slots["discount_pct"] == 0
    assert slots["personalization_consent"] == "granted"


async def test_denied_personalization_recommends_as_to_a_visitor(
    service: PersonalizationService, store: SqlStore
) -> None:
    """No 'because you bought', no favourite category: what anyone would be shown."""
    await add_catalogue(store, service)
    await answer(store, "demo-bargain", personalization=False)

    events = await run_action(ActionRecommendProducts(), ask("anything for me?", "recommend"))

    slots = slots_from_events(events)
    assert slots["recommendation_source"] == "popular"
    assert "because you" not in (slots["recommendation_reason"] or "")


async def chat_rows(store: SqlStore) -> int:
    async with store.sessions() as session:
        count = await session.scalar(
            select(func.count()).where(Interaction.event_id.like("chat-%"))
        )
        return int(count or 0)


@pytest.mark.parametrize("decisions", [{"tracking": False}, {}])
async def test_without_tracking_consent_the_chat_stores_and_counts_nothing(
    store: SqlStore, database_url: str, tmp_path: Path, decisions: dict[str, bool]
) -> None:
    """Denied by the customer, or by an opt-in default: no shown, no feedback, no counter."""
    settings = make_settings(
        database_url,
        model_dir=tmp_path / "models",
        consent_default="denied" if not decisions else "granted",
    )
    service = PersonalizationService(settings, store, clock=lambda: NOW)
    install_service(service)
    await add_catalogue(store, service)
    if decisions:
        await answer(store, "demo-bargain", **decisions)

    await run_action(ActionRecommendProducts(), ask("shoes?", "recommend"))
    await run_action(
        ActionRecordRecommendationFeedback(),
        ask("yes", "affirm", message_id="m-2", recommended_products=[{"sku": "SKU-EL-2"}]),
    )
    await service.drain()

    assert await chat_rows(store) == 0
    counts = await service.session_counters.read(SENDER)
    assert counts.recommendations_shown == 0
    assert counts.recommendations_accepted == 0


async def test_with_tracking_consent_the_chat_is_stored(
    service: PersonalizationService, store: SqlStore
) -> None:
    """The control: the same turns with consent store the products shown."""
    await add_catalogue(store, service)
    await answer(store, "demo-bargain", tracking=True)

    await run_action(ActionRecommendProducts(), ask("shoes?", "recommend"))
    await service.drain()

    assert await chat_rows(store) > 0


async def test_denied_personalization_reads_no_history(
    service: PersonalizationService, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their purchases and recent interactions are not even read."""
    await add_catalogue(store, service)
    await answer(store, "demo-bargain", personalization=False)

    async def must_not_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("a denied customer's items were read")

    monkeypatch.setattr(store, "load_customer_items", must_not_read)
    monkeypatch.setattr(store, "load_customer_context", must_not_read)
    monkeypatch.setattr(store, "inline_snapshot", store.inline_snapshot)  # kept as it is
    if store.inline_snapshot(customer_key(TEST_SECRET, "demo-bargain")) is NOT_INLINE:
        pytest.skip("the snapshot and items come in one read without an inline reader")

    events = await run_action(ActionRecommendProducts(), ask("anything for me?", "recommend"))

    assert slots_from_events(events)["recommendation_source"] == "popular"
