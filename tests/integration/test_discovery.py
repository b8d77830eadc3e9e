"""Service discovery on one real node: names, VIPs, balancing, scoping by network."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import TIMEOUT_FACTOR, SwarmNode, wait_until

pytestmark = pytest.mark.integration

STACK = "disc"
FRONT_PORT = 18211

COMPOSE = f"""
services:
  frontend:
    image: swarmlite/demo-web:1
    environment:
      MESSAGE: frontend
      UPSTREAM: api:8000
    ports:
      - "{FRONT_PORT}:8080"
    networks: [front]
  api:
    image: swarmlite/demo-web:1
    environment:
      MESSAGE: api
      PORT: "8000"
      UPSTREAM: store:6379
    expose: ["8000"]
    networks: [front, back]
    deploy:
      replicas: 2
  store:
    image: swarmlite/demo-web:1
    environment:
      MESSAGE: store
      PORT: "6379"
    expose: ["6379"]
    networks: [back]
    deploy:
      replicas: 2
networks:
  front: {{}}
  back: {{}}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("disc") / "data", pool="10.223.0.0/16")
    try:
        n.init()
        compose = tmp_path_factory.mktemp("disc-compose") / "compose.yml"
        compose.write_text(COMPOSE)
        out = n.deploy(compose, STACK)
        assert out.returncode == 0, out.stderr
        for service, count in (("frontend", 1), ("api", 2), ("store", 2)):
            n.wait_running(f"{STACK}_{service}", count)
        yield n
    finally:
        n.destroy()


def sh(container: str, script: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", container, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout * TIMEOUT_FACTOR,
    )


def one(node: SwarmNode, service: str) -> str:
    return node.containers(f"{STACK}_{service}")[0]


def resolve(container: str, name: str) -> tuple[list[str], str]:
    """The A records busybox nslookup prints for ``name``, and its whole output."""
    out = sh(container, f"nslookup -type=a {name}", timeout=10)
    text = out.stdout + out.stderr
    answer = text.split("Name:", 1)[1] if "Name:" in text else ""  # past the server's address
    addrs = re.findall(r"Address(?: \d+)?:\s*(\d+\.\d+\.\d+\.\d+)", answer)
    return addrs, text


def service(node: SwarmNode, name: str) -> dict[str, Any]:
    data = node.json("service", "inspect", f"{STACK}_{name}")
    return data[0] if isinstance(data, list) else data


def task_addresses(node: SwarmNode, name: str) -> set[str]:
    return {a for t in node.running(f"{STACK}_{name}") for a in t["status"]["addresses"].values()}


def test_service_name_resolves_to_its_vip(node: SwarmNode) -> None:
    frontend = one(node, "frontend")
    vip = service(node, "api")["endpoints"][f"{STACK}_front"]
    addrs, text = wait_until(
        lambda: (r := resolve(frontend, "api"))[0] and r, timeout=10, what="api resolves"
    )
    assert addrs == [vip], text
    assert vip not in task_addresses(node, "api")
    long_addrs, text = resolve(frontend, f"api.{STACK}")
    assert long_addrs == [vip], text


def test_requests_by_name_are_balanced_across_replicas(node: SwarmNode) -> None:
    frontend = one(node, "frontend")
    loop = "for i in 1 2 3 4 5 6 7 8; do fetch http://api:8000/ || echo FAILED; done"
    out = sh(frontend, loop, timeout=30)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 8 and not any("FAILED" in ln for ln in lines), out.stdout + out.stderr
    # "api <api host> -> store <store host>": the api reaches store:6379, declared by expose.
    api_hosts = Counter(line.split()[1] for line in lines)
    api_containers = {c[:12] for c in node.containers(f"{STACK}_api")}
    assert set(api_hosts) == api_containers and set(api_hosts.values()) == {4}, lines
    store_containers = {c[:12] for c in node.containers(f"{STACK}_store")}
    assert all(line.split("->")[1].split()[:1] == ["store"] for line in lines), lines
    assert {line.split()[-1] for line in lines} == store_containers, lines


def test_names_are_scoped_by_network(node: SwarmNode) -> None:
    frontend, api = one(node, "frontend"), one(node, "api")
    addrs, text = resolve(api, "store")
    assert addrs == [service(node, "store")["endpoints"][f"{STACK}_back"]], text
    addrs, text = resolve(frontend, "store")
    assert addrs == [], text
    assert "NXDOMAIN" in text or "can't find" in text, text
    # ...and the frontend reaches the store by no name: the chain from outside still works.
    body = wait_until(
        lambda: sh(frontend, "fetch http://127.0.0.1:8080/").stdout, timeout=10, what="chain"
    )
    assert body.startswith("frontend ") and " -> api " in body and " -> store " in body, body


def test_unknown_names_fail_fast(node: SwarmNode) -> None:
    """A non-cluster name is forwarded to the host's resolvers; offline, that is NXDOMAIN."""
    frontend = one(node, "frontend")
    for name in ("no-such-service", "no-such-host.invalid"):
        started = time.monotonic()
        addrs, text = resolve(frontend, name)
        took = time.monotonic() - started
        assert addrs == [], text
        assert "NXDOMAIN" in text, text
        assert took < 5 * TIMEOUT_FACTOR, f"{name}: {took:.1f}s: {text}"
