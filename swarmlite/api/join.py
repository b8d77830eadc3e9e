"""Joining the cluster: the manager's side of ``swarmlite join`` and join tokens.

A joining node has already checked the manager's CA against the token's fingerprint
(security/pinning.pinned_client_context) before it sends the secret. The manager admits
it if the secret's digest matches the worker or the manager digest, signs its CSR
with the cluster CA, registers the node and, for a manager, adds its etcd member as
a learner. A rotated token stops admitting nodes at once.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import time

import msgspec
from aiohttp import web

from swarmlite.api.models import JoinRequest, JoinTokens
from swarmlite.errors import AuthError, ConflictError, SpecError
from swarmlite.security.ca import ClusterCA
from swarmlite.security.secretbox import SecretBox
from swarmlite.security.tokens import JoinToken, role_for_secret, secret_digest
from swarmlite.spec.objects import Cluster, Node
from swarmlite.store.store import Store, Versioned

log = logging.getLogger("swarmlite.join")


def seal_tokens(box: SecretBox, tokens: JoinTokens) -> str:
    blob = box.seal(msgspec.json.encode(tokens), aad=b"join-tokens")
    return base64.b64encode(blob).decode()


def open_tokens(box: SecretBox, sealed: str) -> JoinTokens:
    raw = box.open(base64.b64decode(sealed), aad=b"join-tokens")
    return msgspec.json.decode(raw, type=JoinTokens)


def new_cluster_tokens(ca: ClusterCA) -> JoinTokens:
    return JoinTokens(
        worker=str(JoinToken.generate(ca.fingerprint(), "worker")),
        manager=str(JoinToken.generate(ca.fingerprint(), "manager")),
    )


def with_tokens(cluster: Cluster, box: SecretBox, tokens: JoinTokens) -> Cluster:
    return msgspec.structs.replace(
        cluster,
        worker_token_digest=secret_digest(JoinToken.parse(tokens.worker).secret),
        manager_token_digest=secret_digest(JoinToken.parse(tokens.manager).secret),
        sealed_tokens=seal_tokens(box, tokens),
    )


async def rotate(store: Store, box: SecretBox, ca: ClusterCA, role: str) -> JoinTokens:
    if role not in ("worker", "manager"):
        raise SpecError(f"unknown role {role!r}: use worker or manager")
    for _ in range(5):
        current = await _cluster(store)
        tokens = open_tokens(box, current.value.sealed_tokens)
        fresh = str(JoinToken.generate(ca.fingerprint(), role))  # type: ignore[arg-type]
        tokens = msgspec.structs.replace(tokens, **{role: fresh})
        try:
            await store.update(current, with_tokens(current.value, box, tokens))
        except ConflictError:
            continue
        log.info("join token rotated role=%s", role)
        return tokens
    raise ConflictError("the cluster object kept changing; try again")


async def _cluster(store: Store) -> Versioned[Cluster]:
    clusters = await store.all(Cluster)
    if not clusters:
        raise SpecError("this manager has no cluster object yet")
    return clusters[0]


def admit(cluster: Cluster, request: JoinRequest) -> str:
    """The role the secret grants; AuthError if it grants none."""
    role = role_for_secret(
        request.secret, cluster.worker_token_digest, cluster.manager_token_digest
    )
    if role is None:
        raise AuthError("invalid join token: it was rotated, or belongs to another cluster")
    return role


def decode_join(body: bytes) -> JoinRequest:
    """The request, its advertise address checked; else SpecError."""
    try:
        request = msgspec.json.decode(body, type=JoinRequest)
    except msgspec.DecodeError as exc:
        raise SpecError(f"invalid join request: {exc}") from None
    try:
        ipaddress.ip_address(request.advertise_addr)
    except ValueError:
        raise SpecError(
            f"invalid join request: advertise address {request.advertise_addr!r} is not an IP "
            "address"
        ) from None
    return request


def peer_url(addr: str, api_port: int) -> str:
    host = f"[{addr}]" if ":" in addr else addr
    return f"https://{host}:{api_port + 3}"


def new_node(node_id: str, request: JoinRequest, role: str) -> Node:
    return Node(
        id=node_id,
        hostname=request.hostname,
        addr=request.advertise_addr,
        api_port=request.api_port,
        role=role,  # type: ignore[arg-type]
        created_at=time.time(),
    )


def json_response(obj: msgspec.Struct) -> web.Response:
    return web.Response(body=msgspec.json.encode(obj), content_type="application/json")
