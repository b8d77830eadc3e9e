"""Five hosts form one cluster with the printed join commands; bad joins are refused;
every node's mesh publishes the service and routes to replicas on other nodes.

One cluster (3 managers, 2 workers) serves the whole module.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator

import aiohttp
import pytest

from swarmlite.security.ca import ClusterCA
from swarmlite.security.tokens import JoinToken
from tests.cluster.harness import API_PORT, DATA_DIR, Cluster, Node, wait_until
from tests.cluster.support import (
    PUBLISHED,
    WEB_IMAGE,
    Formed,
    answering_hosts,
    assert_no_duplicates,
    compose_web,
    form_cluster,
    printed_join_commands,
    running_by_node,
    write_stack,
)

pytestmark = pytest.mark.cluster

STACK = "form"
SERVICE = f"{STACK}_web"


@pytest.fixture(scope="module")
def formed() -> Iterator[Formed]:
    with Cluster() as cluster:
        yield form_cluster(cluster, managers=3, workers=2)


def test_three_managers_and_two_workers_join_with_the_printed_commands(formed: Formed) -> None:
    cluster, first = formed.cluster, formed.managers[0]
    nodes = {n["id"]: n for n in cluster.node_ls(first)}
    assert set(nodes) == {n.node_id for n in formed.nodes}
    for node in formed.managers:
        assert nodes[node.node_id]["role"] == "manager", nodes[node.node_id]
        assert nodes[node.node_id]["addr"] == node.ip
    for node in formed.workers:
        assert nodes[node.node_id]["role"] == "worker", nodes[node.node_id]
        assert nodes[node.node_id]["addr"] == node.ip
    # Every manager answers for the whole cluster; exactly one of them leads.
    for manager in formed.managers[1:]:
        assert {n["id"] for n in cluster.node_ls(manager)} == set(nodes)
    # join-token prints the same command init printed.
    again = cluster.exec(first, "join-token", "worker", check=True).stdout
    assert printed_join_commands(again) == [formed.printed["worker"]]


def _node_ids(formed: Formed) -> set[str]:
    return {n["id"] for n in formed.cluster.node_ls(formed.managers[0])}


def test_joins_with_a_wrong_rotated_or_foreign_token_are_refused(formed: Formed) -> None:
    cluster, first = formed.cluster, formed.managers[0]
    before = _node_ids(formed)
    stranger = cluster.add_node()
    manager = f"{first.ip}:{API_PORT}"
    good = cluster.exec(first, "join-token", "worker", "-q", check=True).stdout.strip()
    parsed = JoinToken.parse(good)
    wrong = str(JoinToken.generate(parsed.ca_fingerprint, "worker"))
    foreign = str(JoinToken.generate(ClusterCA.create("elsewhere").fingerprint(), "worker"))
    rotated = cluster.exec(first, "join-token", "worker", "--rotate", "-q", check=True)
    new_token = rotated.stdout.strip().splitlines()[-1]
    assert new_token != good

    for label, token in (("wrong", wrong), ("rotated-away", good), ("foreign CA", foreign)):
        result = cluster.exec(
            stranger, "join", "--token", token, "--advertise-addr", stranger.ip, manager,
            timeout=60,
        )  # fmt: skip
        assert result.returncode != 0, f"{label} token joined: {result.stdout}"
        print(f"join with a {label} token refused: {result.stderr.strip()}")
        assert "Traceback" not in result.stderr, result.stderr
        # Nothing written on the stranger, nothing registered in the cluster.
        assert cluster.sh(stranger, f"test -e {DATA_DIR}/node.json").returncode != 0, label
        assert _node_ids(formed) == before, f"{label} token registered a node"
    # The foreign token is refused before its secret is sent: the CA does not match.
    assert "fingerprint" in result.stderr.lower() or "ca" in result.stderr.lower(), result.stderr


def test_a_certificate_from_another_ca_is_refused(formed: Formed) -> None:
    cluster, first = formed.cluster, formed.managers[0]
    before = _node_ids(formed)
    cluster_ca = cluster.sh(first, f"cat {DATA_DIR}/certs/ca.crt", check=True).stdout
    other = ClusterCA.create("elsewhere")
    cert, key = other.issue("intruder0000000000000000000", "worker")
    answers = asyncio.run(_try_with_foreign_cert(first.ip, cluster_ca, cert, key))
    for path, answer in answers.items():
        assert not answer.startswith("200"), f"{path} accepted a foreign certificate: {answer}"
    assert _node_ids(formed) == before


async def _try_with_foreign_cert(ip: str, ca_pem: str, cert: str, key: str) -> dict[str, str]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "c.pem").write_text(cert)
        Path(tmp, "k.pem").write_text(key)
        context = ssl.create_default_context(cadata=ca_pem)
        context.check_hostname = False
        context.load_cert_chain(Path(tmp, "c.pem"), Path(tmp, "k.pem"))
    answers: dict[str, str] = {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for path in ("/v1/nodes", "/v1/agent/session"):
            url = f"https://{ip}:{API_PORT}{path}"
            try:
                if path.endswith("session"):
                    async with http.ws_connect(url, ssl=context) as ws:
                        await ws.send_str('{"type":"hello"}')
                        msg = await ws.receive(timeout=5)
                        answers[path] = f"200 {msg.type}"
                else:
                    async with http.get(url, ssl=context) as resp:
                        answers[path] = f"{resp.status} {await resp.text()}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                answers[path] = f"refused: {exc!r}"
    return answers


def test_every_node_routes_to_replicas_on_other_nodes(formed: Formed) -> None:
    cluster, first = formed.cluster, formed.managers[0]
    compose = compose_web(cluster, "formation-web", replicas=2)
    cluster.exec(first, "deploy", "-f", compose, "--stack", STACK, check=True)
    tasks = cluster.wait_running(first, SERVICE, 2, timeout=90)
    holders = {t["node_id"] for t in tasks}
    assert len(holders) == 2, tasks
    by_node = running_by_node(cluster, first, SERVICE)
    assert sum(len(v) for v in by_node.values()) == 2
    assert_no_duplicates(cluster, first, SERVICE)

    # Every node publishes the port, also the three that run no replica.
    ips = [n.ip for n in formed.nodes]
    wait_until(
        lambda: all("error" not in k for k in answering_hosts(ips, tries=2)),
        timeout=30, what="every node's mesh answering",
    )  # fmt: skip
    seen = answering_hosts(ips, tries=12)
    assert not [k for k in seen if k.startswith("error")], seen
    # Both replicas answer, also through a node holding neither of them.
    assert len(seen) == 2, seen
    empty = [n for n in formed.nodes if n.node_id not in holders]
    for node in empty:
        assert len(answering_hosts([node.ip], tries=12)) == 2, node
    print(f"mesh answers over {len(ips)} nodes on port {PUBLISHED}: {dict(seen)}")


def test_service_logs_gather_every_nodes_replicas(formed: Formed) -> None:
    cluster, first = formed.cluster, formed.managers[0]
    stack = write_stack(
        cluster,
        "formation-talker",
        f"""services:
  talker:
    image: {WEB_IMAGE}
    entrypoint: ["/bin/sh", "-c", "echo talker says hi; exec sleep 600"]
    deploy:
      mode: global
""",
    )
    cluster.exec(first, "deploy", "-f", stack, "--stack", STACK, check=True)
    service = f"{STACK}_talker"
    cluster.wait_running(first, service, len(formed.nodes), timeout=90)
    expected = {f"{service}.{n.node_id[:12]} | talker says hi" for n in formed.nodes}

    def lines(via: Node) -> set[str]:
        out = cluster.exec(via, "service", "logs", service, check=True).stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    # A replica's first line may take a moment after it runs.
    wait_until(lambda: lines(first) >= expected, timeout=30, what="every node's line")
    # Any manager answers with every node's lines, workers' and other managers'.
    assert lines(formed.managers[1]) == expected
    # A worker's identity may not read another node's logs: only managers may.
    worker, other = formed.workers
    certs = {
        name: cluster.sh(worker, f"cat {DATA_DIR}/certs/{name}", check=True).stdout
        for name in ("ca.crt", "node.crt", "node.key")
    }
    answers = asyncio.run(_get_with_cert(other.ip, certs, f"/v1/node/services/{service}/logs"))
    assert answers.startswith("403"), answers
    cluster.exec(first, "service", "rm", service, check=True)


async def _get_with_cert(ip: str, certs: dict[str, str], path: str) -> str:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "c.pem").write_text(certs["node.crt"])
        Path(tmp, "k.pem").write_text(certs["node.key"])
        context = ssl.create_default_context(cadata=certs["ca.crt"])
        context.check_hostname = False
        context.load_cert_chain(Path(tmp, "c.pem"), Path(tmp, "k.pem"))
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"https://{ip}:{API_PORT}{path}", ssl=context) as resp,
    ):
        return f"{resp.status} {await resp.text()}"
