"""One node container in node networking mode: the mesh, names, and a network cut.

The harness's first test: a real node with its own address on a private network,
a replica sharing that address, and ``docker network disconnect`` as the fault.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.harness import REPO, Cluster, Node, http_get, reachable, wait_until

pytestmark = pytest.mark.cluster

STACK = "demo"
SERVICE = f"{STACK}_web"
PUBLISHED = 18080
COMPOSE = REPO / "tests" / "cluster" / "stacks" / "web.yml"


@pytest.fixture
def one_node() -> Iterator[tuple[Cluster, Node]]:
    with Cluster() as cluster:
        node = cluster.add_node()
        cluster.init(node)
        yield cluster, node


def test_one_node_container_serves_resolves_and_is_cut_off(
    one_node: tuple[Cluster, Node],
) -> None:
    cluster, node = one_node
    cluster.exec(node, "deploy", "-f", str(COMPOSE), "--stack", STACK, check=True)
    (task,) = cluster.wait_running(node, SERVICE, 1)
    container = task["status"]["container_id"]
    assert task["status"]["addresses"] == {f"{STACK}_default": node.ip}
    assert task["status"]["remote_ports"] == {"8080": f"{node.ip}:8080"}
    assert cluster.task_containers(node, running_only=True) == [container]

    # The mesh answers on the node's own address, from the host.
    body = wait_until(lambda: http_get(node.ip, PUBLISHED), timeout=20, what="mesh on node")
    assert body.startswith("hello from")

    # A workload resolves a service name through the node's name server (127.0.0.53,
    # its resolv.conf being the node's), and another name through Docker's DNS.
    lookup = cluster.workload_sh(container, "cat /etc/resolv.conf; nslookup web", check=True)
    assert "nameserver 127.0.0.53" in lookup.stdout
    assert f"Address: {node.ip}" in lookup.stdout.split("Name:", 1)[1]
    other = cluster.workload_sh(container, f"nslookup {node.name}", check=True)
    assert f"Address: {node.ip}" in other.stdout.split("Name:", 1)[1]

    # Cut the node off the network: its published port goes with it...
    cluster.disconnect(node)
    wait_until(lambda: not reachable(node.ip, PUBLISHED), timeout=10, what="port unreachable")
    # ...and comes back with the same address and the same container.
    cluster.connect(node)
    wait_until(lambda: reachable(node.ip, PUBLISHED), timeout=20, what="port reachable again")
    assert cluster.task_containers(node, running_only=True) == [container]
    (again,) = cluster.wait_running(node, SERVICE, 1)
    assert again["status"]["container_id"] == container


def test_killed_node_container_comes_back_with_its_task_replaced(
    one_node: tuple[Cluster, Node],
) -> None:
    cluster, node = one_node
    cluster.exec(node, "deploy", "-f", str(COMPOSE), "--stack", STACK, check=True)
    (task,) = cluster.wait_running(node, SERVICE, 1)
    wait_until(lambda: http_get(node.ip, PUBLISHED), timeout=20, what="mesh on node")

    cluster.kill(node)
    assert not reachable(node.ip, PUBLISHED)
    cluster.start(node)
    # The old task's container outlived the node in a namespace with no network left:
    # it is failed and replaced by one in the node's new namespace.
    (new,) = cluster.wait_running(node, SERVICE, 1)
    assert new["id"] != task["id"]
    assert new["status"]["container_id"] != task["status"]["container_id"]
    old = next(t for t in cluster.service_ps(node, SERVICE) if t["id"] == task["id"])
    assert "restarted" in old["status"]["err"]
    wait_until(lambda: http_get(node.ip, PUBLISHED), timeout=20, what="mesh after restart")
