"""What the mesh has in flight to each backend task, and ``drained`` for the stop sequence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from swarmlite.proxy.context import ProxyContext
from swarmlite.proxy.mesh import MeshProxy
from tests.unit.test_proxy_support import (
    BACKEND_IPS,
    TcpBackend,
    backend,
    free_port,
    route,
    snapshot,
    tcp_snapshot,
    wait_for,
)


async def test_drained_at_once_when_nothing_is_in_flight() -> None:
    ctx = ProxyContext("n1")
    assert ctx.in_flight("t1") == 0
    assert await ctx.drained("t1", 0.0)


async def test_drained_wakes_when_the_last_one_ends() -> None:
    ctx = ProxyContext("n1")
    ctx.begin("t1")
    ctx.begin("t1")
    ctx.begin("t2")
    waiter = asyncio.create_task(ctx.drained("t1", 5.0))
    ctx.end("t1")
    await asyncio.sleep(0)
    assert not waiter.done() and ctx.in_flight("t1") == 1
    ctx.end("t1")
    assert await waiter
    assert ctx.in_flight("t2") == 1  # other tasks are counted apart


async def test_drained_gives_up_after_the_timeout() -> None:
    ctx = ProxyContext("n1")
    ctx.begin("t1")
    assert not await ctx.drained("t1", 0.05)
    ctx.end("t1")
    assert await ctx.drained("t1", 0.0)


# -- TCP mode: a connection is in flight from its dial until it closes -----------------


async def test_tcp_connection_keeps_a_removed_backend_undrained_until_it_closes(
    mesh: MeshProxy, tcp_backends: list[TcpBackend]
) -> None:
    b0, b1 = tcp_backends
    port = free_port()
    await mesh.apply(tcp_snapshot(port, [b0]))
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"echo\n")
    await wait_for(lambda: mesh.in_flight("b0") == 1)
    await mesh.apply(tcp_snapshot(port, [b1], revision=2))
    assert not await mesh.drained("b0", 0.05)  # the open connection still runs on b0

    r2, w2 = await asyncio.open_connection("127.0.0.1", port)
    w2.write(b"name\n")
    assert await asyncio.wait_for(r2.read(), 5) == b"b1\n"
    w2.close()

    waiter = asyncio.create_task(mesh.drained("b0", 5.0))
    w.write(b"last")
    w.write_eof()
    assert await asyncio.wait_for(r.read(), 5) == b"lastbye\n"
    w.close()
    assert await waiter
    await wait_for(lambda: mesh.in_flight("b1") == 0)


# -- HTTP mode: a request is in flight until its response ended ------------------------


class SlowBackend:
    """``/name`` answers at once; ``/slow`` answers once ``release`` is set."""

    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        self.release = asyncio.Event()
        self.peers: set[tuple[str, int]] = set()
        self.runner: web.AppRunner | None = None

    async def start(self) -> SlowBackend:
        app = web.Application()
        app.router.add_get("/name", self.name_)
        app.router.add_get("/slow", self.slow)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def name_(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername")[:2])
        return web.Response(text=self.name)

    async def slow(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(text=f"{self.name} slow")


@pytest.fixture
async def http_backends() -> AsyncIterator[list[SlowBackend]]:
    port = free_port(BACKEND_IPS[0])
    started = [await SlowBackend(f"b{i}", ip, port).start() for i, ip in enumerate(BACKEND_IPS[:2])]
    yield started
    for b in started:
        await b.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    conn = aiohttp.TCPConnector(limit=1)  # one client connection: keep-alive throughout
    async with aiohttp.ClientSession(
        connector=conn, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        yield session


async def _publish(
    mesh: MeshProxy, port: int, tasks: list[tuple[str, SlowBackend]], revision: int
) -> str:
    backends = tuple(backend(task, b.host) for task, b in tasks)
    await mesh.apply(
        snapshot(
            route("web", published=port, target=tasks[0][1].port, http=True, backends=backends),
            revision=revision,
        )
    )
    return f"http://127.0.0.1:{port}"


async def test_http_request_in_flight_until_its_response_ended(
    mesh: MeshProxy, http_backends: list[SlowBackend], client: aiohttp.ClientSession
) -> None:
    b0, b1 = http_backends
    port = free_port()
    url = await _publish(mesh, port, [("t0", b0)], revision=1)
    slow = asyncio.create_task(client.get(url + "/slow"))
    await wait_for(lambda: mesh.in_flight("t0") == 1)
    await _publish(mesh, port, [("t1", b1)], revision=2)
    waiter = asyncio.create_task(mesh.drained("t0", 5.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    b0.release.set()
    async with await slow as resp:
        assert await resp.text() == "b0 slow"  # the request in flight finished on t0
    assert await waiter
    assert mesh.in_flight("t0") == 0
    # The next request on the same client connection goes to the remaining task.
    async with client.get(url + "/name") as resp:
        assert await resp.text() == "b1"
    assert mesh.in_flight("t1") == 0


async def test_pooled_upstreams_of_a_removed_task_are_closed_and_never_reused(
    mesh: MeshProxy, http_backends: list[SlowBackend], client: aiohttp.ClientSession
) -> None:
    b0, _ = http_backends
    port = free_port()
    url = await _publish(mesh, port, [("t0", b0)], revision=1)
    async with client.get(url + "/name") as resp:
        assert await resp.text() == "b0"
    assert mesh._pool.idle_count() == 1
    # A new task at the very same address (a replacement that got the same IP):
    # the idle connection belongs to t0 and is closed, not handed to t0's successor.
    await _publish(mesh, port, [("t0-new", b0)], revision=2)
    assert mesh._pool.idle_count() == 0
    async with client.get(url + "/name") as resp:
        assert await resp.text() == "b0"
    assert len(b0.peers) == 2, b0.peers  # a second upstream connection was opened
    assert mesh._pool.idle_count() == 1


async def test_upstream_released_after_its_task_left_the_routes_is_closed(
    mesh: MeshProxy, http_backends: list[SlowBackend], client: aiohttp.ClientSession
) -> None:
    b0, b1 = http_backends
    port = free_port()
    url = await _publish(mesh, port, [("t0", b0)], revision=1)
    slow = asyncio.create_task(client.get(url + "/slow"))
    await wait_for(lambda: mesh.in_flight("t0") == 1)
    await _publish(mesh, port, [("t1", b1)], revision=2)
    b0.release.set()
    async with await slow as resp:
        await resp.read()
    assert mesh._pool.idle_count() == 0  # not kept for a task no longer routed
