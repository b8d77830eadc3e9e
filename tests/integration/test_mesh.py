"""The routing mesh on one real node: balance, failover, health, HTTP mode, streaming, scale."""

from __future__ import annotations

import contextlib
import http.client
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlite.proxy.table import FAIL_TIMEOUT
from tests.integration.harness import TIMEOUT_FACTOR, SwarmNode, wait_until

pytestmark = pytest.mark.integration

TCP_PORT = 18201
HTTP_PORT = 18202

PROBE = "echo -e 'GET /health HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc 127.0.0.1 8080 | grep -q 200"
HEALTHCHECK = f"""
    healthcheck:
      test: ["CMD-SHELL", "{PROBE}"]
      interval: 1s
      timeout: 2s
      retries: 2
"""

STACK = f"""
services:
  web:
    image: swarmlite/demo-web:1
    ports:
      - "{TCP_PORT}:8080"
{HEALTHCHECK}
    deploy:
      replicas: 3
      restart_policy:
        condition: any
        delay: 0s
  hweb:
    image: swarmlite/demo-web:1
    ports:
      - target: 8080
        published: {HTTP_PORT}
        app_protocol: http
{HEALTHCHECK}
    deploy:
      replicas: 3
      restart_policy:
        condition: any
        delay: 0s
"""

# A CGI that echoes the forwarding header; busybox httpd passes request headers as HTTP_*.
HEADERS_CGI = (
    "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$HTTP_X_FORWARDED_FOR\"\n"
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("mesh") / "data", pool="10.222.0.0/16")
    try:
        n.init()
        compose = tmp_path_factory.mktemp("mesh-compose") / "compose.yml"
        compose.write_text(STACK)
        out = n.deploy(compose, "mesh")
        assert out.returncode == 0, out.stderr
        n.wait_running("mesh_web", 3)
        n.wait_running("mesh_hweb", 3)
        yield n
    finally:
        n.destroy()


def get(port: int, path: str = "/", timeout: float = 2.0) -> str:
    """One GET over a new connection; the body, or an exception."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise AssertionError(f"GET {path} answered {resp.status}: {body!r}")
        return body
    finally:
        conn.close()


def hostname(body: str) -> str:
    return body.split()[-1]


def hostnames(port: int, count: int) -> Counter[str]:
    return Counter(hostname(get(port)) for _ in range(count))


def container_hosts(node: SwarmNode, service: str) -> dict[str, str]:
    """hostname (short container id) -> container id, for running containers."""
    return {cid[:12]: cid for cid in node.containers(service)}


def routed_hosts(node: SwarmNode, service: str) -> set[str]:
    return {t["status"]["container_id"][:12] for t in node.running(service)}


def test_requests_are_spread_round_robin(node: SwarmNode) -> None:
    wait_until(
        lambda: set(hostnames(TCP_PORT, 6)) == routed_hosts(node, "mesh_web"),
        timeout=10,
        what="routes of the 3 replicas",
    )
    seen = hostnames(TCP_PORT, 30)
    assert set(seen) == routed_hosts(node, "mesh_web")
    assert len(seen) == 3
    assert all(9 <= n <= 11 for n in seen.values()), seen


def test_http_mode_balances_each_request_of_one_connection(node: SwarmNode) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=2)
    seen: Counter[str] = Counter()
    sockets = []
    try:
        for _ in range(9):
            conn.request("GET", "/")
            sockets.append(conn.sock)
            resp = conn.getresponse()
            assert resp.status == 200
            assert not resp.will_close  # busybox httpd closes; the mesh keeps the client
            seen[hostname(resp.read().decode())] += 1
    finally:
        conn.close()
    assert all(s is sockets[0] for s in sockets), "the client had to reconnect"
    assert len(seen) == 3 and set(seen.values()) == {3}, seen

    for cid in node.containers("mesh_hweb"):
        subprocess.run(
            [
                "docker",
                "exec",
                "-i",
                cid,
                "sh",
                "-c",
                "cat > /www/cgi-bin/headers && chmod +x /www/cgi-bin/headers",
            ],
            input=HEADERS_CGI,
            text=True,
            check=True,
            capture_output=True,
        )
    assert get(HTTP_PORT, "/cgi-bin/headers").strip() == "127.0.0.1"


def test_large_body_streams_through_the_tcp_mesh(node: SwarmNode) -> None:
    size = 20 * 1024 * 1024
    for cid in node.containers("mesh_web"):
        subprocess.run(
            [
                "docker",
                "exec",
                cid,
                "dd",
                "if=/dev/urandom",
                "of=/www/big",
                "bs=1048576",
                "count=20",
            ],
            check=True,
            capture_output=True,
        )
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", TCP_PORT, timeout=10)
    try:
        conn.request("GET", "/big")
        resp = conn.getresponse()
        assert resp.status == 200
        got = 0
        while chunk := resp.read(256 * 1024):
            got += len(chunk)
    finally:
        conn.close()
    assert got == size
    assert time.monotonic() - started < 10 * TIMEOUT_FACTOR


def test_killed_replica_loses_no_requests(node: SwarmNode) -> None:
    before = container_hosts(node, "mesh_web")
    victim = sorted(before.values())[0]
    failures: list[str] = []
    answered: list[tuple[float, str]] = []
    stop = threading.Event()

    def client() -> None:
        start = time.monotonic()
        for i in range(240):  # 20/s for 12 s, each on a new connection
            if stop.is_set():
                return
            due = start + i / 20
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                answered.append((time.monotonic(), hostname(get(TCP_PORT, timeout=2.0))))
            except Exception as exc:
                failures.append(f"{time.monotonic() - start:.2f}s: {exc!r}")

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(2.0)
    killed_at = time.monotonic()
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    thread.join(timeout=30)
    stop.set()
    assert not thread.is_alive()
    assert failures == [], failures
    assert len(answered) == 240
    running = node.wait_running("mesh_web", 3, timeout=20)
    new = {t["status"]["container_id"][:12] for t in running} - set(before)
    assert len(new) == 1, running
    assert victim[:12] not in {h for t, h in answered if t > killed_at + 2.0}
    wait_until(lambda: new <= set(hostnames(TCP_PORT, 6)), timeout=5, what="the replacement serves")


def test_unhealthy_replica_leaves_rotation_and_is_replaced(node: SwarmNode) -> None:
    node.wait_running("mesh_web", 3, timeout=20)
    before = node.running("mesh_web")
    victim = sorted(before, key=lambda t: t["id"])[0]
    host = victim["status"]["container_id"][:12]
    subprocess.run(
        ["docker", "exec", victim["status"]["container_id"], "rm", "/www/health"],
        check=True,
        capture_output=True,
    )
    broke = time.monotonic()
    # interval 1s x retries 2: unhealthy after ~2-3 s, then out of the routes at once.
    wait_until(
        lambda: host not in hostnames(TCP_PORT, 6),
        timeout=10,
        interval=0.2,
        what="unhealthy replica out of rotation",
    )
    left_after = time.monotonic() - broke
    assert left_after < 6 * TIMEOUT_FACTOR, left_after
    assert host not in hostnames(TCP_PORT, 12)
    wait_until(
        lambda: any(
            t["id"] == victim["id"] and "unhealthy" in t["status"]["err"]
            for t in node.tasks("mesh_web")
        ),
        timeout=10,
        what="task failed as unhealthy",
    )
    ps = node.cli("service", "ps", "mesh_web").stdout
    assert "unhealthy" in ps
    running = node.wait_running("mesh_web", 3, timeout=20)
    slots = {t["slot"] for t in running}
    assert victim["slot"] in slots and victim["id"] not in {t["id"] for t in running}


def test_routes_follow_a_scale_up_within_a_second(node: SwarmNode) -> None:
    before = {t["id"] for t in node.wait_running("mesh_web", 3, timeout=20)}
    first_seen: dict[str, float] = {}
    stop = threading.Event()

    def client() -> None:
        for _ in range(600):  # at most 30 s at 20/s
            if stop.is_set():
                return
            with contextlib.suppress(Exception):
                first_seen.setdefault(hostname(get(TCP_PORT, timeout=1.0)), time.time())
            time.sleep(0.05)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        assert node.cli("service", "scale", "mesh_web=4").returncode == 0
        running = node.wait_running("mesh_web", 4, timeout=20)
        (task,) = [t for t in running if t["id"] not in before]
        host = task["status"]["container_id"][:12]
        wait_until(lambda: host in first_seen, timeout=5, interval=0.05, what="new replica answers")
    finally:
        stop.set()
        thread.join(timeout=5)
    lag = first_seen[host] - float(task["status"]["timestamp"])
    assert lag < 1.5 * TIMEOUT_FACTOR, f"routed {lag:.2f}s after the task was running"


SLOW_PORT = 18203
# Listens 0.5 s after its container starts: no healthcheck, so it is routed meanwhile.
SLOW_STACK = f"""
services:
  slow:
    image: swarmlite/demo-web:1
    entrypoint: ["/bin/sh", "-c", "sleep 0.5; exec /usr/local/bin/demo-web"]
    ports:
      - "{SLOW_PORT}:8080"
    deploy:
      replicas: 2
      restart_policy:
        condition: any
        delay: 0s
"""


def test_a_replacement_that_listens_late_joins_the_rotation_soon(
    node: SwarmNode, tmp_path: Path
) -> None:
    """Refused while it starts, a replica is skipped only briefly, not for 5 s."""
    compose = tmp_path / "slow.yml"
    compose.write_text(SLOW_STACK)
    assert node.deploy(compose, "slowst").returncode == 0
    try:
        node.wait_running("slowst_slow", 2)
        wait_until(lambda: len(set(hostnames(SLOW_PORT, 6))) == 2, timeout=15, what="2 answer")
        # Both were refused while they started: once that is forgotten the survivor is
        # the only healthy target, and the replacement's refusals decide its fate.
        time.sleep(FAIL_TIMEOUT + 0.5)
        before = container_hosts(node, "slowst_slow")
        subprocess.run(["docker", "kill", sorted(before.values())[0]], check=True)
        seen_at: dict[str, float] = {}
        deadline = time.time() + 20 * TIMEOUT_FACTOR
        while time.time() < deadline and not (set(seen_at) - set(before)):
            with contextlib.suppress(Exception):  # probes back to back, new connections
                seen_at.setdefault(hostname(get(SLOW_PORT, timeout=1.0)), time.time())
        running = node.wait_running("slowst_slow", 2)
        (new,) = [t for t in running if t["status"]["container_id"][:12] not in before]
        host = new["status"]["container_id"][:12]
        assert host in seen_at, f"the replacement never answered: {seen_at}"
        lag = seen_at[host] - float(new["status"]["timestamp"])
        # It listens 0.5 s after running; a refused connect skips it 0.5 s (was 5 s).
        assert lag < 2.5 * TIMEOUT_FACTOR, f"answered {lag:.2f}s after running"
    finally:
        node.cli("stack", "rm", "slowst")
