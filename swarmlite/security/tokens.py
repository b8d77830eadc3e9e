"""Join tokens, in the spirit of Docker Swarm's ``SWMTKN-1-...``.

Format::

    SWLTKN-1-<fingerprint>-<secret>

    fingerprint  64 lowercase hex chars: sha256 of the cluster CA certificate (DER).
                 A joining node checks the manager's CA against it *before* it
                 sends the secret, so a fake manager never learns the secret.
    secret       26 lowercase base36 chars: a role letter ("w" worker, "m" manager)
                 then 25 random chars (~129 bits). The letter lets the joining node
                 know what it is about to become; the manager never trusts it and
                 decides the role by which stored digest the whole secret matches.

The cluster stores only sha256 digests of the two secrets. The secrets are
random and long, so an unsalted hash cannot be brute-forced.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from swarmlite.errors import AuthError
from swarmlite.security.ca import Role

PREFIX = "SWLTKN"
VERSION = "1"
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_RANDOM_LEN = 25
_ROLE_LETTER: dict[str, str] = {"worker": "w", "manager": "m"}
_LETTER_ROLE: dict[str, Role] = {"w": "worker", "m": "manager"}
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_SECRET = re.compile(rf"[wm][0-9a-z]{{{_RANDOM_LEN}}}")


@dataclass(frozen=True, slots=True)
class JoinToken:
    """A parsed join token. ``str(token)`` is the full token, secret included."""

    ca_fingerprint: str
    secret: str = field(repr=False)

    @property
    def role(self) -> Role:
        """The role the token claims; a hint only, the manager checks digests."""
        return _LETTER_ROLE[self.secret[0]]

    @classmethod
    def generate(cls, ca_fingerprint: str, role: Role) -> JoinToken:
        if role not in _ROLE_LETTER:
            raise AuthError(f"join tokens exist for worker and manager only, not {role!r}")
        fingerprint = ca_fingerprint.lower()
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise AuthError("the CA fingerprint must be 64 hex characters (sha256)")
        random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
        return cls(fingerprint, _ROLE_LETTER[role] + random_part)

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        # Messages below describe the shape only: a typo'd token is still mostly secret.
        parts = text.strip().split("-")
        if len(parts) != 4 or parts[0] != PREFIX:
            raise AuthError(
                f"malformed join token: expected {PREFIX}-{VERSION}-<fingerprint>-<secret> "
                "(copy it again from 'swarmlite join-token')"
            )
        _, version, fingerprint, secret = parts
        if version != VERSION:
            raise AuthError(
                f"unsupported join token version: this node understands {PREFIX}-{VERSION} tokens"
            )
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise AuthError("malformed join token: the CA fingerprint must be 64 lowercase hex")
        if not _SECRET.fullmatch(secret):
            raise AuthError(
                f"malformed join token: the secret must be {_RANDOM_LEN + 1} lowercase "
                "letters and digits, starting with 'w' or 'm'"
            )
        return cls(fingerprint, secret)

    def __str__(self) -> str:
        return f"{PREFIX}-{VERSION}-{self.ca_fingerprint}-{self.secret}"

    def __repr__(self) -> str:
        fp = self.ca_fingerprint[:16]
        return f"JoinToken(ca_fingerprint={fp}..., role={self.role}, secret=<hidden>)"

    @property
    def digest(self) -> str:
        return secret_digest(self.secret)


def secret_digest(secret: str) -> str:
    """sha256 hex of a join secret; the cluster stores only this."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_secret(secret: str, digest: str) -> bool:
    """Constant-time check, so response timing tells an attacker nothing."""
    return hmac.compare_digest(secret_digest(secret).encode("ascii"), digest.encode("utf-8"))


def role_for_secret(secret: str, worker_digest: str, manager_digest: str) -> Role | None:
    """The role a presented secret grants, or None."""
    # Compare against both before deciding, so timing does not reveal which matched.
    is_worker = verify_secret(secret, worker_digest)
    is_manager = verify_secret(secret, manager_digest)
    if is_manager:
        return "manager"
    if is_worker:
        return "worker"
    return None
