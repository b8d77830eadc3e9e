"""Draining a worker (``node update --availability drain``) fails no request.

One cluster (1 manager, 3 workers); ``web`` (demo-web, nc healthcheck every 1 s) runs
3 replicas, one per node, so the drained worker's replica has a free node to move to.
A client sends 100 requests/s, each a new HTTP/1.0 connection, to the published port
on the manager (never drained) for the whole drain plus 2 s; the manager's mesh routes
them to replicas on every node. The drained replica leaves the routes, its node waits
the drain delay and for in-flight requests, then stops it: no request may fail.

Every 8th request is a CGI that takes 0.5 s (as in ``tests/integration/
test_zero_downtime.py``), so the drained replica has requests in flight when it is
told to stop: a refused connect the mesh retries on another replica, but a stop
signal sent before those requests finished would fail them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from tests.cluster.harness import Cluster, Node, wait_until
from tests.cluster.support import (
    PUBLISHED,
    Formed,
    all_ready,
    assert_no_duplicates,
    form_cluster,
    log_tails,
    running_by_node,
    web_service_yaml,
    write_stack,
)
from tests.integration.test_zero_downtime import SLOW_CGI, SLOW_EVERY

pytestmark = pytest.mark.cluster

STACK = "dr"
WEB = f"{STACK}_web"
REPLICAS = 3
RATE = 100  # requests/s
AFTER = 2.0  # s of load after the drain completed


class Load:
    """``RATE`` new-connection HTTP/1.0 GETs/s to ``addr:port`` until stopped.

    A compact form of ``tests/integration/test_zero_downtime.Load`` aimed at a node's
    address: requests go out on schedule from a pool of 16 threads, so a slow answer
    does not slow the rate; answers and failures (with their time) are recorded.
    """

    def __init__(self, addr: str, port: int) -> None:
        self.addr, self.port = addr, port
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._schedule, daemon=True)
        self._t0 = 0.0

    @property
    def sent(self) -> int:
        return len(self.answers) + len(self.failures)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _schedule(self) -> None:
        with ThreadPoolExecutor(max_workers=16) as pool:
            i = 0
            while not self._stop.is_set():
                time.sleep(max(0.0, self._t0 + i / RATE - time.monotonic()))
                pool.submit(self._record, "/cgi-bin/slow" if i % SLOW_EVERY == 0 else "/")
                i += 1

    def _record(self, path: str) -> None:
        try:
            self.answers.append((time.monotonic(), self._get(path)))
        except Exception as exc:
            at = time.strftime("%H:%M:%S") + f"{time.time() % 1:.3f}"[1:]
            self.failures.append(f"{at} (+{time.monotonic() - self._t0:.2f}s) {path}: {exc!r}")

    def _get(self, path: str) -> str:
        with socket.create_connection((self.addr, self.port), timeout=2.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {self.addr}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.") or head.split(b" ", 2)[1:2] != [b"200"]:
            raise AssertionError(f"answer {data[:80]!r}")
        return body.decode(errors="replace").strip()


def _stack() -> str:
    """``web`` of ``support.web_service_yaml`` serving the slow CGI too."""
    image, rest = web_service_yaml(replicas=REPLICAS).split("\n", 1)
    return f"services:\n{image}\n    entrypoint: {json.dumps(['/bin/sh', '-c', SLOW_CGI])}\n{rest}"


@pytest.fixture(scope="module")
def formed() -> Iterator[Formed]:
    with Cluster() as cluster:
        formed = form_cluster(cluster, managers=1, workers=3)
        manager = formed.managers[0]
        compose = write_stack(cluster, "drain", _stack())
        cluster.exec(manager, "deploy", "-f", compose, "--stack", STACK, check=True)
        cluster.wait_running(manager, WEB, REPLICAS, timeout=90)
        yield formed


def _availability(cluster: Cluster, via: Node, node: Node) -> str:
    return next(str(n["availability"]) for n in cluster.node_ls(via) if n["id"] == node.node_id)


def _one_per_node(cluster: Cluster, via: Node) -> dict[str, list[str]] | None:
    """node id -> its running ``web`` containers, once exactly one runs on each of 3 nodes."""
    running = running_by_node(cluster, via, WEB)
    return running if sorted(map(len, running.values())) == [1] * REPLICAS else None


def test_draining_a_worker_fails_no_request(formed: Formed) -> None:
    cluster, manager = formed.cluster, formed.managers[0]
    wait_until(lambda: all_ready(cluster, manager, len(formed.nodes)), timeout=60,
               what="all nodes ready")  # fmt: skip
    by_node = wait_until(
        partial(_one_per_node, cluster, manager), timeout=60,
        what=f"{REPLICAS} replicas on {REPLICAS} distinct nodes",
    )  # fmt: skip
    victim = next(w for w in formed.workers if w.node_id in by_node)
    assert victim is not manager

    def drained() -> bool:
        running = _one_per_node(cluster, manager) or {victim.node_id: []}
        return victim.node_id not in running and not cluster.task_containers(victim)

    load = Load(manager.ip, PUBLISHED)
    load.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        cluster.exec(manager, "node", "update", "--availability", "drain", victim.node_id,
                     check=True)  # fmt: skip
        try:
            wait_until(drained, timeout=60, interval=0.2, what=f"{victim.hostname} drained")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log_tails(cluster, [manager, victim])}") from None
        done_at = time.monotonic()
        took = done_at - started
        time.sleep(AFTER)
    finally:
        load.stop()
    try:
        print(f"drain {victim.hostname}: {len(load.failures)}/{load.sent} failed; op {took:.1f}s")
        assert load.sent >= 0.8 * RATE * (took + AFTER), (load.sent, took)
        assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:20]}"
        assert _availability(cluster, manager, victim) == "drain"
        assert_no_duplicates(cluster, manager, WEB)
        late = {body.removeprefix("hello from ").strip() for at, body in load.answers
                if at > done_at + 0.5}  # fmt: skip
        assert late and victim.hostname not in late, late
    finally:
        cluster.exec(manager, "node", "update", "--availability", "active", victim.node_id,
                     check=True)  # fmt: skip
    assert _availability(cluster, manager, victim) == "active"
