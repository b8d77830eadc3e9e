"""The manager's API handlers served in-process on 127.0.0.1, over an in-memory store.

``MemoryStore`` keeps etcd's one rule here (a write names the revision it read, or
it conflicts) and publishes every commit to a real ``StateCache``, as the watch would.
It counts commits, so a test can say "a malformed request wrote nothing".
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp import web

from swarmlite.api.client import ApiClient
from swarmlite.api.context import CTX, ApiContext
from swarmlite.api.server import error_middleware
from swarmlite.errors import ConflictError
from swarmlite.limits import MAX_REQUEST_BYTES
from swarmlite.spec.objects import Service
from swarmlite.store.cache import _FIELD_OF, ClusterState, StateCache
from swarmlite.store.store import Delete, Put, Store, Versioned


class MemoryStore(Store):
    def __init__(self) -> None:
        self.cache = StateCache(self)
        self.commits = 0

    async def check(self, timeout: float = 2.0) -> None:
        return None

    async def commit(self, ops: Sequence[Put | Delete]) -> int:
        state = self.cache.view()
        fields = {name: dict(getattr(state, name)) for name in set(_FIELD_OF.values())}
        for op in ops:
            kind = type(op.obj) if isinstance(op, Put) else op.kind
            items = fields[_FIELD_OF[kind]]
            obj_id = op.obj.id if isinstance(op, Put) else op.id
            held = items.get(obj_id)
            if (held.revision if held else 0) != op.expect:
                raise ConflictError(f"{obj_id} changed since revision {op.expect}")
        revision = state.revision + 1
        for op in ops:
            if isinstance(op, Put):
                fields[_FIELD_OF[type(op.obj)]][op.obj.id] = Versioned(op.obj, revision)
            else:
                fields[_FIELD_OF[op.kind]].pop(op.id, None)
        frozen = {name: MappingProxyType(items) for name, items in fields.items()}
        await self.cache._publish(ClusterState(revision=revision, **frozen))
        self.commits += 1
        return revision

    async def seed(self, *objects: Any) -> None:
        """Objects already in the cluster (not counted as commits)."""
        await self.commit([Put(obj, 0) for obj in objects])
        self.commits = 0


def deploy_before_delete(store: MemoryStore, kind: type[Any], user: Service) -> list[bool]:
    """Race ``store``'s next commit that deletes a ``kind``: just before it, a deploy of
    ``user`` lands (as through another manager, or one this cache has not seen yet),
    compare-and-swapping the cluster object as deploys do. The list holds True once."""
    original = store.commit
    raced: list[bool] = []

    async def commit(ops: Sequence[Put | Delete]) -> int:
        if not raced and any(isinstance(op, Delete) and op.kind is kind for op in ops):
            raced.append(True)
            cluster = store.cache.view().cluster_entry
            assert cluster is not None
            await original([Put(user, 0), Put(cluster.value, cluster.revision)])
        return await original(ops)

    store.commit = commit  # type: ignore[method-assign]
    return raced


def context(store: MemoryStore, **kw: Any) -> ApiContext:
    store.cache.connected = True
    store.cache.ready.set()
    fields: dict[str, Any] = {"dispatcher": None, "runtime": None, "node_id": "n1", "ca_pem": ""}
    return ApiContext(store=store, cache=store.cache, **(fields | kw))


Route = tuple[str, str, Callable[[web.Request], Any]]


async def serve(ctx: ApiContext, routes: Sequence[Route]) -> AsyncIterator[ApiClient]:
    """An ApiClient of an app with ``routes``, the API's error middleware and body limit."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[CTX] = ctx
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    async for api in serve_app(app):
        yield api


async def serve_port(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """``app`` served on a free loopback port (yielded), cleaned up after; over TLS
    when given ``ssl_context``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    try:
        yield sock.getsockname()[1]
    finally:
        await runner.cleanup()


async def tls_get(port: int, path: str, ctx: ssl.SSLContext) -> tuple[int, str]:
    """GET ``path`` over TLS from a loopback server with client context ``ctx``:
    the status and the body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"https://127.0.0.1:{port}{path}", ssl=ctx, timeout=aiohttp.ClientTimeout(total=5)
        ) as resp,
    ):
        return resp.status, await resp.text()


async def serve_app(app: web.Application) -> AsyncIterator[ApiClient]:
    """An ApiClient of ``app`` served on a free loopback port, cleaned up after."""
    async for port in serve_port(app):
        async with ApiClient(f"http://127.0.0.1:{port}", None, 5) as api:
            yield api


__all__ = ["MemoryStore", "context", "serve", "serve_app", "serve_port"]
