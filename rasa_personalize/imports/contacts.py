"""Contact details at rest: AES-256-GCM per field, and blind indexes for exact matching.

A ciphertext is stored as ``"<key id>:<base64url of nonce + ciphertext + tag>"``, so a
row says which key opens it and keys can be rotated without guessing. The field name
is the associated data: a ciphertext copied into another column does not decrypt.

Blind indexes are keyed hashes (HMAC-SHA256) of the normalised e-mail address or phone
number. Equal contacts give equal indexes, so an exact duplicate is found by an indexed
lookup without decrypting anything; without the key, an index confirms no guess.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping
from typing import Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from rasa_personalize.errors import ConfigurationError, PersonalizeError
from rasa_personalize.settings import Settings

logger = logging.getLogger(__name__)

ContactField = Literal["name", "email", "phone"]
KEY_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEVELOPMENT_KEY_ID: Final = "dev"
NONCE_BYTES: Final = 12
# Separate keys for separate purposes, all derived from the one secret when unset.
_DEVELOPMENT_KEY_LABEL: Final = b"rasa-personalize contact encryption v1"
_BLIND_INDEX_LABEL: Final = b"rasa-personalize contact blind index v1"


class ContactDecryptionError(PersonalizeError):
    """A stored contact cannot be decrypted: unknown key id, wrong key or damaged data."""


class ContactCipher:
    """Encrypts and decrypts contact fields with the current key; decrypts with any known.

    Args:
        keys: key id -> 32-byte AES key, every key whose ciphertexts may be read.
        current_key_id: the key new ciphertexts are made with.
    """

    def __init__(self, keys: Mapping[str, bytes], current_key_id: str) -> None:
        for key_id, key in keys.items():
            if not KEY_ID_PATTERN.match(key_id):
                raise ConfigurationError("a contact key id must be 1-32 of A-Z a-z 0-9 _ -")
            if len(key) != 32:
                raise ConfigurationError(f"contact key {key_id!r} is not 32 bytes (AES-256)")
        if current_key_id not in keys:
            raise ConfigurationError(f"no contact key with id {current_key_id!r}")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = current_key_id

    def encrypt(self, field: ContactField, plaintext: str) -> str:
        """A fresh ciphertext of ``plaintext`` (random nonce: never equal twice)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current_key_id].encrypt(
            nonce, plaintext.encode(), field.encode()
        )
        token = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{self.current_key_id}:{token}"

    def decrypt(self, field: ContactField, stored: str) -> str:
        """The plaintext of a stored ciphertext.

        Raises:
            ContactDecryptionError: names the field and the key id, never the content.
        """
        key_id, _, token = stored.partition(":")
        cipher = self._ciphers.get(key_id)
        # A damaged or never-encrypted value has no key id: its text is never repeated.
        shown = key_id if KEY_ID_PATTERN.match(key_id) else "?"
        if cipher is None:
            raise ContactDecryptionError(
                f"{field}: encrypted with key id {shown!r}, which is not configured "
                "(PERSONALIZE_CONTACT_KEYS, or PERSONALIZE_CONTACT_KEY / _KEY_ID)"
            )
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            plaintext = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], field.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise ContactDecryptionError(
                f"{field}: ciphertext under key id {shown!r} does not decrypt "
                "(wrong key, or damaged data)"
            ) from None
        return plaintext.decode()

    @staticmethod
    def key_id_of(stored: str) -> str:
        """The key id a stored ciphertext names."""
        return stored.partition(":")[0]


def development_contact_key(secret_key: str) -> bytes:
    """The laptop-only key: derived from the HMAC secret, so it is as (un)safe as that."""
    return hmac.new(secret_key.encode(), _DEVELOPMENT_KEY_LABEL, hashlib.sha256).digest()


def contact_cipher(settings: Settings) -> ContactCipher:
    """The cipher that ``settings`` configure; warns when it is the development key.

    It encrypts with ``PERSONALIZE_CONTACT_KEY_ID``'s key and decrypts with any key of
    ``PERSONALIZE_CONTACT_KEYS`` (or the one ``PERSONALIZE_CONTACT_KEY``). Ciphertexts made
    with the development key before a key was set still open (unless a configured key
    takes its id), so ``personalize keys rotate-contacts`` can move them to a real key.
    """
    keys = settings.contact_keys_by_id
    development = {DEVELOPMENT_KEY_ID: development_contact_key(settings.secret_key)}
    if not keys:
        logger.warning(
            "PERSONALIZE_CONTACT_KEY is not set: contact details are encrypted with a key "
            "derived from the secret key. Set a key of your own (base64 of 32 random "
            "bytes) before importing real customers."
        )
        return ContactCipher(development, DEVELOPMENT_KEY_ID)
    return ContactCipher({**development, **keys}, settings.contact_key_id)


class BlindIndex:
    """Keyed hashes of normalised contacts, for exact matching without decryption."""

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), _BLIND_INDEX_LABEL, hashlib.sha256).digest()

    def __call__(self, field: Literal["email", "phone"], normalised: str) -> str:
        """Hex HMAC-SHA256 of the field name and the normalised value."""
        message = f"{field}\x00{normalised}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
