"""Helpers shared by the multi-node scenarios (formation, failover, worker faults).

Builds on ``harness.py``: a cluster formed with the join commands ``init`` and
``join-token`` print, the daemon process killed and restarted inside a live node
container, and probes of the mesh on every node. Every loop here is bounded.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.cluster.harness import (
    API_PORT,
    DATA_DIR,
    REPO,
    Cluster,
    Node,
    docker,
    http_get,
    wait_until,
)

WEB_IMAGE = "swarmlite/demo-web:1"
PUBLISHED = 18080
RUNNING = 5  # TaskState.RUNNING
DAEMON_PATTERN = "[s]warmlite.cli.main daemon"  # the brackets: never match the sh running pgrep
JOIN_LINE = re.compile(r"^\s*(swarmlite join --token \S+ \S+)\s*$", re.MULTILINE)


@dataclass
class Formed:
    """A cluster of ``managers`` then ``workers``; ``printed`` holds the join commands used."""

    cluster: Cluster
    managers: list[Node]
    workers: list[Node]
    printed: dict[str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> list[Node]:
        return [*self.managers, *self.workers]


def printed_join_commands(text: str) -> list[str]:
    """The ``swarmlite join --token T HOST:PORT`` lines of an ``init``/``join-token`` output."""
    return JOIN_LINE.findall(text)


def run_printed_join(cluster: Cluster, node: Node, command: str) -> str:
    """Run a printed join command in ``node`` as printed (plus the node's own addresses)."""
    argv = shlex.split(command)
    assert argv[:2] == ["swarmlite", "join"], command
    out = cluster.exec(
        node, *argv[1:], "--advertise-addr", node.ip, "--listen-addr", f"0.0.0.0:{API_PORT}",
        check=True, timeout=120,
    ).stdout  # fmt: skip
    node.node_id = cluster._node_id(node)
    return out


def form_cluster(cluster: Cluster, managers: int = 3, workers: int = 2) -> Formed:
    """``init`` on the first node, then the printed join commands on the others."""
    first = cluster.add_node()
    out = cluster.init(first)
    commands = printed_join_commands(out)
    assert len(commands) == 2, f"init printed no join commands:\n{out}"
    worker_cmd, manager_cmd = commands
    formed = Formed(cluster, [first], [], {"worker": worker_cmd, "manager": manager_cmd})
    for _ in range(managers - 1):
        node = cluster.add_node()
        assert "as a manager" in run_printed_join(cluster, node, manager_cmd)
        formed.managers.append(node)
    for _ in range(workers):
        node = cluster.add_node()
        assert "as a worker" in run_printed_join(cluster, node, worker_cmd)
        formed.workers.append(node)
    wait_until(
        lambda: all_ready(cluster, first, len(formed.nodes)),
        timeout=60, what=f"{len(formed.nodes)} nodes ready",
    )  # fmt: skip
    return formed


def all_ready(cluster: Cluster, via: Node, count: int) -> bool:
    nodes = cluster.node_ls(via)
    return len(nodes) == count and all(n["status"]["state"] == "ready" for n in nodes)


def node_state(cluster: Cluster, via: Node, node: Node) -> str:
    for n in cluster.node_ls(via):
        if n["id"] == node.node_id:
            return str(n["status"]["state"])
    return ""


def write_stack(cluster: Cluster, name: str, text: str) -> str:
    """Write a compose file where the nodes see it (the repo, mounted; ``.cache`` is ignored)."""
    out = REPO / ".cache" / "cluster-stacks" / f"{cluster.run_id}-{name}.yml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return str(out)


# busybox's wget segfaults: the healthcheck speaks HTTP over nc (YAML "\\r" -> echo -e).
HEALTH_TEST = "echo -e 'GET /health HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc 127.0.0.1 8080 | grep -q 200"


def web_service_yaml(*, replicas: int, message: str = "hello from") -> str:
    """The ``web`` service (demo-web, published 18080, one replica per node) as YAML."""
    return f"""\
  web:
    image: {WEB_IMAGE}
    environment:
      MESSAGE: "{message}"
    ports:
      - target: 8080
        published: {PUBLISHED}
        protocol: tcp
    healthcheck:
      test: ["CMD-SHELL", "{HEALTH_TEST}"]
      interval: 1s
      timeout: 2s
      retries: 3
      start_period: 1s
    deploy:
      replicas: {replicas}
      placement:
        max_replicas_per_node: 1
"""


def compose_web(cluster: Cluster, name: str, *, replicas: int, message: str = "hello from") -> str:
    """A stack of ``web`` alone; the compose file's path."""
    return write_stack(cluster, name, "services:\n" + web_service_yaml(replicas=replicas))


def live_tasks(cluster: Cluster, via: Node, service: str) -> list[dict[str, Any]]:
    """Tasks meant to run (desired running), whatever their observed state."""
    return [t for t in cluster.service_ps(via, service) if t["desired_state"] <= RUNNING]


def running_by_node(cluster: Cluster, via: Node, service: str) -> dict[str, list[str]]:
    """node id -> container ids of its running tasks of ``service``."""
    out: dict[str, list[str]] = {}
    for t in cluster.running(via, service):
        out.setdefault(t["node_id"], []).append(t["status"]["container_id"])
    return out


def assert_no_duplicates(cluster: Cluster, via: Node, service: str) -> None:
    """At most one live task per slot, and at most one running container per task and slot."""
    tasks = live_tasks(cluster, via, service)
    slots = Counter(t["slot"] for t in tasks)
    dupes = {s: c for s, c in slots.items() if c > 1}
    assert not dupes, f"duplicate live tasks per slot: {dupes}"
    per_task: Counter[str] = Counter()
    per_slot: Counter[str] = Counter()
    for node in cluster.nodes:
        for cid in cluster.task_containers(node, running_only=True):
            labels = docker("inspect", "-f", "{{json .Config.Labels}}", cid, check=False)
            if labels.returncode != 0:
                continue  # removed meanwhile
            found = json.loads(labels.stdout)
            if found.get("swarmlite.service") == service:
                per_task[found.get("swarmlite.task", "")] += 1
                per_slot[found.get("swarmlite.slot", "")] += 1
    assert all(c == 1 for c in per_task.values()), f"a task runs twice: {per_task}"
    assert all(c == 1 for c in per_slot.values()), f"a slot runs twice: {per_slot}"


def answering_hosts(ips: list[str], port: int = PUBLISHED, tries: int = 24) -> Counter[str]:
    """Who answers through each node's mesh: body text -> count (bounded: ``tries`` per ip)."""
    seen: Counter[str] = Counter()
    for ip in ips:
        for _ in range(tries):
            try:
                seen[http_get(ip, port, timeout=2.0).strip()] += 1
            except OSError:
                seen[f"error@{ip}"] += 1
    return seen


def daemon_pid(cluster: Cluster, node: Node) -> str:
    """The pid (inside the node container) of the node's daemon, or ''."""
    out = cluster.sh(node, f"pgrep -f '{DAEMON_PATTERN}' || true").stdout.split()
    return out[0] if out else ""


def kill9_daemon(cluster: Cluster, node: Node) -> None:
    """``kill -9`` the daemon process (not the container, not its tasks)."""
    pid = daemon_pid(cluster, node)
    assert pid, f"no daemon running in {node.hostname}"
    cluster.sh(node, f"kill -9 {pid}", check=True)
    wait_until(lambda: not daemon_pid(cluster, node), timeout=10, what="daemon gone")


def start_daemon(cluster: Cluster, node: Node) -> None:
    """Start the daemon again in a running node container the way ``Cluster.start`` does."""
    cluster.sh(node, f"rm -f {DATA_DIR}/daemon.pid", check=True)
    cli = " ".join([sys.executable, "-m", "swarmlite.cli.main", "daemon"])
    docker("exec", "-d", node.name, "sh", "-c", f"exec {cli} >>{DATA_DIR}/daemon.log 2>&1")
    wait_until(lambda: daemon_pid(cluster, node), timeout=10, what="daemon started")


def start_worker(cluster: Cluster, node: Node, via: Node, *, timeout: float = 60) -> None:
    """``docker start`` a killed worker and its daemon; wait until ``via`` sees it ready.

    ``Cluster.start`` waits for ``node ls`` on the node itself, which only a manager answers.
    """
    docker("start", node.name)
    cluster._point_resolver(node)
    cluster.sh(node, f"rm -f {DATA_DIR}/daemon.pid {DATA_DIR}/etcd.pid", check=True)
    start_daemon(cluster, node)
    wait_until(lambda: node_state(cluster, via, node) == "ready", timeout=timeout,
               what=f"{node.hostname} ready")  # fmt: skip


def measure(name: str, seconds: float) -> None:
    """One parseable line per measurement, for the benchmark scripts."""
    print(f"MEASURE {name}={seconds:.2f}", flush=True)


def monotonic() -> float:
    return time.monotonic()


def leader_hostname(cluster: Cluster, via: Node) -> str:
    """The hostname ``node ls`` on ``via`` marks Leader, or '' (or raises if it fails)."""
    out = cluster.exec(via, "node", "ls", check=True, timeout=15).stdout
    for line in out.splitlines()[1:]:
        cells = line.split()
        if len(cells) >= 5 and cells[-1] == "Leader":
            return cells[-4]  # ID [*] HOSTNAME STATUS AVAILABILITY "Leader"
    return ""


def service_summary(cluster: Cluster, via: Node, service: str) -> dict[str, Any]:
    for s in cluster.json(via, "service", "ls"):
        if s["name"] == service:
            return dict(s)
    raise AssertionError(f"no service {service} on {via.hostname}")


def log_tails(cluster: Cluster, nodes: list[Node], lines: int = 40) -> str:
    """The last lines of each node's daemon.log, for a failure message."""
    parts = []
    for node in nodes:
        tail = cluster.sh(node, f"tail -n {lines} {DATA_DIR}/daemon.log").stdout
        parts.append(f"==== {node.hostname} ({node.node_id[:12]})\n{tail}")
    return "\n".join(parts)


def last_log_time(cluster: Cluster, node: Node, needle: str) -> float | None:
    """Wall-clock time of the last daemon.log line of ``node`` containing ``needle``."""
    out = cluster.sh(node, f"grep -F '{needle}' {DATA_DIR}/daemon.log | tail -n 1").stdout
    if not out.strip():
        return None
    stamp = " ".join(out.split()[:2])  # "2026-11-02 10:11:12,345"
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def elected_at(cluster: Cluster, node: Node) -> float | None:
    """Wall-clock time of the last "elected leader" line in ``node``'s daemon log."""
    return last_log_time(cluster, node, "elected leader")
