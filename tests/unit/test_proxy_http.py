"""The L7 (``app_protocol: http``) mesh with small aiohttp backends and clients."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from swarmlite.proxy.http import HttpProxyConnection
from swarmlite.proxy.mesh import MeshProxy
from tests.unit.test_proxy_support import (
    BACKEND_IPS,
    DEAD_IP,
    backend,
    free_port,
    route,
    snapshot,
)

SIZE = 50 * 1024 * 1024


class HttpBackend:
    def __init__(self, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        self.peers: set[tuple[str, int]] = set()
        self.runner: web.AppRunner | None = None

    async def start(self) -> HttpBackend:
        app = web.Application(client_max_size=SIZE * 2)
        app.router.add_get("/name", self.name_)
        app.router.add_get("/headers", self.headers)
        app.router.add_get("/chunked", self.chunked)
        app.router.add_post("/upload", self.upload)
        app.router.add_get("/download", self.download)
        app.router.add_get("/ws", self.ws)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername")[:2])

    async def name_(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text=self.name)

    async def headers(self, request: web.Request) -> web.Response:
        h = request.headers
        return web.Response(
            text=f"{h.get('X-Forwarded-For')}|{h.get('X-Forwarded-Proto')}|{h.get('Host')}"
        )

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(5):
            await resp.write(f"part{i};".encode())
        await resp.write_eof()
        return resp

    async def upload(self, request: web.Request) -> web.Response:
        got = 0
        async for chunk in request.content.iter_chunked(256 * 1024):
            got += len(chunk)
            await asyncio.sleep(0.001)  # a slow reader
        return web.Response(text=str(got))

    async def download(self, request: web.Request) -> web.StreamResponse:
        size = int(request.query["n"])
        resp = web.StreamResponse()
        resp.content_length = size
        await resp.prepare(request)
        block = b"d" * (1 << 20)
        for _ in range(size // len(block)):
            await resp.write(block)
        return resp

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_str(f"{self.name}:{msg.data}")
        return sock


@pytest.fixture
async def backends() -> AsyncIterator[list[HttpBackend]]:
    port = free_port(BACKEND_IPS[0])
    started = [await HttpBackend(f"b{i}", ip, port).start() for i, ip in enumerate(BACKEND_IPS)]
    yield started
    for b in started:
        await b.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    conn = aiohttp.TCPConnector(limit=1)  # one client connection: keep-alive throughout
    async with aiohttp.ClientSession(
        connector=conn, timeout=aiohttp.ClientTimeout(total=20)
    ) as session:
        yield session


async def _publish(mesh: MeshProxy, bs: list[HttpBackend], *dead: str) -> str:
    port = free_port()
    tasks = tuple(backend(b.name, b.host) for b in bs)
    tasks += tuple(backend(f"dead{i}", ip) for i, ip in enumerate(dead))
    target = bs[0].port if bs else 80
    await mesh.apply(
        snapshot(route("web", published=port, target=target, http=True, backends=tasks))
    )
    return f"http://127.0.0.1:{port}"


async def test_each_request_goes_to_the_next_backend_over_reused_upstreams(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends)
    names: Counter[str] = Counter()
    for _ in range(30):
        async with client.get(url + "/name") as resp:
            assert resp.status == 200
            names[await resp.text()] += 1
    assert names == {"b0": 10, "b1": 10, "b2": 10}
    upstream_conns = sum(len(b.peers) for b in backends)
    assert upstream_conns == 3  # one kept-alive upstream per backend, 30 requests


async def test_forwarded_headers_added_and_extended(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends[:1])
    async with client.get(url + "/headers") as resp:
        assert await resp.text() == f"127.0.0.1|http|{url[7:]}"
    hdrs = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    async with client.get(url + "/headers", headers=hdrs) as resp:
        assert await resp.text() == f"203.0.113.9, 127.0.0.1|http|{url[7:]}"


async def test_no_backend_is_503(mesh: MeshProxy, client: aiohttp.ClientSession) -> None:
    url = await _publish(mesh, [])
    async with client.get(url + "/name") as resp:
        assert resp.status == 503
        assert "st_web" in await resp.text()


async def test_dead_backend_is_retried_without_client_errors(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends[:2], DEAD_IP)
    seen: Counter[str] = Counter()
    for _ in range(30):
        async with client.get(url + "/name") as resp:
            assert resp.status == 200
            seen[await resp.text()] += 1
    assert set(seen) == {"b0", "b1"}


async def test_chunked_response_passes_through(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends)
    for _ in range(4):  # and the upstream connection stays usable after it
        async with client.get(url + "/chunked") as resp:
            assert resp.headers.get("Transfer-Encoding") == "chunked"
            assert await resp.text() == "part0;part1;part2;part3;part4;"


async def test_chunked_request_body_is_rechunked(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends[:1])

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"z" * 1000

    async with client.post(url + "/upload", data=body()) as resp:
        assert await resp.text() == "10000"


async def test_pipelined_requests_answered_in_order(
    mesh: MeshProxy, backends: list[HttpBackend]
) -> None:
    url = await _publish(mesh, backends)
    r, w = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    one = b"GET /name HTTP/1.1\r\nHost: x\r\n\r\n"
    w.write(one * 3 + b"GET /name HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in data.split(b"HTTP/1.1 200")[1:]]
    assert bodies == [b"b0", b"b1", b"b2", b"b0"]


async def test_head_and_keep_alive_after_it(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends[:1])
    for _ in range(3):
        async with client.head(url + "/name") as resp:
            assert resp.status == 200
        async with client.get(url + "/name") as resp:
            assert await resp.text() == "b0"


async def test_websocket_upgrade_is_tunnelled(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends[:1])
    async with client.ws_connect(url + "/ws") as ws:
        for i in range(3):
            await ws.send_str(f"m{i}")
            assert await asyncio.wait_for(ws.receive_str(), 5) == f"b0:m{i}"


def _buffered(mesh: MeshProxy) -> int:
    total = 0
    for conn in mesh._ctx.connections:
        assert isinstance(conn, HttpProxyConnection)
        total += conn.transport.get_write_buffer_size()
        up = conn._upstream
        if up is not None:
            total += up.transport.get_write_buffer_size()
        for req in conn._queue:
            total += req.buffered
    return total


async def test_large_bodies_stream_both_ways_with_bounded_buffering(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends[:1])
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _buffered(mesh))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())

    async def body() -> AsyncIterator[bytes]:
        block = b"u" * (1 << 20)
        for _ in range(SIZE // len(block)):
            yield block

    try:
        headers = {"Content-Length": str(SIZE)}
        async with client.post(url + "/upload", data=body(), headers=headers) as resp:
            assert await resp.text() == str(SIZE)
        got = 0
        async with client.get(url + f"/download?n={SIZE}") as resp:
            async for chunk in resp.content.iter_chunked(1 << 20):
                got += len(chunk)
        assert got == SIZE
    finally:
        done.set()
        await watcher
    assert peak < 2 * 1024 * 1024, f"proxy held {peak} bytes at once"


async def test_upstream_dying_mid_response_closes_client(mesh: MeshProxy) -> None:
    ip = BACKEND_IPS[2]

    async def half(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-part")
        await w.drain()
        w.close()

    server = await asyncio.start_server(half, ip, 0)
    port = server.sockets[0].getsockname()[1]
    listen = free_port()
    svc = route("web", published=listen, target=port, http=True, backends=(backend("h", ip),))
    await mesh.apply(snapshot(svc))
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(r.read(), 5)
    assert data.endswith(b"only-part")  # then EOF: the client sees a short body
    w.close()
    server.close()


async def test_idle_upstreams_are_swept_after_two_sweeps(
    mesh: MeshProxy, backends: list[HttpBackend], client: aiohttp.ClientSession
) -> None:
    url = await _publish(mesh, backends[:1])
    async with client.get(url + "/name") as resp:
        await resp.read()
    pool = mesh._pool
    assert pool.idle_count() == 1
    assert pool.sweep() == 0  # idle for less than a full period: kept, marked
    async with client.get(url + "/name") as resp:  # reuse clears the mark
        await resp.read()
    assert pool.sweep() == 0
    assert pool.sweep() == 1
    assert pool.idle_count() == 0
    async with client.get(url + "/name") as resp:
        assert await resp.text() == "b0"
