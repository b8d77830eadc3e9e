"""Cluster security: CA and node certificates, join tokens, mTLS, secrets at rest.

ca.py         ClusterCA, Identity, make_key_and_csr, cert_identity, needs_renewal
tokens.py     JoinToken (SWLTKN-1-<ca sha256>-<secret>), secret digests
tls.py        SSLContext builders, Credentials files (stdlib only: the CLI imports it)
pinning.py    CA pinning for joins (fetch /v1/ca, check it against the token)
mtls.py       aiohttp: peer_identity, mtls_middleware (401/403), GET /v1/ca handler
secretbox.py  SecretBox: AES-256-GCM for service secrets at rest

Import the modules themselves: this package re-exports nothing, so the CLI pays only
for what it uses.
"""
