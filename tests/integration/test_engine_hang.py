"""A Docker engine that stops answering some calls: the node says so and takes no new task.

The node's agent reaches the real engine through a relay socket this test owns; the
relay passes bytes both ways and, on demand, holds every request to a path unanswered,
which is how a deadlocked engine looks from the client (moby/moby#46661 hung
``inspect`` and ``stop`` of some containers while ``docker ps`` still answered).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import SwarmNode, wait_until

pytestmark = pytest.mark.integration

POOL = "10.232.0.0/16"
ENGINE = "/var/run/docker.sock"

WEB = """
services:
  web:
    image: swarmlite/busybox:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
"""

LATER = """
services:
  later:
    image: swarmlite/busybox:1
    command: ["sleep", "3600"]
    stop_grace_period: 1s
"""


class EngineRelay:
    """A Unix socket in front of the engine; ``hold(pattern)`` keeps every request
    whose bytes match unsent (its connection stalls) until ``release()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pattern: re.Pattern[bytes] | None = None
        self._released = threading.Event()
        self._released.set()
        self.held = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self, pattern: bytes) -> None:
        self._pattern = re.compile(pattern)
        self._released.clear()

    def release(self) -> None:
        self._pattern = None
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(ENGINE)
            threading.Thread(target=self._requests, args=(client, engine), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client), daemon=True).start()

    def _requests(self, client: socket.socket, engine: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                pattern = self._pattern
                if pattern is not None and pattern.search(data):
                    self.held += 1
                    self._released.wait()
                engine.sendall(data)
        except OSError:
            return
        finally:
            shut(engine)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            return
        finally:
            shut(dst)


def shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineRelay]:
    r = EngineRelay(tmp_path_factory.mktemp("relay") / "docker.sock")
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def node(
    tmp_path_factory: pytest.TempPathFactory, relay: EngineRelay, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SwarmNode]:
    # The daemon inherits these: its engine is the relay, and a call counts as hanging
    # after 2 s instead of 30 s.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{relay.path}")
    monkeypatch.setenv("SWARMLITE_ENGINE_STUCK_AFTER", "2")
    n = SwarmNode(tmp_path_factory.mktemp("engine-hang") / "data", pool=POOL)
    try:
        n.init()
        yield n
    finally:
        relay.release()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{ENGINE}")
        n.destroy()


def node_row(node: SwarmNode) -> dict[str, str]:
    rows = node.json("node", "ls")
    assert len(rows) == 1
    return rows[0]  # type: ignore[no-any-return]


def test_a_hanging_engine_is_reported_and_gets_no_new_task(
    node: SwarmNode, relay: EngineRelay, tmp_path: Path
) -> None:
    web = tmp_path / "web.yml"
    web.write_text(WEB)
    node.deploy(web, "hang", wait=True)
    node.wait_running("hang_web", 1)
    assert node_row(node)["status"]["engine"] == ""

    # Container creates now hang in the "engine"; scaling up starts one.
    relay.hold(rb"^POST /v[0-9.]+/containers/create")
    assert node.cli("service", "scale", "hang_web=2").returncode == 0
    wait_until(lambda: relay.held >= 1, timeout=20, what="a create held by the relay")
    problem = wait_until(
        lambda: node_row(node)["status"]["engine"], timeout=20, what="engine reported"
    )
    assert problem.startswith("docker engine unresponsive: create container hang_web.2.")
    assert "still waiting after 2s" in problem
    assert "Ready (engine unresponsive)" in node.cli("node", "ls").stdout
    assert "Engine:" in node.cli("node", "inspect", "--pretty", "self").stdout

    # A new service's task is not placed on the node, and says why.
    later = tmp_path / "later.yml"
    later.write_text(LATER)
    assert node.deploy(later, "later").returncode == 0
    reason = wait_until(
        lambda: next(
            (t.get("pending_reason") for t in node.tasks("later_later") if t.get("pending_reason")),
            None,
        ),
        timeout=20,
        what="the pending reason",
    )
    assert reason == "no suitable node: 1 node with an unresponsive docker engine"
    assert not node.running("later_later")

    # The engine answers again: the node clears, and both services run.
    relay.release()
    wait_until(lambda: node_row(node)["status"]["engine"] == "", timeout=20, what="cleared")
    node.wait_running("hang_web", 2)
    node.wait_running("later_later", 1)
