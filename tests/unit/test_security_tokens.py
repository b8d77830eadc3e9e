"""Join tokens: format, parsing, secrecy, constant-time verification."""

from __future__ import annotations

import hmac
import logging

import pytest

from swarmlite.errors import AuthError
from swarmlite.security.tokens import JoinToken, role_for_secret, secret_digest, verify_secret

FP = "ab" * 32


def test_generate_and_parse_round_trip() -> None:
    token = JoinToken.generate(FP, "worker")
    text = str(token)
    assert text.startswith(f"SWLTKN-1-{FP}-w")
    assert len(token.secret) == 26
    parsed = JoinToken.parse(f"  {text}\n")
    assert parsed == token
    assert parsed.role == "worker"
    assert JoinToken.generate(FP.upper(), "manager").role == "manager"


def test_secrets_are_random() -> None:
    assert JoinToken.generate(FP, "worker").secret != JoinToken.generate(FP, "worker").secret


def test_repr_and_logs_never_show_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    token = JoinToken.generate(FP, "manager")
    assert token.secret not in repr(token)
    logging.getLogger("test").warning("token %r", token)
    assert token.secret not in caplog.text


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("SWLTKN", "SWMTKN"),
        lambda t: t.replace("-1-", "-2-"),
        lambda t: t[:-1],  # secret too short
        lambda t: t + "x",  # secret too long
        lambda t: t.replace(FP, FP[:-2]),
        lambda t: t.upper(),
        lambda t: t + "-extra",
        lambda t: t.replace(f"{FP}-w", f"{FP}-q"),
    ],
)
def test_malformed_tokens_are_refused_without_echoing_the_secret(mangle: object) -> None:
    token = JoinToken.generate(FP, "worker")
    bad = mangle(str(token))  # type: ignore[operator]
    with pytest.raises(AuthError) as info:
        JoinToken.parse(bad)
    message = str(info.value)
    assert token.secret[1:20] not in message
    assert token.secret[1:20].upper() not in message


def test_generate_refuses_admin_role_and_bad_fingerprint() -> None:
    with pytest.raises(AuthError):
        JoinToken.generate(FP, "admin")
    with pytest.raises(AuthError, match="fingerprint"):
        JoinToken.generate("abc", "worker")


def test_digest_and_role_for_secret() -> None:
    worker, manager = JoinToken.generate(FP, "worker"), JoinToken.generate(FP, "manager")
    wd, md = secret_digest(worker.secret), secret_digest(manager.secret)
    assert len(wd) == 64 and worker.secret not in wd
    assert verify_secret(worker.secret, wd)
    assert not verify_secret(worker.secret, md)
    assert role_for_secret(worker.secret, wd, md) == "worker"
    assert role_for_secret(manager.secret, wd, md) == "manager"
    assert role_for_secret("w" + "0" * 25, wd, md) is None
    # The role letter is only a hint: a forged letter does not change the match.
    assert role_for_secret("m" + worker.secret[1:], wd, md) is None


def test_verification_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    token = JoinToken.generate(FP, "worker")
    assert role_for_secret(token.secret, token.digest, "0" * 64) == "worker"
    assert len(calls) == 2  # both digests are compared, whichever matches
