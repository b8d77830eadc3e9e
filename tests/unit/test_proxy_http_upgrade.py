"""Upgrade requests through the HTTP mesh: a tunnel only once the backend agrees (101)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from swarmlite.proxy.mesh import MeshProxy
from tests.unit.test_proxy_http import _publish
from tests.unit.test_proxy_support import BACKEND_IPS, backend, free_port, route, snapshot


@dataclass
class PlainBackend:
    """Answers every request it parses with 404, keeping the connection alive, as a
    server without websockets does; records the request lines it saw."""

    name: str
    host: str
    port: int
    seen: list[bytes] = field(default_factory=list)

    async def serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while head := await r.readuntil(b"\r\n\r\n"):
                self.seen.append(head.split(b"\r\n", 1)[0])
                w.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope")
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()


@pytest.fixture
async def plain() -> AsyncIterator[PlainBackend]:
    b = PlainBackend("p0", BACKEND_IPS[0], free_port(BACKEND_IPS[0]))
    server = await asyncio.start_server(b.serve, b.host, b.port)
    yield b
    server.close()


async def _exchange(url: str, raw: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    r, w = await asyncio.open_connection(host, int(port))
    w.write(raw)
    data = await asyncio.wait_for(r.read(), 5)  # read until the mesh closes
    w.close()
    return data


async def test_a_refused_upgrade_does_not_smuggle_what_follows(
    mesh: MeshProxy, plain: PlainBackend
) -> None:
    url = await _publish(mesh, [plain])  # type: ignore[list-item]
    upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    # The follower would reach the backend raw, its X-Forwarded-For unchecked.
    follower = b"GET /admin HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 127.0.0.1\r\n\r\n"
    data = await _exchange(url, upgrade + follower)
    assert data.startswith(b"HTTP/1.1 404") and data.count(b"HTTP/1.1") == 1
    await asyncio.sleep(0.2)
    assert plain.seen == [b"GET /ws HTTP/1.1"]


async def test_connect_is_refused(mesh: MeshProxy, plain: PlainBackend) -> None:
    url = await _publish(mesh, [plain])  # type: ignore[list-item]
    data = await _exchange(url, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 405 Method Not Allowed")
    assert plain.seen == []


async def test_an_upgrade_request_names_only_the_upgrade_to_the_backend(
    mesh: MeshProxy,
) -> None:
    heads: list[bytes] = []

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        heads.append(await r.readuntil(b"\r\n\r\n"))
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n")
        w.write(await r.read(5))  # echoes the tunnel's first bytes
        await w.drain()
        w.close()

    server = await asyncio.start_server(serve, BACKEND_IPS[0], 0)
    listen = free_port()
    port = server.sockets[0].getsockname()[1]
    svc = route(
        "web", published=listen, target=port, http=True, backends=(backend("s", BACKEND_IPS[0]),)
    )
    await mesh.apply(snapshot(svc))
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    try:
        w.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n"
            b"Keep-Alive: 5\r\nUpgrade: x\r\n\r\nhello"
        )
        got = await asyncio.wait_for(r.read(), 5)
        assert got.endswith(b"\r\n\r\nhello")
        assert heads == [
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: upgrade\r\n"
            b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
        ]
    finally:
        w.close()
        server.close()
