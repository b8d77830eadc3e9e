"""The mesh over several event loops: real worker processes on loopback, real TCP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from swarmlite.config import MESH_WORKERS_ENV, NodeConfig, load_config, save_config
from swarmlite.errors import DaemonError
from swarmlite.proxy.mesh import MeshProxy
from swarmlite.proxy.worker import Reply
from swarmlite.proxy.workers import MIGRATE_REQUESTS, MeshWorkers, loops_for, migrate_requests
from tests.unit.test_proxy_support import (
    TcpBackend,
    free_port,
    route,
    snapshot,
    tcp_snapshot,
    wait_for,
)

CONNS = 24  # new connections: all landing on one of two listeners has odds 2 * 2**-24


@pytest.fixture(autouse=True)
def _host_knob_kept() -> Iterator[None]:
    """Several loops turn the host's tcp_migrate_req on: put it back as it was."""
    try:
        old = MIGRATE_REQUESTS.read_text()
    except OSError:
        old = None
    yield
    if old is not None:
        with contextlib.suppress(OSError):
            MIGRATE_REQUESTS.write_text(old)


@pytest.fixture
async def workers() -> AsyncIterator[MeshWorkers]:
    m = MeshWorkers(MeshProxy("n1", bind_host="127.0.0.1"), extra=1)
    await m.start()
    assert await m.wait_workers(30) == 1
    yield m
    await m.stop(grace=0.5)


async def _ask_name(port: int) -> str:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(b"name\n")
        return (await asyncio.wait_for(r.readline(), 5)).decode().strip()
    finally:
        w.close()


def _listeners(port: int) -> set[int]:
    """Pids holding a listening TCP socket on ``port`` (from /proc, as ``ss -tlnp``)."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    pids = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed while we looked
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                pids.add(int(pid))
    return pids


async def test_every_loop_listens_and_serves(
    workers: MeshWorkers, tcp_backends: list[TcpBackend]
) -> None:
    port = free_port()
    decision = await workers.apply(tcp_snapshot(port, tcp_backends))
    assert decision.endswith("loops=2/2"), decision
    worker_pid = workers.workers[0].pid
    assert worker_pid is not None
    assert _listeners(port) == {os.getpid(), worker_pid}
    names = await asyncio.gather(*(_ask_name(port) for _ in range(CONNS)))
    assert set(names) == {"b0", "b1"}
    # Each loop balances on its own; together they still reach every backend evenly enough.
    assert sum(b.accepts for b in tcp_backends) == CONNS


async def test_drained_waits_for_connections_held_by_every_loop(
    workers: MeshWorkers, tcp_backends: list[TcpBackend]
) -> None:
    b0 = tcp_backends[0]
    port = free_port()
    await workers.apply(tcp_snapshot(port, [b0]))
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONNS)]
    for _, w in held:
        w.write(b"echo\n")
    await wait_for(lambda: b0.accepts == CONNS)
    # Some connections went to the worker process: the daemon's loop alone holds fewer.
    assert 0 < workers.local.in_flight("b0") < CONNS
    assert not await workers.drained("b0", 0.2)
    for _, w in held[: CONNS // 2]:
        w.close()
    assert not await workers.drained("b0", 0.2)
    for _, w in held[CONNS // 2 :]:
        w.close()
    assert await workers.drained("b0", 5.0)


async def test_a_killed_worker_comes_back_with_the_routes_it_missed(
    workers: MeshWorkers, tcp_backends: list[TcpBackend]
) -> None:
    b0, b1 = tcp_backends
    port = free_port()
    await workers.apply(tcp_snapshot(port, [b0]))
    first = workers.workers[0].pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: not workers.workers[0].alive)
    # While it is down the daemon's loop serves alone, and the new routes wait for it.
    decision = await workers.apply(tcp_snapshot(port, [b1], revision=2))
    assert decision.endswith("loops=1/2"), decision
    assert await _ask_name(port) == "b1"
    await wait_for(lambda: workers.workers[0].alive, timeout=15)
    assert workers.workers[0].pid not in (None, first)
    assert workers.workers[0].restarts == 1
    assert _listeners(port) == {os.getpid(), workers.workers[0].pid}
    names = await asyncio.gather(*(_ask_name(port) for _ in range(CONNS)))
    assert set(names) == {"b1"}


@pytest.mark.parametrize("end", ["stdin closed", "SIGTERM"])
async def test_a_worker_stops_when_the_daemon_goes_away(end: str) -> None:
    """End of stdin is the daemon's death (even by SIGKILL): the worker must not linger;
    SIGTERM (its process group stopped) ends it the same way."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarmlite.proxy.worker",
        "n1",
        "127.0.0.1",
        "7",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    ready = msgspec.json.decode(await asyncio.wait_for(proc.stdout.readline(), 30), type=Reply)
    assert ready.id == 0 and ready.decision == "ready"
    if end == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_one_loop_is_the_daemons_own_proxy_alone() -> None:
    m = MeshWorkers(MeshProxy("n1", bind_host="127.0.0.1"), extra=0)
    await m.start()
    try:
        port = free_port()
        assert "loops=" not in await m.apply(snapshot(route("web", published=port)))
        assert _listeners(port) == {os.getpid()}
    finally:
        await m.stop(grace=0.1)


def _config_dir(tmp_path: Path) -> Path:
    save_config(
        tmp_path,
        NodeConfig(
            node_id="n1", cluster_id="c1", role="worker", hostname="h", advertise_addr="::1"
        ),
    )
    return tmp_path


def test_the_environment_sets_the_loops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = _config_dir(tmp_path)
    assert load_config(data_dir).mesh_workers == 0  # the default: one per CPU but one
    monkeypatch.setenv(MESH_WORKERS_ENV, "3")
    assert load_config(data_dir).mesh_workers == 3
    for bad in ("-1", "two", "65"):
        monkeypatch.setenv(MESH_WORKERS_ENV, bad)
        with pytest.raises(DaemonError, match=f"{MESH_WORKERS_ENV}='{bad}': expected 0"):
            load_config(data_dir)


@pytest.mark.parametrize(("cpus", "loops"), [(1, 1), (2, 1), (3, 2), (4, 3), (9, 8), (64, 8)])
def test_the_default_leaves_the_node_a_cpu(cpus: int, loops: int) -> None:
    assert loops_for(cpus) == loops


@pytest.fixture
def migrate_knob() -> Iterator[Path]:
    """The host's tcp_migrate_req, off for the test (and as it was after it)."""
    try:
        MIGRATE_REQUESTS.write_text("0\n")
    except OSError as exc:
        pytest.skip(f"cannot set {MIGRATE_REQUESTS}: {exc.strerror}")
    return MIGRATE_REQUESTS


async def test_connections_a_dying_worker_had_not_accepted_are_served_by_another_loop(
    migrate_knob: Path, tcp_backends: list[TcpBackend]
) -> None:
    m = MeshWorkers(MeshProxy("n1", bind_host="127.0.0.1"), extra=1)
    await m.start()
    try:
        assert migrate_knob.read_text().strip() == "1"  # several loops turn it on
        assert await m.wait_workers(30) == 1
        port = free_port()
        await m.apply(tcp_snapshot(port, tcp_backends))
        pid = m.workers[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # it accepts nothing: its share waits in its queue
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CONNS)]
        for _, w in conns:
            w.write(b"name\n")
        await wait_for(lambda: sum(b.accepts for b in tcp_backends) > 0)
        assert sum(b.accepts for b in tcp_backends) < CONNS  # the rest wait on the worker
        os.kill(pid, signal.SIGKILL)
        names = [(await asyncio.wait_for(r.readline(), 5)).strip() for r, _ in conns]
        assert all(n in (b"b0", b"b1") for n in names), names
        for _, w in conns:
            w.close()
    finally:
        await m.stop(grace=0.5)


def test_migrate_requests_says_what_it_did(tmp_path: Path) -> None:
    knob = tmp_path / "tcp_migrate_req"
    knob.write_text("0\n")
    assert migrate_requests(knob) == "turned on" and knob.read_text() == "1\n"
    assert migrate_requests(knob) == "already on"
    assert migrate_requests(tmp_path / "absent").startswith("not available")


async def test_a_listener_no_loop_could_open_is_counted_for_the_workers_too(
    workers: MeshWorkers, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    taken = socket.socket()  # no SO_REUSEPORT: no loop can join it
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        decision = await workers.apply(snapshot(route("web", published=port, backends=())))
        assert "errors=1 " in decision and decision.endswith("loops=2/2 worker_errors=1")
        assert f"mesh applied {decision}" in caplog.text  # the agent does not log it
    finally:
        taken.close()
    decision = await workers.apply(snapshot(route("web", published=port, backends=()), revision=2))
    assert "errors=0 " in decision and decision.endswith("loops=2/2")  # retried, opened
