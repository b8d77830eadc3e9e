"""``service logs``: the output of every replica of a service, wherever it runs.

Each node serves its own containers' lines (``GET /v1/node/services/{id}/logs``, over
mutual TLS, to managers only), each line prefixed with its task's name. The manager
the CLI asks reads its own node's containers directly and every other node holding
tasks of the service through that endpoint, and interleaves the lines as they come.
A node that cannot be read adds one line saying so; the other nodes' lines still come.

Followed (``-f``), new tasks are followed too, as Docker's ``service logs -f`` does:
each node watches its engine's events and streams every container of the service
that starts there (a replaced replica, a scale-up), from its first line; the manager
watches the service's tasks in its state cache and opens a node that comes to hold
one. Each container is streamed once by its own node, and each node is opened once,
so no line comes twice. A followed stream ends when the CLI disconnects, or once the
service is removed and its tasks have stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator, Callable, Iterable

from aiohttp import web

from swarmlite.agent.containers import ContainerInfo
from swarmlite.agent.docker_streams import RESYNC, EventSubscription
from swarmlite.agent.runtime import DockerRuntime
from swarmlite.api.client import ApiClient
from swarmlite.api.context import _ctx, find_service
from swarmlite.errors import SwarmliteError
from swarmlite.security.ca import Role
from swarmlite.spec.objects import Node, task_name
from swarmlite.store.cache import ClusterState, StateCache

NODE_LOGS_PREFIX = "/v1/node/"
CLIENT_CHECK = 1.0  # seconds between looks at whether a following client is still there
NODE_LOGS_ROLES: tuple[Role, ...] = ("manager",)  # who may read a node's part
RUNTIME = web.AppKey("runtime", DockerRuntime)

Lines = AsyncGenerator[bytes, None]
# A node's part, given the tail to ask for (None: every line).
RemoteOpener = Callable[[Node, int | None], Lines]


def _options(request: web.Request) -> tuple[bool, int | None]:
    follow = request.query.get("follow") in ("1", "true")
    tail_text = request.query.get("tail")
    return follow, int(tail_text) if tail_text and tail_text.isdigit() else None


async def local_lines(
    runtime: DockerRuntime, service_id: str, *, follow: bool, tail: int | None
) -> Lines:
    """This node's containers of ``service_id``, line by line, as ``task | line``; an
    engine that cannot list them gives one line saying so (as an unreachable node does).
    Followed, a container of the service that starts later is streamed from its start."""
    events: EventSubscription | None = None
    try:
        try:
            # Subscribed before listing: a container starting meanwhile is in one or both.
            events = runtime.events() if follow else None
            mine = await runtime.list_own(service_id)
        except SwarmliteError as exc:
            why = f"swarmlite: could not read this node's logs: {exc}"
            yield f"{runtime.node_id[:12]} | {why}\n".encode()
            return
        seen = {c.id for c in mine}
        streams: list[Lines] = [_prefixed(runtime, c, follow, tail) for c in mine]
        source = _started(runtime, service_id, events, seen) if events is not None else None
        async with contextlib.aclosing(_merged(streams, source)) as lines:
            async for line in lines:
                yield line
    finally:
        if events is not None:
            await events.aclose()


async def _started(
    runtime: DockerRuntime, service_id: str, events: EventSubscription, seen: set[str]
) -> AsyncGenerator[Lines, None]:
    """A followed stream, from its first line, of every container of ``service_id`` that
    starts on this node after ``seen`` were listed (and is not one of them)."""
    async for event in events:
        if event.action == RESYNC:  # events may have been missed: list again
            try:
                found = await runtime.list_own(service_id)
            except SwarmliteError:
                continue
        elif event.action == "start" and event.container_id not in seen:
            try:
                info = await runtime.inspect(event.container_id)
            except SwarmliteError:
                continue
            found = [info] if info is not None and info.service_id == service_id else []
        else:
            continue
        for container in found:
            if container.id not in seen:
                seen.add(container.id)
                yield _prefixed(runtime, container, True, None)


async def _prefixed(
    runtime: DockerRuntime, container: ContainerInfo, follow: bool, tail: int | None
) -> Lines:
    task = task_name(container.service_name, container.slot, container.node_id)
    prefix = f"{task} | ".encode()
    try:
        async for line in runtime.logs(container.id, follow=follow, tail=tail):
            yield prefix + line.rstrip(b"\n") + b"\n"
    except SwarmliteError:
        return  # the container went away meanwhile: its lines end here


async def _remote_lines(
    node: Node, service_id: str, tls: ssl.SSLContext, follow: bool, tail: int | None
) -> Lines:
    api = ApiClient(f"https://{node.addr}:{node.api_port}", tls)
    try:
        async for line in api.node_logs(service_id, follow=follow, tail=tail):
            yield line.encode() + b"\n"
    except SwarmliteError as exc:
        yield f"{node.hostname} | swarmlite: could not read this node's logs: {exc}\n".encode()
    finally:
        await api.close()


def holders(state: ClusterState, service_id: str) -> set[str]:
    """The nodes holding a container of one of the service's tasks."""
    return {t.node_id for t in state.tasks_of(service_id) if t.node_id and t.status.container_id}


async def node_parts(
    cache: StateCache,
    service_id: str,
    here: Lines,
    here_id: str,
    remote: RemoteOpener,
    *,
    follow: bool,
    tail: int | None,
) -> AsyncGenerator[Lines, None]:
    """This node's part (``here``), then every other node's holding tasks of the
    service; followed, also each node that comes to hold one later (asked for all its
    lines: they are all new), until the service is removed and its tasks are gone
    (they are deleted once stopped)."""
    yield here
    opened = {here_id}
    version = cache.version
    state = cache.view()
    later_tail = tail
    while True:
        for node_id in sorted(holders(state, service_id) - opened):
            node = state.nodes.get(node_id)
            if node is not None:
                opened.add(node_id)
                yield remote(node.value, later_tail)
        if not follow:
            return
        later_tail = None
        version = await cache.wait_changed(version)
        state = cache.view()
        if service_id not in state.services and not state.tasks_of(service_id):
            return


async def _merged(
    streams: Iterable[Lines],
    more: AsyncGenerator[Lines, None] | None = None,
    *,
    last: bool = False,
) -> Lines:
    """The items of all ``streams``, and of those ``more`` yields later, as they come;
    ends when all have ended (``more`` too), or with ``last`` as soon as ``more`` has.
    Closing it closes every stream."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)

    async def pump(stream: Lines) -> None:
        try:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    await queue.put(item)
        finally:
            await queue.put(None)

    pumps: list[asyncio.Task[None]] = []
    open_count = 0

    def start(stream: Lines) -> None:
        nonlocal open_count
        open_count += 1
        pumps.append(asyncio.create_task(pump(stream)))

    async def feed(source: AsyncGenerator[Lines, None]) -> None:
        nonlocal open_count
        try:
            async with contextlib.aclosing(source):
                async for stream in source:
                    start(stream)
        finally:
            if last:
                open_count = 1  # its end below ends the merge
            await queue.put(None)

    for stream in streams:
        start(stream)
    if more is not None:
        open_count += 1
        pumps.append(asyncio.create_task(feed(more)))
    try:
        while open_count:
            item = await queue.get()
            if item is None:
                open_count -= 1
                continue
            yield item
    finally:
        for p in pumps:
            p.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _respond(request: web.Request, lines: Lines, follow: bool) -> web.StreamResponse:
    """Stream ``lines``; a client that leaves (Ctrl-C on ``logs -f``) ends it quietly.

    Followed, a quiet service writes nothing for long, so a write would not notice the
    client gone: the next line is raced against its connection closing."""
    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    left = asyncio.ensure_future(_client_left(request)) if follow else None
    try:
        async with contextlib.aclosing(lines):
            while True:
                line = await (_next_or_none(lines, left) if left else anext(lines, None))
                if line is None:
                    break
                await resp.write(line)
        await resp.write_eof()
    except ConnectionResetError:  # the client went away while we wrote
        pass
    finally:
        if left is not None:
            left.cancel()
    return resp


async def _client_left(request: web.Request) -> None:
    # aiohttp offers no awaitable for a closed connection: look once a second.
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(CLIENT_CHECK)


async def _next_or_none(lines: Lines, left: asyncio.Future[None]) -> bytes | None:
    """The next line, or None at the end or once the client has left."""
    if left.done():
        return None
    nxt = asyncio.ensure_future(anext(lines, None))
    await asyncio.wait((nxt, left), return_when=asyncio.FIRST_COMPLETED)
    if nxt.done():
        return nxt.result()
    nxt.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await nxt
    return None


async def node_logs(request: web.Request) -> web.StreamResponse:
    """This node's part of a service's logs (asked by a manager)."""
    follow, tail = _options(request)
    service_id = request.match_info["id"]
    runtime = request.app[RUNTIME]
    return await _respond(
        request, local_lines(runtime, service_id, follow=follow, tail=tail), follow
    )


async def service_logs(request: web.Request) -> web.StreamResponse:
    """Every node's part of a service's logs, interleaved."""
    ctx = _ctx(request)
    found = find_service(ctx.cache.view(), request.match_info["name"]).value
    follow, tail = _options(request)
    tls = ctx.client_tls

    def remote(node: Node, node_tail: int | None) -> Lines:
        assert tls is not None
        return _remote_lines(node, found.id, tls, follow, node_tail)

    here = local_lines(ctx.runtime, found.id, follow=follow, tail=tail)
    if tls is None:  # no identity to ask other nodes with: this node's part only
        return await _respond(request, _merged([here]), follow)
    parts = node_parts(ctx.cache, found.id, here, ctx.node_id, remote, follow=follow, tail=tail)
    # Followed, the node parts never end (a node waits for new containers): the end
    # of the service ends them all.
    return await _respond(request, _merged([], parts, last=follow), follow)


def register_node_logs(app: web.Application, runtime: DockerRuntime) -> None:
    app[RUNTIME] = runtime
    app.router.add_get(NODE_LOGS_PREFIX + "services/{id}/logs", node_logs)
