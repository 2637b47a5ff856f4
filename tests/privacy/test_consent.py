"""Consent status, request checks, and recording a change with its audit rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from rasa_personalize.identity import customer_key
from rasa_personalize.privacy.audit import Actor
from rasa_personalize.privacy.consent import (
    ConsentInputError,
    ConsentRequest,
    PurposeConsent,
    consent_document,
    consent_request,
    load_consent,
    load_consent_document,
    parse_consent_body,
    record_consent,
    resolve_consent,
)
from rasa_personalize.store.audit import list_audit_entries
from rasa_personalize.store.consent import ConsentStateRecord, load_consent_history
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import TEST_SECRET
from tests.factories import NOW

ANNA = customer_key(TEST_SECRET, "anna@example.com")


def test_without_answers_the_default_decides_and_the_slot_is_unknown() -> None:
    """Opt-out allows every purpose, opt-in none; the slot says unknown either way."""
    for default, effective in (("granted", True), ("denied", False)):
        status = resolve_consent((), default)  # type: ignore[arg-type]
        assert [(c.purpose, c.state, c.effective) for c in status.purposes] == [
            ("personalization", "default", effective),
            ("tracking", "default", effective),
            ("marketing", "default", effective),
        ]
        assert status.personalization_consent == "unknown"


def test_answers_override_the_default() -> None:
    """A stored answer is the state and the effect; the others keep the default."""
    status = resolve_consent(
        [
            ConsentStateRecord("tracking", True, "api", "v2", NOW),
            ConsentStateRecord("personalization", False, "chat", None, NOW),
        ],
        "denied",
    )
    assert status.of("tracking") == PurposeConsent("tracking", "granted", True, "api", "v2", NOW)
    assert status.personalization_consent == "denied"
    assert not status.allows("personalization")
    assert status.allows("tracking")
    assert not status.allows("marketing")  # no answer: the opt-in default
    granted = resolve_consent([ConsentStateRecord("personalization", True, "cli", None, NOW)],
                              "denied")  # fmt: skip
    assert granted.personalization_consent == "granted"
    with pytest.raises(KeyError):
        status.of("newsletter")


def test_request_normalises_purposes() -> None:
    """Case and spaces do not matter; a purpose named twice counts once."""
    request = consent_request([" Tracking", "tracking", "MARKETING"], ["personalization"], " v3 ")
    assert request == ConsentRequest(("tracking", "marketing"), ("personalization",), "v3")
    assert request.decisions == {"tracking": True, "marketing": True, "personalization": False}
    assert consent_request([], [], "  ").policy_version is None


@pytest.mark.parametrize(
    ("grant", "deny", "policy", "field", "reason"),
    [
        # a word that is no purpose is quoted, with the valid ones
        (["newsletter"], [], None, "grant", "unknown purpose 'newsletter': use personalization, "
                                            "tracking, marketing"),
        # something that may be personal data is not quoted
        ([], ["jane@example.com"], None, "deny", "unknown purpose a value: use"),
        # not a string at all
        ([3], [], None, "grant", "unknown purpose a value"),
        # granted and denied at once
        (["tracking", "marketing"], ["Tracking"], None, "deny", "tracking cannot be both"),
        # too long for the column
        (["tracking"], [], "v" * 33, "policy_version", "at most 32 characters"),
        # a line break would forge lines in exports
        (["tracking"], [], "v1\nv2", "policy_version", "on one line"),
        # a number
        (["tracking"], [], 7, "policy_version", "must be a string, not int"),
    ],
)  # fmt: skip
def test_bad_requests_name_the_field(
    grant: list[Any], deny: list[Any], policy: Any, field: str, reason: str
) -> None:
    with pytest.raises(ConsentInputError) as raised:
        consent_request(grant, deny, policy)
    assert raised.value.field == field
    assert reason in raised.value.reason
    assert "jane" not in str(raised.value)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        # not an object
        (["tracking"], "body", "must be"),
        # a field the API does not know
        ({"grant": ["tracking"], "revoke": ["marketing"]}, "revoke", "unknown field"),
        # a list expected
        ({"grant": "tracking"}, "grant", "must be a list of purposes, not str"),
        # nothing to do
        ({"grant": [], "deny": None}, "grant", "nothing to change"),
        # a bad purpose inside the list
        ({"deny": ["tracking", "ads"]}, "deny", "unknown purpose 'ads'"),
    ],
)
def test_api_bodies_are_checked_by_field(body: Any, field: str, reason: str) -> None:
    with pytest.raises(ConsentInputError) as raised:
        parse_consent_body(body)
    assert (raised.value.field, reason in raised.value.reason) == (field, True)


def test_a_good_body() -> None:
    """grant, deny and policy_version are read; a missing list is empty."""
    assert parse_consent_body({"deny": ["marketing"], "policy_version": "2026-01"}) == (
        ConsentRequest((), ("marketing",), "2026-01")
    )


async def test_record_consent_writes_state_history_and_audit_in_one_go(store: SqlStore) -> None:
    """A change is stored with the default policy version and audited per kind of answer;
    repeating it is audited as unchanged and adds no history."""
    request = consent_request(["tracking", "marketing"], ["personalization"])
    actor = Actor.api(7, "crm sync")
    async with store.sessions.begin() as session:
        changed = await record_consent(
            session, ANNA, request, source="api", actor=actor, now=NOW,
            default_policy_version="2026-01",
        )  # fmt: skip
    assert [(s.purpose, s.granted, s.policy_version) for s in changed] == [
        ("personalization", False, "2026-01"),
        ("tracking", True, "2026-01"),
        ("marketing", True, "2026-01"),
    ]
    later = NOW + timedelta(hours=1)
    async with store.sessions.begin() as session:
        again = await record_consent(
            session, ANNA, consent_request(["tracking"]), source="cli", actor=Actor.cli(), now=later
        )
    assert again == ()
    async with store.sessions() as session:
        entries = await list_audit_entries(session)
        history = await load_consent_history(session, ANNA)
        status = await load_consent(session, ANNA, "denied")
    assert [
        (e.actor, e.api_key_id, e.api_key_label, e.action, e.outcome, e.customer_key)
        for e in entries
    ] == [
        ("api", 7, "crm sync", "consent.grant", "changed", ANNA),
        ("api", 7, "crm sync", "consent.deny", "changed", ANNA),
        ("cli", None, None, "consent.grant", "unchanged", ANNA),
    ]
    assert dict(entries[0].detail) == {
        "purposes": ["tracking", "marketing"],
        "changed": ["tracking", "marketing"],
        "source": "api",
        "policy_version": "2026-01",
    }
    assert dict(entries[2].detail)["changed"] == []
    assert len(history) == 3
    assert status.personalization_consent == "denied"
    assert status.allows("tracking")


async def test_a_failed_transaction_leaves_neither_consent_nor_audit(
    sqlite_store: SqlStore,
) -> None:
    """State, history and audit commit together or not at all."""

    async def record_then_crash() -> None:
        async with sqlite_store.sessions.begin() as session:
            await record_consent(
                session, ANNA, consent_request(["tracking"]), source="cli", actor=Actor.cli(),
                now=NOW,
            )  # fmt: skip
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError, match="crash before commit"):
        await record_then_crash()
    async with sqlite_store.sessions() as session:
        assert await list_audit_entries(session) == []
        assert await load_consent_history(session, ANNA) == ()


async def test_document_shape(sqlite_store: SqlStore) -> None:
    """The API/CLI document: every purpose with state and effect, then the history."""
    async with sqlite_store.sessions.begin() as session:
        await record_consent(
            session, ANNA, consent_request([], ["tracking"], "v9"), source="cli",
            actor=Actor.cli(), now=NOW,
        )  # fmt: skip
    async with sqlite_store.sessions() as session:
        document = await load_consent_document(session, "anna@example.com", ANNA, "granted")
    assert document == {
        "customer": "anna@example.com",
        "purposes": {
            "personalization": {"state": "default", "effective": True, "source": None,
                                "policy_version": None, "updated_at": None},
            "tracking": {"state": "denied", "effective": False, "source": "cli",
                         "policy_version": "v9", "updated_at": NOW.isoformat()},
            "marketing": {"state": "default", "effective": True, "source": None,
                          "policy_version": None, "updated_at": None},
        },
        "history": [{"purpose": "tracking", "decision": "denied", "source": "cli",
                     "policy_version": "v9", "recorded_at": NOW.isoformat()}],
    }  # fmt: skip
    assert consent_document("x", resolve_consent((), "granted"), [])["history"] == []
