"""Verified identity through the real actions: with an identity secret, only a signed
``user_id`` is the customer, and nothing is written under an unproven claim."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk import Tracker
from sqlalchemy import select

from rasa_personalize import runtime
from rasa_personalize.engine import ConversationRef, PersonalizationRequest, PersonalizationService
from rasa_personalize.handlers.recommend import (
    ActionRecommendProducts,
    ActionRecordRecommendationFeedback,
)
from rasa_personalize.handlers.session import ActionRefreshPersonalization, ActionSessionStart
from rasa_personalize.identity import CustomerIdentity, customer_key, sign_user_id
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.models import Customer, Interaction
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW

IDENTITY_SECRET = "shop-identity-secret-0123456789"
SENDER = "conversation-0077"
CARRY_OVER = {"session_config": {"carry_over_slots_to_new_session": True}}


@pytest.fixture
async def verifying(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> AsyncIterator[PersonalizationService]:
    """The seeded shop (demo-loyal: gold; demo-bargain: price sensitive), served with an
    identity secret."""
    settings = make_settings(
        database_url, model_dir=tmp_path / "models", identity_secret=IDENTITY_SECRET
    )
    personalization = PersonalizationService(settings, store, clock=lambda: NOW)
    install_service(personalization)
    yield personalization
    await shutdown_service()


def claim(user_id: str, user_hash: str | None, intent: str = "greet", **slots: Any) -> Tracker:
    """A tracker whose latest message claims ``user_id``, with ``user_hash`` if given."""
    metadata: dict[str, Any] = {"user_id": user_id}
    if user_hash is not None:
        metadata["user_hash"] = user_hash
    return make_tracker(
        sender_id=SENDER, events=[user_message("hi", intent, metadata=metadata)], slots=slots
    )


async def interactions_of(store: SqlStore, external_id: str) -> list[tuple[str, float | None]]:
    """(kind, value) of every interaction stored under ``external_id``'s customer key."""
    async with store.sessions() as session:
        rows = await session.execute(
            select(Interaction.kind, Interaction.value)
            .join(Customer, Customer.id == Interaction.customer_id)
            .where(Customer.customer_key == customer_key(TEST_SECRET, external_id))
            .where(Interaction.event_id.like("chat-%"))
            .order_by(Interaction.kind)
        )
        return [(kind, value) for kind, value in rows]


async def test_a_signed_user_id_is_the_customer(verifying: PersonalizationService) -> None:
    """demo-loyal with the right hash: gold, loyal, as without verification."""
    events = await run_action(
        ActionRefreshPersonalization(),
        claim("demo-loyal", sign_user_id(IDENTITY_SECRET, "demo-loyal")),
    )
    slots = slots_from_events(events)
    assert (slots["customer_segment"], slots["loyalty_tier"]) == ("loyal", "gold")
    assert slots["user_tags"] == ["premium"]


@pytest.mark.parametrize(
    "user_hash",
    [
        None,  # no hash at all: what a forged browser payload sends
        "0" * 64,  # a wrong hash
        sign_user_id(IDENTITY_SECRET, "demo-loyal").upper(),  # not the lower-case hex
        sign_user_id(IDENTITY_SECRET, "demo-bargain"),  # another customer's valid hash
        sign_user_id("some-other-secret-0123456789", "demo-loyal"),  # another secret
    ],
)
async def test_an_unproven_claim_gets_the_new_visitor_defaults(
    verifying: PersonalizationService, user_hash: str | None
) -> None:
    """Claiming demo-loyal without its hash gives none of demo-loyal's profile."""
    events = await run_action(ActionRefreshPersonalization(), claim("demo-loyal", user_hash))
    slots = slots_from_events(events)
    assert slots["customer_segment"] == "new_visitor"
    assert slots["loyalty_tier"] == "none"
    assert slots["is_returning_customer"] is False
    assert slots["user_tags"] == []


async def test_session_start_verifies_the_session_metadata(
    verifying: PersonalizationService,
) -> None:
    """At session start the signed id in session_started_metadata is the customer."""
    metadata = {
        "user_id": "demo-bargain",
        "user_hash": sign_user_id(IDENTITY_SECRET, "demo-bargain"),
    }
    tracker = make_tracker(sender_id=SENDER, session_metadata=metadata)
    slots = slots_from_events(await run_action(ActionSessionStart(), tracker, CARRY_OVER))
    assert slots["customer_segment"] == "price_sensitive"
    assert slots["discount_pct"] == 15


async def test_session_start_without_a_hash_is_anonymous(
    verifying: PersonalizationService,
) -> None:
    """The same session metadata without its hash: new-visitor defaults."""
    tracker = make_tracker(sender_id=SENDER, session_metadata={"user_id": "demo-bargain"})
    slots = slots_from_events(await run_action(ActionSessionStart(), tracker, CARRY_OVER))
    assert slots["customer_segment"] == "new_visitor"
    assert slots["discount_pct"] == 0


async def test_feedback_for_an_unproven_claim_is_never_stored_under_the_claimed_key(
    verifying: PersonalizationService, store: SqlStore
) -> None:
    """A 'yes' claiming demo-loyal is stored for the anonymous conversation, not demo-loyal."""
    before = await interactions_of(store, "demo-loyal")
    tracker = claim("demo-loyal", None, "affirm", recommended_products=[{"sku": "SKU-EL-1"}])
    assert await run_action(ActionRecordRecommendationFeedback(), tracker) == []
    await verifying.drain()
    assert await interactions_of(store, "demo-loyal") == before == []
    # the anonymous visitor is the conversation, as for a channel without user ids
    assert await interactions_of(store, SENDER) == [("feedback", 1.0)]


async def test_feedback_for_a_signed_customer_is_stored_under_their_key(
    verifying: PersonalizationService, store: SqlStore
) -> None:
    """The same 'yes' with the right hash is demo-loyal's feedback."""
    signature = sign_user_id(IDENTITY_SECRET, "demo-loyal")
    tracker = claim("demo-loyal", signature, "affirm", recommended_products=[{"sku": "SKU-EL-1"}])
    await run_action(ActionRecordRecommendationFeedback(), tracker)
    assert await interactions_of(store, "demo-loyal") == [("feedback", 1.0)]
    assert await interactions_of(store, SENDER) == []


async def test_recommendations_shown_to_an_unproven_claim_are_not_the_claimed_customers(
    verifying: PersonalizationService, store: SqlStore
) -> None:
    """'shown' events of an unsigned claim go to the conversation's key only."""
    tracker = claim("demo-loyal", "not-a-hash", "recommend")
    events = await run_action(ActionRecommendProducts(), tracker)
    await verifying.drain()
    shown = slots_from_events(events)["recommended_products"]
    assert shown  # the popular products still answer
    assert await interactions_of(store, "demo-loyal") == []
    assert [kind for kind, _ in await interactions_of(store, SENDER)] == ["shown"] * len(shown)


async def test_the_engine_refuses_writes_for_a_hand_built_unverified_claim(
    verifying: PersonalizationService, store: SqlStore
) -> None:
    """An identity built without resolve_customer cannot write under the claimed key."""
    request = PersonalizationRequest(
        CustomerIdentity("demo-loyal", "message_metadata"), conversation=ConversationRef(SENDER)
    )
    stored = await verifying.record_feedback(request, ["SKU-EL-1"], liked=True, event_prefix="x")
    assert stored == 0
    assert await interactions_of(store, "demo-loyal") == []


async def test_without_a_secret_the_claim_is_trusted_as_before(
    service: PersonalizationService, store: SqlStore
) -> None:
    """No secret configured: today's behaviour (existing deployments keep working)."""
    slots = slots_from_events(
        await run_action(ActionRefreshPersonalization(), claim("demo-loyal", None))
    )
    assert slots["loyalty_tier"] == "gold"
    tracker = claim("demo-loyal", None, "affirm", recommended_products=[{"sku": "SKU-EL-1"}])
    await run_action(ActionRecordRecommendationFeedback(), tracker)
    assert await interactions_of(store, "demo-loyal") == [("feedback", 1.0)]


async def test_the_unverified_warning_is_logged_once_per_process(
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a secret the server warns once at start; with one, never."""
    monkeypatch.setattr(runtime, "_warned", set())
    plain = PersonalizationService(make_settings(database_url, model_dir=tmp_path))
    secured = PersonalizationService(
        make_settings(database_url, model_dir=tmp_path, identity_secret=IDENTITY_SECRET)
    )
    with caplog.at_level(logging.WARNING, logger="rasa_personalize.runtime"):
        runtime.warn_if_identities_unverified(secured)
        assert "PERSONALIZE_IDENTITY_SECRET" not in caplog.text
        runtime.warn_if_identities_unverified(plain)
        runtime.warn_if_identities_unverified(plain)
    assert caplog.text.count("PERSONALIZE_IDENTITY_SECRET is not set") == 1
    for unused in (plain, secured):
        await unused.close()
