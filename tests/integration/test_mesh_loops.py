"""A real node whose mesh runs two event loops: the daemon's and a worker process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import SwarmNode, wait_until
from tests.integration.test_mesh import get, hostname

pytestmark = pytest.mark.integration

PORT = 18231
CONNS = 40  # new connections: all on one of two listeners has odds 2 * 2**-40

STACK = f"""
services:
  web:
    image: swarmlite/demo-web:1
    ports:
      - "{PORT}:8080"
    deploy:
      replicas: 2
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("loops") / "data", pool="10.233.0.0/16")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("SWARMLITE_MESH_WORKERS", raising=False)  # node.json's count decides
        knob = Path("/proc/sys/net/ipv4/tcp_migrate_req")  # several loops turn it on
        old = knob.read_text() if knob.exists() else None
        try:
            n.init(mesh_workers=2)  # what `swarmlite init --mesh-workers 2` writes
            compose = tmp_path_factory.mktemp("loops-compose") / "compose.yml"
            compose.write_text(STACK)
            out = n.deploy(compose, "loops")
            assert out.returncode == 0, out.stderr
            n.wait_running("loops_web", 2)
            yield n
        finally:
            n.destroy()
            if old is not None:
                with contextlib.suppress(OSError):
                    knob.write_text(old)


def listeners(port: int) -> set[int]:
    """Pids listening on ``port``, from ``ss -tlnpH``."""
    out = subprocess.run(
        ["ss", "-tlnpH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    return {int(p.split("=")[1]) for p in out.replace(",", " ").split() if p.startswith("pid=")}


def worker_pids(node: SwarmNode) -> set[int]:
    out = subprocess.run(
        ["pgrep", "-f", f"swarmlite.proxy.worker {node.node_id}"], capture_output=True, text=True
    ).stdout
    return {int(p) for p in out.split()}


def test_two_processes_serve_every_published_port(node: SwarmNode) -> None:
    assert node.proc is not None
    wait_until(lambda: len(listeners(PORT)) == 2, timeout=20, what="both loops listening")
    (worker,) = worker_pids(node)
    assert listeners(PORT) == {node.proc.pid, worker}
    seen = {hostname(get(PORT)) for _ in range(CONNS)}
    replicas = {t["status"]["container_id"][:12] for t in node.running("loops_web")}
    assert seen == replicas


def test_a_killed_worker_is_replaced_and_serves_again(node: SwarmNode) -> None:
    assert node.proc is not None
    (first,) = worker_pids(node)
    os.kill(first, signal.SIGKILL)
    # The daemon's loop answers alone meanwhile: the kernel gives only open listeners work.
    wait_until(lambda: listeners(PORT) == {node.proc.pid}, timeout=10, what="worker gone")
    assert hostname(get(PORT))
    wait_until(lambda: len(listeners(PORT)) == 2, timeout=20, what="worker back")
    (second,) = worker_pids(node)
    assert second != first
    log = (node.data_dir / "daemon.log").read_text()
    assert f"mesh worker 1 (pid {first}) exited" in log
    assert all(hostname(get(PORT)) for _ in range(CONNS))


def test_stopping_the_daemon_stops_its_workers(node: SwarmNode) -> None:
    assert worker_pids(node)
    node.stop()
    assert not worker_pids(node)
    assert not listeners(PORT)
