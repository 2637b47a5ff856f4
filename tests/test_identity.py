"""Who the customer is: one function decides, and the store key is a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rasa_personalize.identity import (
    MAX_EXTERNAL_ID_LENGTH,
    CustomerIdentity,
    customer_key,
    hot_customer_key,
    resolve_customer,
    sign_user_id,
)


@pytest.mark.parametrize(
    ("message", "session", "at_start", "expected"),
    [
        # mid-conversation the latest message's user_id wins
        ({"user_id": "u-msg"}, {"user_id": "u-session"}, False, ("u-msg", "message_metadata")),
        # at session start the session's metadata is the new message's: it wins
        ({"user_id": "u-old"}, {"user_id": "u-session"}, True, ("u-session", "session_metadata")),
        # session metadata is used when the message has none
        ({}, {"user_id": "u-session"}, False, ("u-session", "session_metadata")),
        # nothing usable: the sender id
        (None, None, False, ("sender-1", "sender_id")),
        # blank or non-string user ids are ignored
        ({"user_id": "   "}, {"user_id": ["x"]}, False, ("sender-1", "sender_id")),
        # numeric ids from CRMs are accepted as text
        ({"user_id": 12345}, None, False, ("12345", "message_metadata")),
        # surrounding whitespace is trimmed
        ({"user_id": "  u-1 "}, None, False, ("u-1", "message_metadata")),
    ],
)
def test_resolve_customer_precedence(
    message: dict[str, object] | None,
    session: dict[str, object] | None,
    at_start: bool,
    expected: tuple[str, str],
) -> None:
    """The documented order of sources holds."""
    identity = resolve_customer(
        sender_id="sender-1",
        latest_message_metadata=message,
        session_started_metadata=session,
        at_session_start=at_start,
    )
    assert (identity.external_id, identity.source) == expected


def test_overlong_user_id_falls_back_to_sender() -> None:
    """An id longer than any real id is not trusted."""
    identity = resolve_customer(
        sender_id="sender-1",
        latest_message_metadata={"user_id": "x" * (MAX_EXTERNAL_ID_LENGTH + 1)},
        session_started_metadata=None,
    )
    assert identity.source == "sender_id"


def test_customer_key_is_hmac_sha256_of_the_trimmed_id() -> None:
    """The key is the hex HMAC-SHA256 under the secret, never the id itself."""
    expected = hmac.new(b"secret-secret-secret", b"demo-loyal", hashlib.sha256).hexdigest()
    assert customer_key("secret-secret-secret", " demo-loyal ") == expected
    assert "demo-loyal" not in customer_key("secret-secret-secret", "demo-loyal")


@given(st.text(min_size=1, max_size=64))
def test_customer_key_depends_on_the_secret(external_id: str) -> None:
    """Another secret gives another key, so a stolen database cannot be joined by id."""
    assert customer_key("secret-number-one", external_id) != customer_key(
        "secret-number-two", external_id
    )
    assert len(customer_key("secret-number-one", external_id)) == 64


def test_the_remembered_key_is_the_key_under_each_secret() -> None:
    """The hot path's memo answers what customer_key does, secret by secret."""
    for secret in ("secret-number-one", "secret-number-two", "secret-number-one"):
        assert hot_customer_key(secret, " demo-loyal ") == customer_key(secret, "demo-loyal")
    assert hot_customer_key("secret-number-one", "demo-loyal") != hot_customer_key(
        "secret-number-two", "demo-loyal"
    )


IDENTITY_SECRET = "identity-secret-0123456789"


def signed(user_id: str, secret: str = IDENTITY_SECRET) -> dict[str, object]:
    """Metadata as a shop's server sends it for a logged-in customer."""
    return {"user_id": user_id, "user_hash": sign_user_id(secret, user_id)}


def test_sign_user_id_is_lower_hex_hmac_sha256_of_the_trimmed_id() -> None:
    """The documented scheme, so a shop can compute it in any language."""
    expected = hmac.new(IDENTITY_SECRET.encode(), b"demo-loyal", hashlib.sha256).hexdigest()
    assert sign_user_id(IDENTITY_SECRET, "demo-loyal") == expected
    assert sign_user_id(IDENTITY_SECRET, " demo-loyal ") == expected
    assert expected == expected.lower()
    assert len(expected) == 64


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # a valid hash: the customer, verified
        (signed("demo-loyal"), ("demo-loyal", "message_metadata", True)),
        # numeric ids are signed as their text
        (
            {"user_id": 42, "user_hash": sign_user_id(IDENTITY_SECRET, "42")},
            ("42", "message_metadata", True),
        ),
        # no hash: anonymous, known by the conversation
        ({"user_id": "demo-loyal"}, ("sender-1", "sender_id", False)),
        # a wrong hash
        ({"user_id": "demo-loyal", "user_hash": "0" * 64}, ("sender-1", "sender_id", False)),
        # the right hash in upper case is not the documented lower-case hex
        (
            {
                "user_id": "demo-loyal",
                "user_hash": sign_user_id(IDENTITY_SECRET, "demo-loyal").upper(),
            },
            ("sender-1", "sender_id", False),
        ),
        # the hash of another id (a visitor replaying their own hash)
        (
            {"user_id": "demo-loyal", "user_hash": sign_user_id(IDENTITY_SECRET, "demo-bargain")},
            ("sender-1", "sender_id", False),
        ),
        # the hash under another secret
        (signed("demo-loyal", "another-secret-0123456789"), ("sender-1", "sender_id", False)),
        # a hash that is not text, or not ASCII, is refused without an error
        ({"user_id": "demo-loyal", "user_hash": ["x"]}, ("sender-1", "sender_id", False)),
        ({"user_id": "demo-loyal", "user_hash": "é" * 64}, ("sender-1", "sender_id", False)),
    ],
)
def test_with_a_secret_only_signed_user_ids_count(
    message: dict[str, object], expected: tuple[str, str, bool]
) -> None:
    """With the identity secret set, a user_id is the customer only beside its hash."""
    identity = resolve_customer(
        sender_id="sender-1",
        latest_message_metadata=message,
        session_started_metadata=None,
        identity_secret=IDENTITY_SECRET,
    )
    assert (identity.external_id, identity.source, identity.verified) == expected


def test_with_a_secret_session_metadata_is_verified_at_session_start() -> None:
    """At session start the signed id in session_started_metadata is the customer."""
    identity = resolve_customer(
        sender_id="sender-1",
        latest_message_metadata=None,
        session_started_metadata=signed("demo-bargain"),
        at_session_start=True,
        identity_secret=IDENTITY_SECRET,
    )
    assert identity == CustomerIdentity("demo-bargain", "session_metadata", verified=True)


def test_with_a_secret_unsigned_session_metadata_is_anonymous() -> None:
    """An unsigned claim at session start gives the conversation, not the claimed id."""
    identity = resolve_customer(
        sender_id="sender-1",
        latest_message_metadata={"user_id": "demo-loyal"},
        session_started_metadata={"user_id": "demo-loyal"},
        at_session_start=True,
        identity_secret=IDENTITY_SECRET,
    )
    assert identity == CustomerIdentity("sender-1", "sender_id", verified=False)


def test_an_unsigned_message_claim_does_not_replace_the_signed_session() -> None:
    """Mid-conversation an unproven claim is skipped; the session's proven customer stays."""
    identity = resolve_customer(
        sender_id="sender-1",
        latest_message_metadata={"user_id": "demo-loyal", "user_hash": "f" * 64},
        session_started_metadata=signed("demo-bargain"),
        identity_secret=IDENTITY_SECRET,
    )
    assert identity == CustomerIdentity("demo-bargain", "session_metadata", verified=True)


def test_without_a_secret_ids_are_used_as_sent_but_unverified() -> None:
    """No secret configured: today's behaviour, with the identity marked unverified."""
    identity = resolve_customer(
        sender_id="sender-1",
        latest_message_metadata={"user_id": "demo-loyal"},
        session_started_metadata=None,
    )
    assert identity == CustomerIdentity("demo-loyal", "message_metadata", verified=False)
    assert identity.is_claim


def test_a_rejected_claim_is_logged_without_the_id_or_hash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log says a claim was ignored, never whose."""
    with caplog.at_level(logging.INFO, logger="rasa_personalize.identity"):
        resolve_customer(
            sender_id="sender-1",
            latest_message_metadata={"user_id": "jane.doe@example.com", "user_hash": "abc123"},
            session_started_metadata=None,
            identity_secret=IDENTITY_SECRET,
        )
    assert "without a valid user_hash" in caplog.text
    assert "jane.doe" not in caplog.text
    assert "abc123" not in caplog.text
