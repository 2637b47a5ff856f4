"""Contact encryption (AES-256-GCM per field, key id stored) and blind indexes."""

from __future__ import annotations

import base64
import logging

import pytest

from rasa_personalize.errors import ConfigurationError
from rasa_personalize.imports.contacts import (
    DEVELOPMENT_KEY_ID,
    BlindIndex,
    ContactCipher,
    ContactDecryptionError,
    contact_cipher,
    development_contact_key,
)
from rasa_personalize.settings import load_settings
from tests.conftest import TEST_SECRET

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def test_round_trip_keeps_the_key_id() -> None:
    """A ciphertext names its key id, decrypts to the plaintext, and never contains it."""
    cipher = ContactCipher({"k1": KEY_A}, "k1")
    sealed = cipher.encrypt("email", "anna.mueller@example.com")
    assert sealed.startswith("k1:")
    assert ContactCipher.key_id_of(sealed) == "k1"
    assert "anna" not in sealed
    assert cipher.decrypt("email", sealed) == "anna.mueller@example.com"


def test_nonces_make_every_ciphertext_different() -> None:
    """Encrypting the same value twice gives two different ciphertexts (fresh nonces)."""
    cipher = ContactCipher({"k1": KEY_A}, "k1")
    assert cipher.encrypt("name", "Anna") != cipher.encrypt("name", "Anna")


def test_old_keys_still_decrypt_after_rotation() -> None:
    """A cipher that knows an old key id reads its ciphertexts; new ones use the current key."""
    old = ContactCipher({"k1": KEY_A}, "k1").encrypt("phone", "+4930901820")
    rotated = ContactCipher({"k1": KEY_A, "k2": KEY_B}, "k2")
    assert rotated.decrypt("phone", old) == "+4930901820"
    assert rotated.encrypt("phone", "+4930901820").startswith("k2:")


def test_unknown_key_id_and_wrong_key_are_clear_errors() -> None:
    """Errors name the field and key id, never the content."""
    sealed = ContactCipher({"k1": KEY_A}, "k1").encrypt("email", "bob@example.org")
    with pytest.raises(ContactDecryptionError, match="key id 'k1', which is not configured"):
        ContactCipher({"k2": KEY_B}, "k2").decrypt("email", sealed)
    with pytest.raises(ContactDecryptionError, match="does not decrypt") as error:
        ContactCipher({"k1": KEY_B}, "k1").decrypt("email", sealed)
    assert "bob" not in str(error.value)


def test_a_ciphertext_cannot_move_to_another_field() -> None:
    """The field name is authenticated: an e-mail ciphertext does not open as a name."""
    cipher = ContactCipher({"k1": KEY_A}, "k1")
    with pytest.raises(ContactDecryptionError):
        cipher.decrypt("name", cipher.encrypt("email", "bob@example.org"))


def test_bad_keys_are_refused() -> None:
    """Keys must be 32 bytes with a safe id, and the current id must be among them."""
    with pytest.raises(ConfigurationError, match="32 bytes"):
        ContactCipher({"k1": b"short"}, "k1")
    with pytest.raises(ConfigurationError, match="key id"):
        ContactCipher({"k:1": KEY_A}, "k:1")
    with pytest.raises(ConfigurationError, match="no contact key"):
        ContactCipher({"k1": KEY_A}, "k2")


def test_settings_key_is_used_with_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """PERSONALIZE_CONTACT_KEY and _KEY_ID configure the cipher."""
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY", base64.b64encode(KEY_A).decode())
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY_ID", "2026-11")
    cipher = contact_cipher(load_settings(secret_key=TEST_SECRET))
    sealed = cipher.encrypt("name", "Anna")
    assert sealed.startswith("2026-11:")
    assert ContactCipher({"2026-11": KEY_A}, "2026-11").decrypt("name", sealed) == "Anna"


def test_invalid_settings_key_names_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key that is not base64 of 32 bytes is refused; the message does not echo it."""
    short = base64.b64encode(b"0123456789").decode()
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY", short)
    with pytest.raises(ConfigurationError) as error:
        load_settings(secret_key=TEST_SECRET)
    assert "PERSONALIZE_CONTACT_KEY" in str(error.value)
    assert "32 bytes" in str(error.value)
    assert short not in str(error.value)


def test_development_key_warns_and_is_stable(caplog: pytest.LogCaptureFixture) -> None:
    """Without a key, one derived from the secret (stable for a secret) is used, with a warning."""
    settings = load_settings(secret_key=TEST_SECRET)
    with caplog.at_level(logging.WARNING, logger="rasa_personalize.imports.contacts"):
        first = contact_cipher(settings)
    assert "PERSONALIZE_CONTACT_KEY is not set" in caplog.text
    sealed = first.encrypt("email", "eve@example.net")
    assert sealed.startswith(f"{DEVELOPMENT_KEY_ID}:")
    assert contact_cipher(settings).decrypt("email", sealed) == "eve@example.net"


def test_blind_index_is_keyed_and_separates_fields() -> None:
    """Equal values give equal indexes under one secret; other secrets and fields differ."""
    index = BlindIndex(TEST_SECRET)
    assert index("email", "bob@example.org") == BlindIndex(TEST_SECRET)("email", "bob@example.org")
    assert index("email", "bob@example.org") != BlindIndex("another-secret-key-0123")(
        "email", "bob@example.org"
    )
    assert index("email", "+4930901820") != index("phone", "+4930901820")
    assert len(index("phone", "+4930901820")) == 64


def test_several_configured_keys_decrypt_and_the_named_one_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PERSONALIZE_CONTACT_KEYS, ciphertexts of every listed key (and of the
    development key used before any was set) open; new ones use the write id's key."""
    monkeypatch.setenv(
        "PERSONALIZE_CONTACT_KEYS",
        f"k1:{base64.b64encode(KEY_A).decode()},k2:{base64.b64encode(KEY_B).decode()}",
    )
    monkeypatch.setenv("PERSONALIZE_CONTACT_KEY_ID", "k2")
    settings = load_settings(secret_key=TEST_SECRET)
    cipher = contact_cipher(settings)
    under_k1 = ContactCipher({"k1": KEY_A}, "k1").encrypt("email", "bob@example.org")
    under_dev = ContactCipher(
        {DEVELOPMENT_KEY_ID: development_contact_key(TEST_SECRET)}, DEVELOPMENT_KEY_ID
    ).encrypt("name", "Bob")
    assert cipher.decrypt("email", under_k1) == "bob@example.org"
    assert cipher.decrypt("name", under_dev) == "Bob"
    sealed = cipher.encrypt("phone", "+4930901820")
    assert sealed.startswith("k2:")
    assert ContactCipher({"k2": KEY_B}, "k2").decrypt("phone", sealed) == "+4930901820"


def test_a_value_that_was_never_encrypted_is_not_repeated() -> None:
    """No key id in front (a plaintext slipped in, or damage): the error shows '?'."""
    cipher = ContactCipher({"k1": KEY_A}, "k1")
    for stored in ("jane.doe@example.com", "jane.doe@example.com:more"):
        with pytest.raises(ContactDecryptionError) as error:
            cipher.decrypt("email", stored)
        assert "jane" not in str(error.value)
        assert "key id '?'" in str(error.value)
