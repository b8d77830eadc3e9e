"""What every API handler shares: the context, JSON answers, reading after a write."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from swarmlite.agent.runtime import DockerRuntime
from swarmlite.errors import ConflictError, NotFoundError, SpecError
from swarmlite.manager.dispatcher import Dispatcher
from swarmlite.manager.leader import LeaderElection
from swarmlite.security.keeper import SecretKeeper
from swarmlite.spec.objects import Service
from swarmlite.store.cache import ClusterState, StateCache
from swarmlite.store.store import Delete, Put, Store, Versioned

VERSION = "0.1.0"


class ApiContext:
    def __init__(
        self,
        *,
        store: Store,
        cache: StateCache,
        dispatcher: Dispatcher,
        runtime: DockerRuntime,
        node_id: str,
        ca_pem: str,
        election: LeaderElection | None = None,
        keeper: SecretKeeper | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.election = election
        self.keeper = keeper  # seals secrets; None on a node without the cluster key
        self.store = store
        self.cache = cache
        self.dispatcher = dispatcher
        self.runtime = runtime
        self.node_id = node_id
        self.ca_pem = ca_pem
        self.client_tls = client_tls  # this node's identity, to ask other nodes
        # Deploys through this manager go one at a time: concurrent ones would only
        # conflict on the cluster object and retry (deploys via other managers still do).
        self.deploy_lock = asyncio.Lock()


CTX = web.AppKey("ctx", ApiContext)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(obj), status=status, content_type="application/json"
    )


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CTX]


async def _fresh(ctx: ApiContext, after: int) -> ClusterState:
    """The cache view once it has caught up with a write at revision ``after``."""
    deadline = time.monotonic() + 2.0
    while ctx.cache.view().revision < after and time.monotonic() < deadline:
        await ctx.cache.wait_changed(ctx.cache.version, timeout=0.2)
    return ctx.cache.view()


async def commit_fresh(ctx: ApiContext, ops: list[Put | Delete], seen: int) -> bool:
    """Commit ``ops`` and wait for the cache to show them; False if a compare-and-swap
    lost, after waiting (at most 0.5 s) for the cache to move past ``seen``, the
    version the ops were read at, so the caller's next try reads what won."""
    try:
        revision = await ctx.store.commit(ops)
    except ConflictError:
        await ctx.cache.wait_changed(seen, timeout=0.5)
        return False
    await _fresh(ctx, revision)
    return True


def find_service(state: ClusterState, name: str) -> Versioned[Service]:
    """The service ``name`` refers to: its full name or id, else its short name (as in
    the compose file), else a unique id prefix. Names come before prefixes, as in
    Docker: ``db`` is the service ``shop_db``, not one whose id starts with ``db``."""
    services = list(state.services.values())
    rules: tuple[Callable[[Service], bool], ...] = (
        lambda s: s.name == name or s.id == name,
        lambda s: s.spec.name == name,
        lambda s: s.id.startswith(name),
    )
    for matches in rules:
        found = [v for v in services if matches(v.value)]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(sorted(v.value.name for v in found))
            raise SpecError(f"service {name} is ambiguous: it could be {names}; give the full name")
    raise NotFoundError(f"service {name} not found (see 'swarmlite service ls')")
