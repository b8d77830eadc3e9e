"""HTTP handlers for joining and for join tokens (registered by api/server.py)."""

from __future__ import annotations

import base64
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

import aetcd
import msgspec
from aiohttp import web

from swarmlite.api import node_handlers
from swarmlite.api.join import (
    admit,
    decode_join,
    json_response,
    new_node,
    open_tokens,
    peer_url,
    rotate,
)
from swarmlite.api.models import JoinResponse, JoinTokens
from swarmlite.errors import AuthError, ConflictError, SpecError, StoreUnavailableError
from swarmlite.manager.reconcile import new_id
from swarmlite.security.ca import ClusterCA, cert_dns_names
from swarmlite.security.mtls import request_identity
from swarmlite.security.secretbox import SecretBox
from swarmlite.spec.objects import Cluster, Node
from swarmlite.spec.service import Frozen
from swarmlite.store.membership import add_learner, list_members
from swarmlite.store.store import Delete, Store

log = logging.getLogger("swarmlite.join")


@dataclass(frozen=True)
class JoinAuthority:
    """What a manager needs to admit nodes: the CA key, the cluster key, etcd."""

    ca: ClusterCA
    box: SecretBox
    cluster_key: bytes
    store: Store
    client: aetcd.Client


JOIN_KEY = web.AppKey("join", JoinAuthority)


def register(app: web.Application, authority: JoinAuthority) -> None:
    app[JOIN_KEY] = authority
    app.router.add_post("/v1/join", join)
    app.router.add_get("/v1/join-tokens", join_tokens)
    app.router.add_post("/v1/join-tokens/{role}/rotate", rotate_token)
    app.router.add_post("/v1/promotion", promotion)
    # Node removal and demotion change etcd membership too: same client, same managers.
    node_handlers.register(app, authority.client)


async def _cluster(authority: JoinAuthority) -> Cluster:
    clusters = await authority.store.all(Cluster)
    if not clusters:
        raise StoreUnavailableError("the cluster is not initialised yet")
    return clusters[0].value


async def join(request: web.Request) -> web.Response:
    authority = request.app[JOIN_KEY]
    body = decode_join(await request.read())
    cluster = await _cluster(authority)
    peer = request.remote or "?"
    try:
        role = admit(cluster, body)
    except AuthError:
        log.warning("join refused peer=%s hostname=%s: invalid token", peer, body.hostname)
        raise
    if not body.advertise_addr or not 0 < body.api_port < 65533:
        raise SpecError("join request needs an advertise address and an API port")
    node_id = new_id()
    cert = authority.ca.sign_csr(
        body.csr_pem,
        node_id=node_id,
        role="manager" if role == "manager" else "worker",
        san_ips=sorted({body.advertise_addr, "127.0.0.1"}),
        san_dns=cert_dns_names(body.hostname),
        lifetime=timedelta(seconds=cluster.node_cert_lifetime),
    )
    created = await authority.store.create(new_node(node_id, body, role))
    initial: dict[str, str] = {}
    if role == "manager":
        try:
            _, initial = await add_learner(
                authority.client, node_id, peer_url(body.advertise_addr, body.api_port)
            )
        except Exception:
            # Nothing half-done: the node record goes again.
            with contextlib.suppress(Exception):
                await authority.store.commit([Delete(Node, node_id, created.revision)])
            raise
    managers = tuple(
        sorted(
            f"{n.value.addr}:{n.value.api_port}"
            for n in await authority.store.all(Node)
            if n.value.role == "manager" and n.value.id != node_id
        )
    )
    log.info("node=%s hostname=%s joined as %s from %s", node_id[:12], body.hostname, role, peer)
    return json_response(
        JoinResponse(
            node_id=node_id,
            cluster_id=cluster.id,
            role=role,
            cert_pem=cert,
            ca_pem=authority.ca.cert_pem,
            managers=managers,
            ca_key_pem=authority.ca.key_pem if role == "manager" else "",
            cluster_key=base64.b64encode(authority.cluster_key).decode()
            if role == "manager"
            else "",
            etcd_initial_cluster=initial,
            address_pool=cluster.address_pool,
        )
    )


async def join_tokens(request: web.Request) -> web.Response:
    authority = request.app[JOIN_KEY]
    cluster = await _cluster(authority)
    return json_response(open_tokens(authority.box, cluster.sealed_tokens))


async def rotate_token(request: web.Request) -> web.Response:
    authority = request.app[JOIN_KEY]
    tokens: JoinTokens = await rotate(
        authority.store, authority.box, authority.ca, request.match_info["role"]
    )
    return json_response(tokens)


class PromotionRequest(Frozen, frozen=True):
    csr_pem: str


async def promotion(request: web.Request) -> web.Response:
    """A node the cluster marked as manager collects what a manager needs.

    Authenticated by the node's own certificate; allowed only once ``node promote``
    has recorded the manager role for it.
    """
    authority = request.app[JOIN_KEY]
    identity = request_identity(request)
    body = msgspec.json.decode(await request.read(), type=PromotionRequest)
    node = await authority.store.get(Node, identity.node_id)
    if node is None or node.value.role != "manager":
        raise ConflictError(f"node {identity.node_id} is not marked for promotion")
    cluster = await _cluster(authority)
    cert = authority.ca.sign_csr(
        body.csr_pem,
        node_id=node.value.id,
        role="manager",
        san_ips=sorted({node.value.addr, "127.0.0.1"}),
        san_dns=cert_dns_names(node.value.hostname),
        lifetime=timedelta(seconds=cluster.node_cert_lifetime),
    )
    members = await list_members(authority.client)
    mine = [
        m
        for m in members
        if m.name == node.value.id or peer_url(node.value.addr, node.value.api_port) in m.peer_urls
    ]
    if mine:
        # A retry after a lost answer: the member exists; give the same cluster view.
        initial = {m.name or node.value.id: m.peer_urls[0] for m in members if m.peer_urls}
    else:
        _, initial = await add_learner(
            authority.client, node.value.id, peer_url(node.value.addr, node.value.api_port)
        )
    managers = tuple(
        sorted(
            f"{n.value.addr}:{n.value.api_port}"
            for n in await authority.store.all(Node)
            if n.value.role == "manager" and n.value.id != node.value.id
        )
    )
    log.info(
        "node=%s hostname=%s collected its manager credentials",
        node.value.id[:12],
        node.value.hostname,
    )
    return json_response(
        JoinResponse(
            node_id=node.value.id,
            cluster_id=cluster.id,
            role="manager",
            cert_pem=cert,
            ca_pem=authority.ca.cert_pem,
            managers=managers,
            ca_key_pem=authority.ca.key_pem,
            cluster_key=base64.b64encode(authority.cluster_key).decode(),
            etcd_initial_cluster=initial,
            address_pool=cluster.address_pool,
        )
    )
