"""CA pinning for the join flow: trust a manager only through the join token.

A new node holding only a join token:

1. ``fetch_and_pin_ca(host, port, token.ca_fingerprint)`` fetches ``GET /v1/ca``
   without verifying, and accepts the PEM only if its sha256 matches the token and
   the server's own certificate was signed by it. No secret has been sent yet.
2. ``anonymous_client_context(ca_pem)`` then verifies the manager properly for
   ``POST /v1/join`` (secret + CSR), which returns the signed node certificate.
3. From then on every call uses ``client_context(cert, key, ca)``.
"""

from __future__ import annotations

import hmac
import ssl
from datetime import UTC, datetime

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from swarmlite.errors import AuthError, SwarmliteError
from swarmlite.security.ca import cert_identity, fingerprint_of, load_cert
from swarmlite.security.tls import anonymous_client_context

_MAX_CA_PEM = 64 * 1024


def _unverified_context(seen: list[ssl.SSLObject]) -> ssl.SSLContext:
    # Only for fetching the CA to compare with the token's fingerprint; nothing
    # secret is sent over it, and nothing from it is trusted until it matches.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    # aiohttp releases a small response's connection before we can look at it;
    # recording the TLS object at handshake lets us read the leaf of the very
    # connection that served the CA.
    class _Recording(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            seen.append(self)

    context.sslobject_class = _Recording
    return context


def _check_leaf(leaf_der: bytes | None, ca: x509.Certificate, where: str) -> None:
    if not leaf_der:
        raise AuthError(f"the manager at {where} presented no certificate")
    leaf = x509.load_der_x509_certificate(leaf_der)
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise AuthError(
            f"the manager at {where} serves the cluster CA but its own certificate "
            "was not signed by it (possible interception)"
        ) from None
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise AuthError(f"the manager at {where} presented an expired certificate")
    if cert_identity(leaf).role != "manager":
        raise AuthError(f"the node at {where} is not a manager")


async def fetch_and_pin_ca(host: str, port: int, fingerprint: str, timeout: float = 10.0) -> str:
    """Fetch ``GET /v1/ca`` unverified; return its PEM only if it matches ``fingerprint``."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"https://{where}/v1/ca"
    seen: list[ssl.SSLObject] = []
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, ssl=_unverified_context(seen)) as resp,
        ):
            if resp.status != 200:
                raise AuthError(f"the manager at {where} answered {resp.status} for /v1/ca")
            oversized = AuthError(f"the manager at {where} sent an oversized CA certificate")
            if (resp.content_length or 0) > _MAX_CA_PEM:
                raise oversized
            # Counted as it arrives too: a chunked answer has no length to check first.
            body = bytearray()
            async for chunk in resp.content.iter_chunked(16 * 1024):
                body += chunk
                if len(body) > _MAX_CA_PEM:
                    raise oversized
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SwarmliteError(
            f"cannot fetch the cluster CA from {where}: {exc or type(exc).__name__} "
            "(is a manager listening there?)"
        ) from None
    try:
        ca_pem = body.decode("ascii")
        ca = load_cert(ca_pem)
    except (UnicodeDecodeError, AuthError):
        raise AuthError(f"the manager at {where} did not send a certificate for /v1/ca") from None
    if not hmac.compare_digest(fingerprint_of(ca).encode(), fingerprint.lower().encode()):
        raise AuthError("the manager's CA does not match the token's fingerprint")
    # One request on a fresh session: exactly one connection, the one that served the CA.
    leaf_der = seen[-1].getpeercert(binary_form=True) if len(seen) == 1 else None
    _check_leaf(leaf_der, ca, where)
    return ca_pem


async def pinned_client_context(
    host: str, port: int, ca_fingerprint: str, *, timeout: float = 10.0
) -> tuple[ssl.SSLContext, str]:
    """A verifying, cert-less client context for the join call, and the pinned CA PEM."""
    ca_pem = await fetch_and_pin_ca(host, port, ca_fingerprint, timeout)
    return anonymous_client_context(ca_pem), ca_pem
