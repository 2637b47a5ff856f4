"""What a shopper says about their data: consent stored from the chat and applied at once,
"what do you know about me?", and "forget me" for a verified customer only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import func, select

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.handlers import ActionDataSummary, ActionEraseCustomer, ActionSetConsent
from rasa_personalize.identity import customer_key, sign_user_id
from rasa_personalize.runtime import install_service
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.consent import load_consent_states
from rasa_personalize.store.models import Customer
from rasa_personalize.store.sql_store import SqlStore
from rasa_personalize.testing import make_tracker, run_action, slots_from_events, user_message
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import NOW

IDENTITY_SECRET = "identity-secret-for-privacy-tests-0123"


def said(intent: str, user_id: str | None = None, *, signed: bool = True) -> Any:
    metadata: dict[str, str] = {}
    if user_id is not None:
        metadata["user_id"] = user_id
        if signed:
            metadata["user_hash"] = sign_user_id(IDENTITY_SECRET, user_id)
    return make_tracker(
        sender_id="conversation-7", events=[user_message(intent, intent, metadata=metadata)]
    )


async def verified_service(
    store: SqlStore, database_url: str, tmp_path: Path
) -> PersonalizationService:
    settings = make_settings(
        database_url, model_dir=tmp_path / "models", identity_secret=IDENTITY_SECRET
    )
    service = PersonalizationService(settings, store, clock=lambda: NOW)
    install_service(service)
    return service


async def test_dont_use_my_data_is_stored_confirmed_and_applied_at_once(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """Denied from the chat: the slots go to the defaults in the same turn, audited."""
    await verified_service(store, database_url, tmp_path)
    dispatcher = CollectingDispatcher()
    events = await run_action(
        ActionSetConsent(), said("deny_data_use", "demo-loyal"), dispatcher=dispatcher
    )

    slots = slots_from_events(events)
    assert slots["personalization_consent"] == "denied"
    assert slots["loyalty_tier"] == "none"
    assert slots["offer_type"] == "none"
    assert [m["response"] for m in dispatcher.messages] == ["utter_consent_denied"]
    key = customer_key(TEST_SECRET, "demo-loyal")
    async with store.sessions() as session:
        states = {s.purpose: (s.granted, s.source) for s in await load_consent_states(session, key)}
        audit = await list_audit_entries(session, customer_key=key)
    assert states == {
        "personalization": (False, "chat"),
        "tracking": (False, "chat"),
        "marketing": (False, "chat"),
    }
    assert [(entry.actor, entry.action) for entry in audit] == [("chat", "consent.deny")]


async def test_you_can_use_my_data_grants_and_personalizes(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """Granted: the slot says granted, and the gold tier is back."""
    await verified_service(store, database_url, tmp_path)
    await run_action(ActionSetConsent(), said("deny_data_use", "demo-loyal"))

    events = await run_action(ActionSetConsent(), said("allow_data_use", "demo-loyal"))

    slots = slots_from_events(events)
    assert slots["personalization_consent"] == "granted"
    assert slots["loyalty_tier"] == "gold"


async def test_an_unproven_claim_changes_nobodys_consent(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """A user_id without a valid hash answers as an anonymous visitor, for that visitor."""
    await verified_service(store, database_url, tmp_path)
    dispatcher = CollectingDispatcher()
    await run_action(
        ActionSetConsent(),
        said("deny_data_use", "demo-loyal", signed=False),
        dispatcher=dispatcher,
    )

    async with store.sessions() as session:
        states = await load_consent_states(session, customer_key(TEST_SECRET, "demo-loyal"))
    assert states == ()


async def test_what_do_you_know_about_me_names_no_contacts(
    service: PersonalizationService,
) -> None:
    """Tier, segment, tags, favourite category and the number of interactions."""
    dispatcher = CollectingDispatcher()
    events = await run_action(
        ActionDataSummary(), said("ask_data_summary", "demo-loyal"), dispatcher=dispatcher
    )

    summary = slots_from_events(events)["data_summary"]
    assert "gold" in summary
    assert "premium" in summary
    assert "electronics" in summary
    assert "8 interactions" in summary
    assert dispatcher.messages[0]["response"] == "utter_data_summary"
    assert dispatcher.messages[0]["data_summary"] == summary


async def test_what_do_you_know_about_a_stranger(service: PersonalizationService) -> None:
    """Nothing stored: it says so."""
    events = await run_action(ActionDataSummary(), said("ask_data_summary", "nobody-at-all"))

    assert slots_from_events(events)["data_summary"] == "I don't have anything stored about you."


async def customers(store: SqlStore) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Customer)) or 0)


async def test_forget_me_erases_a_verified_customer(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """After the yes: gone from the store, and the conversation goes on as a visitor's."""
    await verified_service(store, database_url, tmp_path)
    before = await customers(store)
    dispatcher = CollectingDispatcher()
    events = await run_action(
        ActionEraseCustomer(), said("affirm", "demo-bargain"), dispatcher=dispatcher
    )

    assert [m["response"] for m in dispatcher.messages] == ["utter_erasure_done"]
    assert await customers(store) == before - 1
    assert slots_from_events(events)["customer_segment"] == "new_visitor"


async def test_forget_me_needs_a_verified_customer(
    service: PersonalizationService, store: SqlStore, database_url: str, tmp_path: Path
) -> None:
    """An unsigned claim, or no identity at all: nothing is erased, and it says why."""
    await verified_service(store, database_url, tmp_path)
    before = await customers(store)
    for tracker in (said("affirm", "demo-bargain", signed=False), said("affirm")):
        dispatcher = CollectingDispatcher()
        await run_action(ActionEraseCustomer(), tracker, dispatcher=dispatcher)
        assert [m["response"] for m in dispatcher.messages] == ["utter_erasure_needs_login"]
    assert await customers(store) == before
