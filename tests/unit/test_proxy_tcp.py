"""The L4 mesh over real loopback sockets, with small real TCP backends."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import uvloop

from swarmlite.proxy.mesh import MeshProxy
from swarmlite.proxy.tcp import TcpProxyConnection
from swarmlite.spec.routes import Backend
from tests.unit.test_proxy_support import (
    BACKEND_IPS,
    DEAD_IP,
    NET,
    TcpBackend,
    backend,
    free_port,
    route,
    snapshot,
)


@pytest.fixture
async def backends() -> AsyncIterator[list[TcpBackend]]:
    port = free_port(BACKEND_IPS[0])
    started = [await TcpBackend(f"b{i}", ip, port).start() for i, ip in enumerate(BACKEND_IPS)]
    yield started
    for b in started:
        await b.stop()


def _svc(port: int, bs: list[TcpBackend], *extra_ips: str) -> object:
    tasks = tuple(backend(b.name, b.host) for b in bs)
    tasks += tuple(backend(f"dead{i}", ip) for i, ip in enumerate(extra_ips))
    return route("web", published=port, target=bs[0].port, backends=tasks)


async def _ask(port: int, line: bytes = b"name\n") -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(line)
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data


async def test_round_robin_spreads_over_three_backends(
    mesh: MeshProxy, backends: list[TcpBackend]
) -> None:
    port = free_port()
    decision = await mesh.apply(snapshot(_svc(port, backends)))  # type: ignore[arg-type]
    assert "opened=1" in decision
    assert mesh.listening() == [("127.0.0.1", port, "st_web")]
    names = Counter([(await _ask(port)).strip() for _ in range(30)])
    assert names == {b"b0": 10, b"b1": 10, b"b2": 10}


async def test_removed_backend_gets_no_new_connections(
    mesh: MeshProxy, backends: list[TcpBackend]
) -> None:
    port = free_port()
    await mesh.apply(snapshot(_svc(port, backends)))  # type: ignore[arg-type]
    await _ask(port)
    # Hold a connection that went to some backend; it must survive the update.
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"echo\n")
    await mesh.apply(snapshot(_svc(port, backends[:2]), revision=2))  # type: ignore[arg-type]
    before = backends[2].accepts
    names = {(await _ask(port)).strip() for _ in range(12)}
    assert names == {b"b0", b"b1"}
    assert backends[2].accepts == before
    w.write(b"still here")
    w.write_eof()  # half-close: the backend answers after it
    assert await asyncio.wait_for(r.read(), 5) == b"still herebye\n"
    w.close()


async def test_dead_backend_is_skipped_without_client_errors(
    mesh: MeshProxy, backends: list[TcpBackend]
) -> None:
    port = free_port()
    await mesh.apply(snapshot(_svc(port, backends[:2], DEAD_IP)))  # type: ignore[arg-type]
    answers = [(await _ask(port)).strip() for _ in range(30)]
    assert set(answers) == {b"b0", b"b1"}
    # After its refused connect the dead one is skipped: no more dials to it for now.
    (picker,) = [r.picker for r in mesh.table.routes()]
    dead = next(t for t in picker.targets if t.host == DEAD_IP)
    assert dead not in [picker.pick() for _ in range(6)]


async def test_all_backends_dead_closes_client(mesh: MeshProxy) -> None:
    port = free_port()
    dead = route(
        "web", published=port, target=free_port(DEAD_IP), backends=(backend("x", DEAD_IP),)
    )
    await mesh.apply(snapshot(dead))
    assert await _ask(port) == b""
    empty = route("web", published=port, target=80, backends=())
    await mesh.apply(snapshot(empty, revision=2))
    assert await _ask(port) == b""


async def test_bind_error_is_reported_not_raised(mesh: MeshProxy) -> None:
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        decision = await mesh.apply(snapshot(route("web", published=port, backends=())))
        assert "errors=1" in decision
        [err] = mesh.listener_errors()
        assert (err.service, err.port) == ("st_web", port)
    finally:
        taken.close()
    await mesh.apply(snapshot(route("web", published=port, backends=()), revision=2))
    assert mesh.listener_errors() == []  # retried on the next apply
    assert mesh.listening() == [("127.0.0.1", port, "st_web")]


def _buffered(mesh: MeshProxy) -> int:
    total = 0
    for conn in mesh._ctx.connections:
        assert isinstance(conn, TcpProxyConnection)
        for t in (conn.transport, conn.upstream):
            if t is not None:
                total += t.get_write_buffer_size()
        total += conn._buffered
    return total


async def _watch(mesh: MeshProxy, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _buffered(mesh))
        await asyncio.sleep(0.005)


SIZE = 50 * 1024 * 1024


async def test_large_upload_and_download_stream_with_bounded_buffering(mesh: MeshProxy) -> None:
    ip = BACKEND_IPS[0]
    slow = await TcpBackend("slow", ip, free_port(ip), slow=0.001).start()
    port = free_port()
    await mesh.apply(snapshot(_svc(port, [slow])))  # type: ignore[arg-type]
    peak, stop = [0], asyncio.Event()
    watcher = asyncio.create_task(_watch(mesh, peak, stop))
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"upload {SIZE}\n".encode())
        block = b"u" * (1 << 20)
        for _ in range(SIZE // len(block)):
            w.write(block)
            await w.drain()
        assert await asyncio.wait_for(r.readline(), 10) == f"got {SIZE}\n".encode()
        w.close()

        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"download {SIZE}\n".encode())
        got = 0
        while chunk := await asyncio.wait_for(r.read(1 << 20), 10):
            got += len(chunk)
            await asyncio.sleep(0)  # a slow-ish reader
        assert got == SIZE
        w.close()
    finally:
        stop.set()
        await watcher
        await slow.stop()
    assert slow.received == SIZE
    assert peak[0] < 2 * 1024 * 1024, f"proxy held {peak[0]} bytes at once"


async def test_stop_is_bounded_with_open_connections(backends: list[TcpBackend]) -> None:
    m = MeshProxy("n1", bind_host="127.0.0.1")
    await m.start()
    port = free_port()
    await m.apply(snapshot(_svc(port, backends)))  # type: ignore[arg-type]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"echo\n")
    await asyncio.sleep(0.05)
    assert m.connections == 1
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await m.stop(grace=0.2)
    assert loop.time() - t0 < 1.0
    assert await asyncio.wait_for(r.read(), 2) == b""
    w.close()


def test_remote_backend_dialed_at_its_published_port_under_uvloop() -> None:
    async def scenario() -> list[bytes]:
        ip = BACKEND_IPS[1]
        b = await TcpBackend("remote", ip, free_port(ip)).start()
        m = MeshProxy("n1", bind_host="127.0.0.1")
        await m.start()
        port = free_port()
        # Its container address is not reachable from here: only its node's published port.
        remote = Backend(
            task_id="r1",
            node_id="n2",
            addresses={NET: "10.99.0.2"},
            remote_ports={80: f"{b.host}:{b.port}"},
        )
        await m.apply(snapshot(route("web", published=port, target=80, backends=(remote,))))
        out = [await _ask(port) for _ in range(3)]
        await m.stop(grace=0.2)
        await b.stop()
        return out

    assert uvloop.run(scenario()) == [b"remote\n"] * 3


def test_vip_and_published_port_share_a_number_under_uvloop() -> None:
    """0.0.0.0:P and VIP:P both bind (SO_REUSEPORT); the kernel picks the VIP's socket."""

    async def scenario() -> tuple[bytes, bytes, list[tuple[str, int, str]]]:
        pub_b = await TcpBackend("pub", BACKEND_IPS[0], free_port(BACKEND_IPS[0])).start()
        vip_b = await TcpBackend("vip", BACKEND_IPS[1], free_port(BACKEND_IPS[1])).start()
        port = free_port()
        # The VIP dials its backend on the same port number, which a test host cannot
        # give a second process next to 0.0.0.0:port: reach it as a "remote" task.
        m = MeshProxy("n1", bind_host="0.0.0.0")
        await m.start()
        web = route("web", published=port, target=pub_b.port, backends=(backend("p", pub_b.host),))
        api = route(
            "api",
            target=port,
            backends=(
                Backend(
                    task_id="v",
                    node_id="n2",
                    addresses={NET: vip_b.host},
                    remote_ports={port: f"{vip_b.host}:{vip_b.port}"},
                ),
            ),
            endpoints={"st_default": "127.0.0.200"},
            listen_ports=(port,),
        )
        await m.apply(snapshot(web, api))
        via_pub = await _ask(port)
        r, w = await asyncio.open_connection("127.0.0.200", port)
        w.write(b"name\n")
        via_vip = await asyncio.wait_for(r.read(), 5)
        w.close()
        listening = m.listening()
        await m.stop(grace=0.2)
        await pub_b.stop()
        await vip_b.stop()
        return via_pub, via_vip, listening

    pub, vip, listening = uvloop.run(scenario())
    assert (pub, vip) == (b"pub\n", b"vip\n")
    assert ("127.0.0.200", listening[0][1], "st_api") in listening


async def test_bytes_held_during_a_slow_connect_that_fill_the_upstream_keep_the_client_paused(
    mesh: MeshProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's bytes held while the dial waits are flushed to the backend at once.
    When that leaves the upstream above its high-water mark, the client must stay
    paused until it drains (it was once resumed regardless, and then read without bound).
    """
    import socket

    from swarmlite.proxy import tcp

    # Under the pre-connect hold (256 KiB), so the flush alone passes it.
    monkeypatch.setattr(tcp, "WRITE_HIGH_WATER", 64 * 1024)
    full_ip, tight_ip = BACKEND_IPS[1], BACKEND_IPS[2]
    port = free_port(full_ip)
    # Dialed first: its accept queue is full, so its SYNs are dropped until the connect
    # times out (1 s) while the client's bytes pile up and pause it.
    full = socket.socket()
    full.bind((full_ip, port))
    full.listen(0)
    filler = socket.create_connection((full_ip, port))
    # Then this one: the kernel accepts, nobody reads, and a small window and MSS keep
    # the kernel from absorbing the flush.
    tight = socket.socket()
    tight.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tight.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    tight.bind((tight_ip, port))
    tight.listen(8)
    mesh_port = free_port()
    backends = (backend("a-full", full_ip), backend("b-tight", tight_ip))
    await mesh.apply(snapshot(route("web", published=mesh_port, target=port, backends=backends)))
    peak, stop = [0], asyncio.Event()
    watcher = asyncio.create_task(_watch(mesh, peak, stop))
    sent = 0
    try:
        _, w = await asyncio.open_connection("127.0.0.1", mesh_port)
        block = b"x" * (1 << 20)
        for _ in range(32):
            w.write(block)
            try:
                await asyncio.wait_for(w.drain(), 3)
            except TimeoutError:
                break  # the mesh stopped reading: what flow control is for
            sent += len(block)
        w.close()
    finally:
        stop.set()
        await watcher
        for s in (filler, full, tight):
            s.close()
    assert peak[0] > 256 * 1024, "the test never held bytes through a slow connect"
    assert peak[0] < 2 * 1024 * 1024, f"proxy held {peak[0]} bytes at once"
    assert sent < 32 << 20
