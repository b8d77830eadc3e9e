"""Cluster security: CA and node certificates, join tokens, mTLS, secrets at rest.

ca.py         ClusterCA, Identity, make_key_and_csr, cert_identity, needs_renewal
tokens.py     JoinToken (SWLTKN-1-<ca sha256>-<secret>), secret digests
tls.py        SSLContext builders, CA pinning for joins, Credentials files
mtls.py       aiohttp: peer_identity, mtls_middleware (401/403), GET /v1/ca handler
secretbox.py  SecretBox: AES-256-GCM for service secrets at rest
"""

from swarmlite.security.ca import (
    ROLES,
    ClusterCA,
    Identity,
    Role,
    cert_identity,
    make_key_and_csr,
    needs_renewal,
)
from swarmlite.security.mtls import (
    allow_roles,
    ca_handler,
    mtls_middleware,
    peer_identity,
    request_identity,
)
from swarmlite.security.secretbox import SecretBox
from swarmlite.security.tls import (
    Credentials,
    anonymous_client_context,
    client_context,
    fetch_and_pin_ca,
    pinned_client_context,
    server_context,
    write_private,
)
from swarmlite.security.tokens import JoinToken, role_for_secret, secret_digest, verify_secret

__all__ = [
    "ROLES",
    "ClusterCA",
    "Credentials",
    "Identity",
    "JoinToken",
    "Role",
    "SecretBox",
    "allow_roles",
    "anonymous_client_context",
    "ca_handler",
    "cert_identity",
    "client_context",
    "fetch_and_pin_ca",
    "make_key_and_csr",
    "mtls_middleware",
    "needs_renewal",
    "peer_identity",
    "pinned_client_context",
    "request_identity",
    "role_for_secret",
    "secret_digest",
    "server_context",
    "verify_secret",
    "write_private",
]
