"""HTTP mesh timeouts: a silent backend gets a 504, an idle client is closed; coarse
ticks, no per-request timer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from swarmlite.proxy.mesh import MeshProxy
from tests.unit.test_proxy_support import BACKEND_IPS, backend, free_port, route, snapshot


@pytest.fixture
async def quick_mesh() -> AsyncIterator[MeshProxy]:
    m = MeshProxy(
        "n1", bind_host="127.0.0.1", tick=0.1, response_timeout=0.5, client_idle_timeout=0.8
    )
    await m.start()
    yield m
    await m.stop(grace=0.5)


@pytest.fixture
async def silent() -> AsyncIterator[tuple[str, int]]:
    """A backend that accepts, reads, and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)
        while await r.read(65536):
            pass

    host = BACKEND_IPS[0]
    server = await asyncio.start_server(swallow, host, free_port(host))
    yield host, server.sockets[0].getsockname()[1]
    for w in held:
        w.close()
    server.close()


async def _publish(mesh: MeshProxy, host: str, port: int) -> int:
    published = free_port()
    web = route("web", published=published, target=port, http=True, backends=(backend("t1", host),))
    await mesh.apply(snapshot(web))
    return published


async def test_a_backend_that_never_answers_gets_a_504_and_the_request_ends(
    quick_mesh: MeshProxy, silent: tuple[str, int]
) -> None:
    port = await _publish(quick_mesh, *silent)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await asyncio.wait_for(r.read(), 5)
    waited = time.monotonic() - t0
    w.close()
    assert answer.startswith(b"HTTP/1.1 504 Gateway Timeout")
    assert b"service st_web did not answer within 0.5 s" in answer
    assert 0.4 < waited < 2.0, waited
    assert quick_mesh.in_flight("t1") == 0  # a drain does not wait for it


async def test_an_idle_kept_alive_client_and_a_half_sent_head_are_closed(
    quick_mesh: MeshProxy, silent: tuple[str, int]
) -> None:
    port = await _publish(quick_mesh, *silent)
    idle = await asyncio.open_connection("127.0.0.1", port)
    half = await asyncio.open_connection("127.0.0.1", port)
    half[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    for r, w in (idle, half):
        t0 = time.monotonic()
        assert await asyncio.wait_for(r.read(), 5) == b""  # closed by the mesh
        assert time.monotonic() - t0 < 2.0
        w.close()
    assert quick_mesh.connections == 0
