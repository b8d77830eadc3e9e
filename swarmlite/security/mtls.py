"""aiohttp glue: who is calling, and may they call this path.

The API server should use ``server_context(..., require_client_cert=False)``
(CERT_OPTIONAL): a cert that is presented must verify against the cluster CA
during the handshake, but a new node without one can still reach the public
paths (``/v1/ca``, ``/v1/join``). This middleware then enforces the cert
everywhere else: 401 without a usable cert, 403 when the role may not call the path.
"""

from __future__ import annotations

import functools
import logging
import ssl
from collections.abc import Callable, Collection
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from swarmlite.errors import AuthError
from swarmlite.security.ca import Identity, Role, cert_identity

log = logging.getLogger("swarmlite.security")

PUBLIC_PATHS: frozenset[str] = frozenset({"/v1/ca", "/v1/join"})
# Typed request storage (aiohttp >= 3.13): handlers read it via request_identity().
IDENTITY_KEY = web.RequestKey("swarmlite.identity", Identity)

Policy = Callable[[str, Identity], bool]


def peer_identity(request: web.BaseRequest) -> Identity | None:
    """The verified peer's identity, or None if it sent no (usable) certificate."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    # With CERT_NONE the peer cert is unverified and proves nothing.
    if ssl_object.context.verify_mode == ssl.CERT_NONE:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return _identity_of(der)


@functools.lru_cache(maxsize=1024)
def _identity_of(der: bytes) -> Identity | None:
    # Parsing a certificate costs more than the rest of a small request: clients and
    # nodes keep sending the same few.
    try:
        return cert_identity(der)
    except AuthError:
        return None


def request_identity(request: web.BaseRequest) -> Identity:
    """For handlers behind ``mtls_middleware``: the caller's identity."""
    identity = request.get(IDENTITY_KEY)
    if not isinstance(identity, Identity):
        raise AuthError("this request carries no verified client certificate")
    return identity


def allow_roles(rules: dict[str, Collection[Role]], default: Collection[Role]) -> Policy:
    """A policy from path prefixes to roles; the longest matching prefix wins."""
    ordered = sorted(rules.items(), key=lambda item: len(item[0]), reverse=True)

    def allowed(path: str, identity: Identity) -> bool:
        for prefix, roles in ordered:
            if path.startswith(prefix):
                return identity.role in roles
        return identity.role in default

    return allowed


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def mtls_middleware(
    allowed_by_path: Policy, *, public_paths: Collection[str] = PUBLIC_PATHS
) -> Middleware:
    """Authenticate by client certificate and authorize by its role (the cert's OU)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = peer_identity(request)
        if identity is not None:
            request[IDENTITY_KEY] = identity
        if request.path in public_paths:
            return await handler(request)
        peer = request.remote or "?"
        if identity is None:
            log.warning("refused path=%s peer=%s reason=no-client-certificate", request.path, peer)
            return _refuse(401, "a client certificate from this cluster's CA is required")
        # The handshake checked expiry; a long-lived connection can outlive the cert.
        if identity.not_after < datetime.now(UTC):
            log.warning(
                "refused path=%s node=%s peer=%s reason=certificate-expired",
                request.path,
                identity.node_id,
                peer,
            )
            return _refuse(401, "the client certificate has expired; renew it")
        if not allowed_by_path(request.path, identity):
            log.warning(
                "refused path=%s node=%s role=%s peer=%s reason=role-not-allowed",
                request.path,
                identity.node_id,
                identity.role,
                peer,
            )
            return _refuse(403, f"role {identity.role!r} may not call {request.path}")
        return await handler(request)

    return middleware


def ca_handler(ca_pem: str) -> Handler:
    """``GET /v1/ca``: the cluster CA certificate, public by design."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=ca_pem, content_type="application/x-pem-file")

    return handler
