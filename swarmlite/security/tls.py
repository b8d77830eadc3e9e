"""Mutual-TLS contexts and credential files (CA pinning for joins: ``pinning.py``).

Stdlib only at import: the CLI builds its client context from here on every command.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from swarmlite.errors import AuthError

if TYPE_CHECKING:
    from swarmlite.security.ca import Identity

CERT_FILE = "node.crt"
KEY_FILE = "node.key"
CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
# Suffix of a certificate and key written but not yet installed (``Credentials.save``).
STAGED = ".new"


@contextmanager
def _pem_files(cert_pem: str, key_pem: str) -> Iterator[tuple[str, str]]:
    # ssl can only load a key pair from files; keep them in a private temp dir (0700).
    with tempfile.TemporaryDirectory(prefix="swarmlite-tls-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        write_private(cert_path, cert_pem.encode("ascii"))
        write_private(key_path, key_pem.encode("ascii"))
        yield cert_path, key_path


def _base_context(purpose: int, cert_pem: str | None, key_pem: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    # TLS 1.3 is negotiated whenever both ends have it; 1.2 is the floor.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_pem is not None and key_pem is not None:
        try:
            with _pem_files(cert_pem, key_pem) as (cert_path, key_path):
                context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise AuthError(f"the node certificate and key do not load: {exc}") from None
    return context


def _load_ca(context: ssl.SSLContext, ca_pem: str) -> None:
    try:
        context.load_verify_locations(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise AuthError(f"the cluster CA certificate does not load: {exc}") from None


def server_context(
    cert_pem: str, key_pem: str, ca_pem: str, *, require_client_cert: bool = True
) -> ssl.SSLContext:
    """Server side of mutual TLS; client certs are verified against the cluster CA.

    With ``require_client_cert=False`` (CERT_OPTIONAL) a client without a cert can
    still connect, so the API can serve ``/v1/ca`` and ``/v1/join`` to new nodes;
    a cert that *is* presented must still verify. The ``mtls_middleware`` then
    refuses cert-less requests on every other path with 401.
    """
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, cert_pem, key_pem)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    _load_ca(context, ca_pem)
    return context


def client_context(
    cert_pem: str,
    key_pem: str,
    ca_pem: str,
    *,
    server_hostname_check: bool = False,
    managers_only: bool = False,
) -> ssl.SSLContext:
    """Client side of mutual TLS.

    The hostname check is off by default because nodes are addressed by IP and
    any cert from the cluster CA is a cluster node; turn it on when the server's
    SANs are known to contain the address used. ``managers_only``: the server's
    certificate must also say "manager" (for sessions, renewal, promotion: a
    worker's certificate is from the same CA, and must not pass for a manager).
    """
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, cert_pem, key_pem)
    context.check_hostname = server_hostname_check
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, ca_pem)
    if managers_only:
        context.sslobject_class = _ManagerPeer
    return context


def anonymous_client_context(ca_pem: str, *, server_hostname_check: bool = False) -> ssl.SSLContext:
    """Verifies the server, a manager, against the CA but presents no cert (the join call)."""
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, None, None)
    context.check_hostname = server_hostname_check
    context.verify_mode = ssl.CERT_REQUIRED
    _load_ca(context, ca_pem)
    context.sslobject_class = _ManagerPeer
    return context


class _ManagerPeer(ssl.SSLObject):
    """Ends the handshake unless the verified server certificate's role is manager:
    before any request, and so any secret, is sent."""

    def do_handshake(self) -> None:
        super().do_handshake()
        # Imported here: the CLI's import path stays free of cryptography (fast start).
        from swarmlite.security.ca import cert_identity

        leaf = self.getpeercert(binary_form=True)
        role = cert_identity(leaf).role if leaf else "none"
        if role != "manager":
            raise ssl.SSLCertVerificationError(
                f"the server's certificate is a {role}'s, not a manager's"
            )


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file readable by its owner only (0600), atomically."""
    target = Path(path)
    # Create the temp file 0600 from the start: no window where the key is world-readable.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    """Make the renames in ``directory`` durable, in the order they were made."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pair_loads(cert: Path, key: Path) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except OSError:  # ssl.SSLError "key values mismatch" included
        return False
    return True


def finish_interrupted_save(directory: str | os.PathLike[str]) -> str:
    """Complete or drop a ``Credentials.save`` that a crash interrupted; what was done,
    or "" when there was nothing to do. For the daemon at start, before anything reads
    the pair (a CLI call must not: it could race the daemon's own save)."""
    base = Path(directory)
    staged_cert, staged_key = base / (CERT_FILE + STAGED), base / (KEY_FILE + STAGED)
    if not staged_cert.exists():
        staged_key.unlink(missing_ok=True)
        return ""
    if _pair_loads(staged_cert, base / KEY_FILE):
        # The key was installed (or is unchanged), the certificate not yet: install it.
        os.replace(staged_cert, base / CERT_FILE)
        done = "installed the new certificate of an interrupted renewal (it matches the key)"
    else:
        # Interrupted before the key was installed: the previous pair is whole.
        staged_cert.unlink()
        done = "dropped the new pair of an interrupted renewal (the previous pair is whole)"
    staged_key.unlink(missing_ok=True)
    _fsync_dir(base)
    return done


@dataclass(frozen=True, slots=True)
class Credentials:
    """A node's certificate, key and cluster CA (plus the CA key on managers)."""

    cert_pem: str
    key_pem: str = field(repr=False)
    ca_pem: str = field(repr=False)
    ca_key_pem: str | None = field(default=None, repr=False)

    @property
    def identity(self) -> Identity:
        from swarmlite.security.ca import cert_identity  # cryptography: not for every CLI call

        return cert_identity(self.cert_pem)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Credentials:
        base = Path(directory)
        try:
            cert, key, ca = (
                (base / name).read_text("ascii") for name in (CERT_FILE, KEY_FILE, CA_FILE)
            )
        except FileNotFoundError as exc:
            raise AuthError(
                f"no node credentials in {base}: missing {Path(str(exc.filename)).name} "
                "(initialize a cluster or join one first)"
            ) from None
        except OSError as exc:  # unreadable: often a data dir that belongs to another user
            raise AuthError(f"cannot read node credentials in {base}: {exc.strerror}") from None
        ca_key_path = base / CA_KEY_FILE
        try:
            ca_key = ca_key_path.read_text("ascii") if ca_key_path.exists() else None
        except OSError as exc:
            raise AuthError(f"cannot read {ca_key_path}: {exc.strerror}") from None
        return cls(cert, key, ca, ca_key)

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the files; node.crt and node.key replace the previous pair so that a
        crash at any point leaves a pair that ``finish_interrupted_save`` makes whole.

        Both are staged first (node.crt.new, node.key.new), then the key is renamed into
        place, then the certificate. The names stay node.crt and node.key (etcd re-reads
        them on every handshake). Interrupted before the key's rename, the previous pair
        is whole and the staged one is dropped; after it, the staged certificate matches
        the installed key and is installed: in both cases one pair, never two halves.
        """
        base = Path(directory)
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(base / (CERT_FILE + STAGED), self.cert_pem.encode("ascii"))
        write_private(base / (KEY_FILE + STAGED), self.key_pem.encode("ascii"))
        _fsync_dir(base)
        os.replace(base / (KEY_FILE + STAGED), base / KEY_FILE)
        _fsync_dir(base)  # the key's rename is durable before the certificate's
        os.replace(base / (CERT_FILE + STAGED), base / CERT_FILE)
        write_private(base / CA_FILE, self.ca_pem.encode("ascii"))
        if self.ca_key_pem is not None:
            write_private(base / CA_KEY_FILE, self.ca_key_pem.encode("ascii"))
        _fsync_dir(base)

    def server_context(self, *, require_client_cert: bool = True) -> ssl.SSLContext:
        return server_context(
            self.cert_pem, self.key_pem, self.ca_pem, require_client_cert=require_client_cert
        )

    def client_context(
        self, *, server_hostname_check: bool = False, managers_only: bool = False
    ) -> ssl.SSLContext:
        return client_context(
            self.cert_pem,
            self.key_pem,
            self.ca_pem,
            server_hostname_check=server_hostname_check,
            managers_only=managers_only,
        )
