"""Workers fail: killed, cut off briefly, cut off for long, their daemon kill -9'd.

One cluster (1 manager, 3 workers) serves the module; ``web`` runs 3 replicas, one
per node, so each fault leaves one node free to take a moved replica. Each test
leaves every node up and ``web`` at 3 running replicas.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import pytest

from tests.cluster.harness import Cluster, Node, wait_until
from tests.cluster.support import (
    Formed,
    all_ready,
    answering_hosts,
    assert_no_duplicates,
    compose_web,
    daemon_pid,
    form_cluster,
    kill9_daemon,
    last_log_time,
    log_tails,
    measure,
    node_state,
    running_by_node,
    start_daemon,
    start_worker,
)

pytestmark = pytest.mark.cluster

STACK = "wf"
WEB = f"{STACK}_web"
REPLICAS = 3


@pytest.fixture(scope="module")
def formed() -> Iterator[Formed]:
    with Cluster() as cluster:
        formed = form_cluster(cluster, managers=1, workers=3)
        manager = formed.managers[0]
        compose = compose_web(cluster, "worker-faults", replicas=REPLICAS)
        cluster.exec(manager, "deploy", "-f", compose, "--stack", STACK, check=True)
        cluster.wait_running(manager, WEB, REPLICAS, timeout=90)
        yield formed


def _steady(formed: Formed) -> dict[str, list[str]]:
    """Wait for all nodes ready and 3 replicas; node id -> its running containers."""
    cluster, manager = formed.cluster, formed.managers[0]
    wait_until(lambda: all_ready(cluster, manager, len(formed.nodes)), timeout=60,
               what="all nodes ready")  # fmt: skip
    cluster.wait_running(manager, WEB, REPLICAS, timeout=60)
    # A healed node's stale replica drains (1 s) and stops after it hears it moved:
    # until then its slot briefly has two containers.
    wait_until(lambda: assert_no_duplicates(cluster, manager, WEB) or True, timeout=30,
               what="no slot running twice")  # fmt: skip
    return running_by_node(cluster, manager, WEB)


def _logged_after(cluster: Cluster, node: Node, needle: str, since: float) -> float | None:
    at = last_log_time(cluster, node, needle)
    return at if at is not None and at > since else None


def _holding_worker(formed: Formed, by_node: dict[str, list[str]]) -> Node:
    return next(w for w in formed.workers if w.node_id in by_node)


def _hosts_answering(ips: list[str]) -> set[str]:
    seen = answering_hosts(ips, tries=6)
    return {k.removeprefix("hello from ").strip() for k in seen if not k.startswith("error")}


def test_killed_worker_replicas_run_and_are_routed_elsewhere(formed: Formed) -> None:
    cluster, manager = formed.cluster, formed.managers[0]
    by_node = _steady(formed)
    victim = _holding_worker(formed, by_node)
    others = [n for n in formed.nodes if n is not victim]
    other_ips = [n.ip for n in others]
    killed_at = time.monotonic()
    cluster.kill(victim)

    # Rerouted: the mesh of every surviving node reaches 3 replicas, none on the victim.
    def rerouted() -> set[str] | None:
        running = running_by_node(cluster, manager, WEB)
        if victim.node_id in running or sum(len(v) for v in running.values()) != REPLICAS:
            return None
        hosts = _hosts_answering(other_ips)
        return hosts if hosts == {n.hostname for n in others} else None

    hosts = wait_until(rerouted, timeout=60, interval=0.2, what="replicas moved and routed")
    seconds = time.monotonic() - killed_at
    measure("worker_failover_s", seconds)
    assert victim.hostname not in hosts
    assert node_state(cluster, manager, victim) == "down"

    start_worker(cluster, victim, manager)
    _steady(formed)


def test_short_cut_off_moves_nothing(formed: Formed) -> None:
    cluster, manager = formed.cluster, formed.managers[0]
    before = _steady(formed)
    ids_before = {t["id"] for t in cluster.running(manager, WEB)}
    victim = _holding_worker(formed, before)
    containers = cluster.task_containers(victim, running_only=True)
    cluster.disconnect(victim)
    time.sleep(1.0)
    cluster.connect(victim)
    # Longer than the node's grace (ws heartbeat + lease TTL): a reschedule would show.
    time.sleep(8.0)
    after = _steady(formed)
    assert after == before, "a task was rescheduled after a 1 s cut"
    assert {t["id"] for t in cluster.running(manager, WEB)} == ids_before
    assert cluster.task_containers(victim, running_only=True) == containers
    restarts = [
        cluster.workload_sh(c, "true").returncode for c in containers
    ]  # still the same live containers
    assert restarts == [0] * len(containers)


def test_long_cut_off_moves_work_and_heals_to_exactly_n(formed: Formed) -> None:
    cluster, manager = formed.cluster, formed.managers[0]
    before = _steady(formed)
    victim = _holding_worker(formed, before)

    def moved() -> dict[str, list[str]] | None:
        running = running_by_node(cluster, manager, WEB)
        placed = sum(map(len, running.values()))
        return running if victim.node_id not in running and placed == REPLICAS else None

    cut_at = time.monotonic()
    cluster.disconnect(victim)
    try:
        wait_until(lambda: node_state(cluster, manager, victim) == "down", timeout=15,
                   what=f"{victim.hostname} down")  # fmt: skip
        wait_until(moved, timeout=30, what="work moved off the cut node")
        time.sleep(max(0.0, 10.0 - (time.monotonic() - cut_at)))  # cut for 10 s at least
    finally:
        cluster.connect(victim)
    after = _steady(formed)
    assert sum(map(len, after.values())) == REPLICAS
    # The cut node's old replica was stopped once it heard it had moved.
    wait_until(lambda: not cluster.task_containers(victim, running_only=True), timeout=30,
               what="the cut node's stale replica stopped")  # fmt: skip
    wait_until(
        lambda: len(answering_hosts([manager.ip], tries=8)) == REPLICAS, timeout=20,
        what="3 replicas answering",
    )  # fmt: skip


def test_agent_kill9_five_times_keeps_containers_and_makes_no_duplicates(formed: Formed) -> None:
    cluster, manager = formed.cluster, formed.managers[0]
    before = _steady(formed)
    victim = _holding_worker(formed, before)
    containers = cluster.task_containers(victim, running_only=True)
    assert containers
    restarts: list[float] = []
    for round_ in range(5):
        old = daemon_pid(cluster, victim)
        killed_wall = time.time()
        kill9_daemon(cluster, victim)
        start_daemon(cluster, victim)
        assert daemon_pid(cluster, victim) != old, round_
        opened = wait_until(
            partial(_logged_after, cluster, victim, "session open", killed_wall),
            timeout=60, what="the new agent's session",
        )  # fmt: skip
        restarts.append(opened - killed_wall)
        measure("agent_restart_s", restarts[-1])
        wait_until(lambda: node_state(cluster, manager, victim) == "ready", timeout=30,
                   what="worker ready again")  # fmt: skip
        now = cluster.task_containers(victim, running_only=True)
        assert now == containers, f"round {round_}: {now}, restarts {restarts}\n" + log_tails(
            cluster, [victim, manager]
        )
        assert_no_duplicates(cluster, manager, WEB)
    after = _steady(formed)
    assert after == before
    assert cluster.task_containers(victim, running_only=True) == containers
