"""Service secrets encrypted at rest with AES-256-GCM.

Blob layout::

    version (1 byte, 0x01) | nonce (12 bytes, random) | ciphertext + 16-byte tag

The version byte and the caller's AAD (the secret's name) are both
authenticated, so a blob cannot be moved to another name or relabelled.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from swarmlite.errors import AuthError, SwarmliteError

VERSION = 1
_HEADER = bytes([VERSION])
_NONCE_LEN = 12
_TAG_LEN = 16
KEY_LEN = 32


class SecretBox:
    """Seals and opens secret data with one 256-bit key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_LEN:
            raise SwarmliteError(f"a secret encryption key must be {KEY_LEN} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"

    @staticmethod
    def generate_key() -> bytes:
        return AESGCM.generate_key(bit_length=256)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        # Random 96-bit nonces are safe for far more secrets than a cluster holds.
        nonce = os.urandom(_NONCE_LEN)
        return _HEADER + nonce + self._aead.encrypt(nonce, plaintext, _HEADER + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 1 + _NONCE_LEN + _TAG_LEN:
            raise AuthError("secret data failed authentication: too short to be a sealed secret")
        if blob[0] != VERSION:
            raise AuthError(f"secret data failed authentication: unknown format version {blob[0]}")
        nonce = blob[1 : 1 + _NONCE_LEN]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_LEN :], blob[:1] + aad)
        except InvalidTag:
            raise AuthError(
                "secret data failed authentication (tampered, wrong key, or wrong name)"
            ) from None
