"""Who the customer is: one function decides, and the store key is a keyed hash."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rasa_personalize.identity import MAX_EXTERNAL_ID_LENGTH, customer_key, resolve_customer


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
