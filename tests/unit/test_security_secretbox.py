"""SecretBox: AES-256-GCM sealing of secrets at rest."""

from __future__ import annotations

import pytest

from swarmlite.errors import AuthError, SwarmliteError
from swarmlite.security.secretbox import SecretBox


def test_round_trip_and_fresh_nonces() -> None:
    box = SecretBox(SecretBox.generate_key())
    a = box.seal(b"hunter2", b"db_password")
    b = box.seal(b"hunter2", b"db_password")
    assert a != b and a[0] == 1
    assert b"hunter2" not in a
    assert box.open(a, b"db_password") == b"hunter2"


@pytest.mark.parametrize("index", [0, 5, 20, -1])
def test_tampering_is_detected(index: int) -> None:
    box = SecretBox(SecretBox.generate_key())
    blob = bytearray(box.seal(b"hunter2", b"db_password"))
    blob[index] ^= 0x01
    with pytest.raises(AuthError, match="failed authentication"):
        box.open(bytes(blob), b"db_password")


def test_wrong_name_or_key_or_truncation_fails() -> None:
    key = SecretBox.generate_key()
    blob = SecretBox(key).seal(b"s3cret", b"a")
    with pytest.raises(AuthError):
        SecretBox(key).open(blob, b"b")
    with pytest.raises(AuthError):
        SecretBox(SecretBox.generate_key()).open(blob, b"a")
    with pytest.raises(AuthError):
        SecretBox(key).open(blob[:10], b"a")


def test_key_checks_and_repr() -> None:
    key = SecretBox.generate_key()
    assert len(key) == 32
    assert key.hex() not in repr(SecretBox(key))
    with pytest.raises(SwarmliteError, match="32 bytes"):
        SecretBox(b"short")
