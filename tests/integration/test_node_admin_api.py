"""Node management handlers over a real three-member etcd: update, rm, demote, promote.

The managers are etcd members named by node id, as in a real cluster; the handlers run
in a real aiohttp server and are called through ApiClient (plain HTTP, no mTLS layer).
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
import pytest
from aiohttp import web

from swarmlite.api import node_handlers
from swarmlite.api.client import ApiClient
from swarmlite.api.models import NodeUpdateRequest
from swarmlite.api.server import CTX, ApiContext, error_middleware
from swarmlite.errors import ConflictError, SpecError
from swarmlite.spec.objects import Node, NodeStatus
from swarmlite.store.cache import StateCache
from swarmlite.store.membership import list_members
from swarmlite.store.store import Store
from tests.integration.test_etcd_cluster import Cluster, cluster, connected, join, pytestmark
from tests.unit.api_harness import serve_port

__all__ = ["cluster", "pytestmark"]


def mk(node_id: str, role: Any, state: Any = "ready") -> Node:
    return Node(
        id=node_id,
        hostname=f"host-{node_id}",
        addr="127.0.0.1",
        api_port=1,
        role=role,
        status=NodeStatus(state=state),
    )


async def _set_state(store: Store, node_id: str, state: Any) -> None:
    found = await store.get(Node, node_id)
    assert found is not None
    new = msgspec.structs.replace(found.value, status=NodeStatus(state=state))
    await store.update(found, new)


async def test_node_management_over_real_etcd(cluster: Cluster) -> None:
    one = cluster.add("m1", cluster.config("m1", 0, {}, "new"))
    one.start()
    await one.wait_serving()
    await join(cluster, one, "m2", 1)
    three, _ = await join(cluster, one, "m3", 2)

    async with connected(one, timeout=5) as client:
        store = Store(client)
        for n in (
            mk("m1", "manager"),
            mk("m2", "manager"),
            mk("m3", "manager"),
            mk("w1", "worker"),
            mk("w2", "worker", "down"),
        ):
            await store.create(n)
        cache = StateCache(store)
        await cache.start()
        try:
            app = web.Application(middlewares=[error_middleware])
            app[CTX] = ApiContext(
                store=store,
                cache=cache,
                dispatcher=cast(Any, None),
                runtime=cast(Any, None),
                node_id="m1",
                ca_pem="",
            )
            node_handlers.register(app, client)
            async for port in serve_port(app):
                async with ApiClient(f"http://127.0.0.1:{port}", None, timeout=30) as api:
                    await _scenario(api, store, client)
                    three.kill()
        finally:
            await cache.stop()


async def _scenario(api: ApiClient, store: Store, client: Any) -> None:
    # update: CAS write of availability and labels; unknown label refused.
    node = await api.update_node(
        "host-w1", NodeUpdateRequest(availability="drain", label_add={"zone": "a"})
    )
    assert (node.availability, node.labels) == ("drain", {"zone": "a"})
    stored = await store.get(Node, "w1")
    assert stored is not None and stored.value.availability == "drain"
    with pytest.raises(SpecError, match="key nope doesn't exist in node's labels"):
        await api.update_node("w1", NodeUpdateRequest(label_rm=("nope",)))

    # rm: a ready node needs --force; a down one goes.
    with pytest.raises(ConflictError, match="node w1 is not down and can't be removed"):
        await api.remove_node("w1")
    await api.remove_node("w2")
    assert await store.get(Node, "w2") is None

    # demote: never the node asked; never when the rest would lose quorum.
    with pytest.raises(ConflictError, match="cannot demote itself"):
        await api.demote_node("m1")
    await _set_state(store, "m3", "down")
    with pytest.raises(ConflictError, match="1 of 2 managers reachable"):
        await api.demote_node("m2")
    await _set_state(store, "m3", "ready")

    # demote m3: its etcd member goes first, then its Node becomes a worker.
    result = await api.demote_node("m3")
    assert "demoted to worker" in result.message and "etcd member" in result.message
    assert sorted(m.name for m in await list_members(client)) == ["m1", "m2"]
    stored = await store.get(Node, "m3")
    assert stored is not None and stored.value.role == "worker"
    assert "already a worker" in (await api.demote_node("m3")).message

    # promote only records the role.
    assert "promoted to manager" in (await api.promote_node("m3")).message
    stored = await store.get(Node, "m3")
    assert stored is not None and stored.value.role == "manager"

    # rm --force of a ready manager: its member leaves etcd, the Node goes.
    await api.remove_node("m2", force=True)
    assert [m.name for m in await list_members(client)] == ["m1"]
    assert await store.get(Node, "m2") is None
