"""The managers' handling of secret and config contents: seal, open, digest.

A secret is stored sealed (``SecretBox``, the secret's name as AAD) with a keyed
digest (HMAC-SHA256 under a key derived from the cluster key), so etcd holds
neither the plaintext nor a plain hash one could test guesses against. A config's
digest is a plain SHA-256: configs are not secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from swarmlite.security.secretbox import SecretBox
from swarmlite.spec.objects import Secret

MAX_SIZE = 500 * 1024  # as Swarm: a secret or config holds at most 500 KB


class SecretKeeper:
    __slots__ = ("_box", "_digest_key")

    def __init__(self, cluster_key: bytes) -> None:
        self._box = SecretBox(cluster_key)
        self._digest_key = hmac.new(cluster_key, b"swarmlite secret digest v1", "sha256").digest()

    def __repr__(self) -> str:
        return "SecretKeeper(<hidden>)"

    def digest(self, data: bytes) -> str:
        return hmac.new(self._digest_key, data, "sha256").hexdigest()

    def seal(self, name: str, data: bytes) -> str:
        return base64.b64encode(self._box.seal(data, name.encode())).decode()

    def open(self, secret: Secret) -> bytes:
        return self._box.open(base64.b64decode(secret.sealed), secret.name.encode())


def config_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
