"""``service logs``: the output of every replica of a service, wherever it runs.

Each node serves its own containers' lines (``GET /v1/node/services/{id}/logs``, over
mutual TLS, to managers only), each line prefixed with its task's name. The manager
the CLI asks reads its own node's containers directly and every other node holding
tasks of the service through that endpoint, and interleaves the lines as they come.
A node that cannot be read adds one line saying so; the other nodes' lines still come.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

from aiohttp import web

from swarmlite.agent.runtime import DockerRuntime
from swarmlite.api.client import ApiClient
from swarmlite.api.context import _ctx, find_service
from swarmlite.errors import SwarmliteError
from swarmlite.security.ca import Role
from swarmlite.spec.objects import Node, task_name

NODE_LOGS_PREFIX = "/v1/node/"
NODE_LOGS_ROLES: tuple[Role, ...] = ("manager",)  # who may read a node's part
RUNTIME = web.AppKey("runtime", DockerRuntime)


def _options(request: web.Request) -> tuple[bool, int | None]:
    follow = request.query.get("follow") in ("1", "true")
    tail_text = request.query.get("tail")
    return follow, int(tail_text) if tail_text and tail_text.isdigit() else None


async def local_lines(
    runtime: DockerRuntime, service_id: str, *, follow: bool, tail: int | None
) -> AsyncIterator[bytes]:
    """This node's containers of ``service_id``, line by line, as ``task | line``; an
    engine that cannot list them gives one line saying so (as an unreachable node does)."""
    try:
        mine = await runtime.list_own(service_id)
    except SwarmliteError as exc:
        why = f"swarmlite: could not read this node's logs: {exc}"
        yield f"{runtime.node_id[:12]} | {why}\n".encode()
        return
    streams = [
        _prefixed(runtime, c.id, task_name(c.service_name, c.slot, c.node_id), follow, tail)
        for c in mine
    ]
    async for line in _merged(streams):
        yield line


async def _prefixed(
    runtime: DockerRuntime, container_id: str, task: str, follow: bool, tail: int | None
) -> AsyncIterator[bytes]:
    prefix = f"{task} | ".encode()
    try:
        async for line in runtime.logs(container_id, follow=follow, tail=tail):
            yield prefix + line.rstrip(b"\n") + b"\n"
    except SwarmliteError:
        return  # the container went away meanwhile: its lines end here


async def _remote_lines(
    node: Node, service_id: str, tls: ssl.SSLContext, follow: bool, tail: int | None
) -> AsyncIterator[bytes]:
    api = ApiClient(f"https://{node.addr}:{node.api_port}", tls)
    try:
        async for line in api.node_logs(service_id, follow=follow, tail=tail):
            yield line.encode() + b"\n"
    except SwarmliteError as exc:
        yield f"{node.hostname} | swarmlite: could not read this node's logs: {exc}\n".encode()
    finally:
        await api.close()


async def _merged(streams: list[AsyncIterator[bytes]]) -> AsyncIterator[bytes]:
    """The items of all ``streams`` as they come; ends when all have ended."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)

    async def pump(stream: AsyncIterator[bytes]) -> None:
        try:
            async for item in stream:
                await queue.put(item)
        finally:
            await queue.put(None)

    pumps = [asyncio.create_task(pump(s)) for s in streams]
    open_pumps = len(pumps)
    try:
        while open_pumps:
            item = await queue.get()
            if item is None:
                open_pumps -= 1
                continue
            yield item
    finally:
        for p in pumps:
            p.cancel()


async def _respond(request: web.Request, lines: AsyncIterator[bytes]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    async for line in lines:
        await resp.write(line)
    await resp.write_eof()
    return resp


async def node_logs(request: web.Request) -> web.StreamResponse:
    """This node's part of a service's logs (asked by a manager)."""
    follow, tail = _options(request)
    service_id = request.match_info["id"]
    runtime = request.app[RUNTIME]
    return await _respond(request, local_lines(runtime, service_id, follow=follow, tail=tail))


async def service_logs(request: web.Request) -> web.StreamResponse:
    """Every node's part of a service's logs, interleaved."""
    ctx = _ctx(request)
    state = ctx.cache.view()
    found = find_service(state, request.match_info["name"]).value
    follow, tail = _options(request)
    streams = [local_lines(ctx.runtime, found.id, follow=follow, tail=tail)]
    holders = {t.node_id for t in state.tasks_of(found.id) if t.status.container_id}
    for node_id in sorted(holders - {ctx.node_id}):
        node = state.nodes.get(node_id)
        if node is not None and ctx.client_tls is not None:
            streams.append(_remote_lines(node.value, found.id, ctx.client_tls, follow, tail))
    return await _respond(request, _merged(streams))


def register_node_logs(app: web.Application, runtime: DockerRuntime) -> None:
    app[RUNTIME] = runtime
    app.router.add_get(NODE_LOGS_PREFIX + "services/{id}/logs", node_logs)
