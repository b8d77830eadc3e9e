"""HTTP handlers for node management: update, remove, demote, promote.

Registered on managers next to the join handlers (they need the etcd client to change
membership). The decisions are pure (manager/node_admin.py); these read the cache, change
etcd's membership where a manager leaves, and write the Node with compare-and-swap.

A manager leaves etcd before its Node record changes: if the write then fails, asking
again finds no member and only retries the write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import aetcd
import msgspec
from aiohttp import web

from swarmlite.api.join import json_response, peer_url
from swarmlite.api.models import NodeActionResult, NodeUpdateRequest
from swarmlite.api.server import CTX, ApiContext, _fresh
from swarmlite.errors import ConflictError
from swarmlite.manager.node_admin import (
    apply_update,
    check_demote,
    check_remove,
    find_node,
    reachable_ids,
)
from swarmlite.spec.objects import Node
from swarmlite.store.membership import list_members, quorum_safe_to_remove, remove_member
from swarmlite.store.store import Delete, Versioned

log = logging.getLogger("swarmlite.api.nodes")

ETCD_KEY = web.AppKey("node_admin_etcd", aetcd.Client)
_ATTEMPTS = 5


def register(app: web.Application, client: aetcd.Client) -> None:
    app[ETCD_KEY] = client
    r = app.router
    r.add_post("/v1/nodes/{id}/update", update_node)
    r.add_delete("/v1/nodes/{id}", remove_node)
    r.add_post("/v1/nodes/{id}/demote", demote_node)
    r.add_post("/v1/nodes/{id}/promote", promote_node)


def _nodes(ctx: ApiContext) -> list[Node]:
    return [v.value for v in ctx.cache.view().nodes.values()]


def _versioned(ctx: ApiContext, key: str) -> Versioned[Node]:
    state = ctx.cache.view()
    node = find_node((v.value for v in state.nodes.values()), key)
    return state.nodes[node.id]


async def _rewrite(ctx: ApiContext, key: str, change: Callable[[Node], Node]) -> Node:
    """Apply ``change`` to the node with compare-and-swap, retrying lost races."""
    for _ in range(_ATTEMPTS):
        found = _versioned(ctx, key)
        updated = change(found.value)  # refusals raise here, outside the retry
        if updated == found.value:
            return updated
        try:
            result = await ctx.store.update(found, updated)
        except ConflictError:
            await ctx.cache.wait_changed(ctx.cache.version, timeout=0.5)
            continue
        await _fresh(ctx, result.revision)
        return updated
    raise ConflictError(f"node {key} kept changing; try again")


async def _leave_etcd(client: aetcd.Client, target: Node, nodes: list[Node]) -> str:
    """Remove ``target``'s etcd member if it has one; say what happened."""
    members = await list_members(client)
    url = peer_url(target.addr, target.api_port)
    member = next((m for m in members if m.name == target.id), None) or next(
        (m for m in members if url in m.peer_urls), None
    )
    if member is None:
        return "it had no etcd member"
    ready = reachable_ids(nodes)
    healthy = {m.id for m in members if m.name in ready}
    if not quorum_safe_to_remove(members, healthy, member.id):
        voters = [m for m in members if not m.is_learner]
        up = sum(1 for m in voters if m.id in healthy)
        raise ConflictError(
            f"removing the etcd member of {target.id} would leave etcd without a quorum: "
            f"{up} of {len(voters)} voting members healthy; promote another node first "
            "or restore the unreachable managers"
        )
    await remove_member(client, member.id)
    return f"etcd member {member.id:x} removed"


async def update_node(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = msgspec.json.decode(await request.read(), type=NodeUpdateRequest)

    def change(node: Node) -> Node:
        return apply_update(
            node,
            availability=body.availability,
            label_add=body.label_add,
            label_rm=body.label_rm,
        )

    node = await _rewrite(ctx, request.match_info["id"], change)
    log.info(
        "node=%s updated availability=%s labels=%s",
        node.id[:12],
        node.availability,
        ",".join(sorted(node.labels)),
    )
    return json_response(node)


async def remove_node(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    force = request.query.get("force") in ("1", "true", "yes")
    nodes = _nodes(ctx)
    target = find_node(nodes, request.match_info["id"])
    check_remove(nodes, target, local_id=ctx.node_id, force=force)
    done = ""
    if target.role == "manager":
        done = "; " + await _leave_etcd(request.app[ETCD_KEY], target, nodes)
    for _ in range(_ATTEMPTS):
        found = ctx.cache.view().nodes.get(target.id)
        if found is None:
            break
        try:
            revision = await ctx.store.commit([Delete(Node, target.id, found.revision)])
        except ConflictError:
            await ctx.cache.wait_changed(ctx.cache.version, timeout=0.5)
            continue
        await _fresh(ctx, revision)
        break
    else:
        raise ConflictError(f"node {target.id} kept changing; try again")
    log.info("node=%s hostname=%s removed%s", target.id[:12], target.hostname, done)
    return json_response(
        NodeActionResult(
            node_id=target.id,
            hostname=target.hostname,
            message=f"node {target.id} removed; its tasks will be rescheduled{done}",
        )
    )


async def demote_node(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    nodes = _nodes(ctx)
    target = find_node(nodes, request.match_info["id"])
    if target.role != "manager":
        return _result(target, f"node {target.id} is already a worker")
    if target.id == ctx.node_id:
        raise ConflictError(
            f"node {target.id} is the manager this request was sent to and cannot demote "
            "itself; run 'swarmlite node demote' against another manager"
        )
    check_demote([n for n in nodes if n.role == "manager"], target.id, reachable_ids(nodes))
    done = await _leave_etcd(request.app[ETCD_KEY], target, nodes)
    node = await _rewrite(ctx, target.id, lambda n: msgspec.structs.replace(n, role="worker"))
    log.info("node=%s demoted to worker; %s", node.id[:12], done)
    return _result(node, f"manager {node.id} demoted to worker ({done})")


async def promote_node(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    target = find_node(_nodes(ctx), request.match_info["id"])
    if target.role == "manager":
        return _result(target, f"node {target.id} is already a manager")
    node = await _rewrite(ctx, target.id, lambda n: msgspec.structs.replace(n, role="manager"))
    log.info("node=%s promoted to manager in the store", node.id[:12])
    return _result(
        node,
        f"node {node.id} promoted to manager in the cluster's records; it becomes a "
        "manager (etcd member, manager certificate) when its daemon picks this up",
    )


def _result(node: Node, message: str) -> web.Response:
    return json_response(NodeActionResult(node_id=node.id, hostname=node.hostname, message=message))
