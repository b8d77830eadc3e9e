"""schedule(): choosing nodes, accounting within one call, and the pending reasons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from types import MappingProxyType

import msgspec

from swarmlite.manager.scheduler import SchedulePlan, Unplaced, schedule
from swarmlite.manager.scheduling import SchedulerLoop, _volume_pins
from swarmlite.spec.objects import Node, Task, TaskState, TaskStatus, Volume
from swarmlite.spec.service import Mount
from swarmlite.store.cache import ClusterState, StateCache
from swarmlite.store.store import Delete, Put, Store, Versioned
from tests.unit.test_scheduler_fakes import (
    GIB,
    node,
    running,
    spec,
    stopping,
    task,
    tasks,
    volume,
)


def per_node(plan: SchedulePlan) -> dict[str, int]:
    return dict(sorted(Counter(p.node_id for p in plan.placements).items()))


def where(plan: SchedulePlan) -> dict[str, str]:
    return {p.task_id: p.node_id for p in plan.placements}


def reasons(plan: SchedulePlan) -> set[str]:
    return {u.reason for u in plan.unplaced}


THREE = [node("n1"), node("n2"), node("n3")]


def test_spreads_evenly_across_nodes() -> None:
    plan = schedule(tasks(spec("web"), 7), THREE, [])
    assert per_node(plan) == {"n1": 3, "n2": 2, "n3": 2}
    assert plan.unplaced == ()
    assert plan.decision == "placed 7 tasks on 3 nodes"


def test_spread_prefers_fewest_of_the_service_then_fewest_overall() -> None:
    web, other = spec("web"), spec("other")
    assigned = [
        running(web, 1, "n1"),
        running(other, 1, "n2"),
        running(other, 2, "n2"),
        running(other, 3, "n3"),
    ]
    plan = schedule([task(web, 2), task(web, 3)], THREE, assigned)
    # n2 and n3 have no web; n3 has fewer tasks overall, so it goes first.
    assert where(plan) == {"web.2.v1": "n3", "web.3.v1": "n2"}


def test_nothing_to_schedule() -> None:
    assert schedule([], THREE, []).decision == "nothing to schedule"


def test_no_nodes_in_the_cluster() -> None:
    plan = schedule(tasks(spec("web"), 2), [], [])
    assert reasons(plan) == {"no suitable node: no nodes in the cluster"}
    assert plan.decision == (
        "placed 0 tasks on 0 nodes, 2 pending: no suitable node: no nodes in the cluster"
    )


def test_reason_counts_each_node_once_in_filter_order() -> None:
    nodes = [
        node("n1", state="down", labels={"zone": "eu"}),
        node("n2", availability="drain"),
        node("n7", labels={"zone": "eu"}, engine="docker engine unresponsive: stop timed out"),
        node("n3", labels={"zone": "us"}),
        node("n4", labels={"zone": "us"}),
        node("n5"),
        node("n6", labels={"zone": "eu"}, memory=GIB),
    ]
    s = spec("db", constraints=("node.labels.zone==eu",), memory=2 * GIB)
    plan = schedule([task(s, 1)], nodes, [])
    assert plan.unplaced == (
        Unplaced(
            "db.1.v1",
            "no suitable node: 1 node not ready, 1 node with an unresponsive docker engine, "
            "1 node paused or drained, "
            "constraint node.labels.zone==eu fails on 3 nodes, insufficient memory on 1 node",
        ),
    )


def test_each_constraint_explains_itself() -> None:
    nodes = [node("n1", role="manager"), node("n2", labels={"zone": "us"}), node("n3")]
    s = spec("web", constraints=("node.role == worker", "node.labels.zone==eu"))
    plan = schedule([task(s, 1)], nodes, [])
    assert reasons(plan) == {
        "no suitable node: constraint node.role==worker fails on 1 node, "
        "constraint node.labels.zone==eu fails on 2 nodes"
    }


def test_constraints_select_nodes() -> None:
    nodes = [node("n1", labels={"zone": "eu"}), node("n2"), node("n3", labels={"zone": "eu"})]
    plan = schedule(tasks(spec("web", constraints=("node.labels.zone==eu",)), 4), nodes, [])
    assert per_node(plan) == {"n1": 2, "n3": 2}


def test_malformed_constraint_leaves_only_that_service_pending() -> None:
    bad = spec("bad", constraints=("node.zone=eu",))
    plan = schedule([task(bad, 1), task(spec("web"), 1)], THREE, [])
    assert where(plan) == {"web.1.v1": "n1"}
    [unplaced] = plan.unplaced
    assert unplaced.task_id == "bad.1.v1"
    assert "invalid placement constraint 'node.zone=eu'" in unplaced.reason


def test_resources_account_for_assigned_and_earlier_placements() -> None:
    nodes = [node("n1", memory=4 * GIB), node("n2", memory=4 * GIB)]
    s = spec("db", memory=GIB)
    assigned = [running(spec("cache", memory=3 * GIB), 1, "n1")]
    plan = schedule(tasks(s, 6), nodes, assigned)
    assert per_node(plan) == {"n1": 1, "n2": 4}
    assert [u.task_id for u in plan.unplaced] == ["db.6.v1"]
    assert reasons(plan) == {"no suitable node: insufficient memory on 2 nodes"}


def test_cpu_accounting_across_services_in_one_call() -> None:
    nodes = [node("n1", cpus=2)]
    plan = schedule(tasks(spec("a", cpus=1.5), 1) + tasks(spec("b", cpus=1), 1), nodes, [])
    assert where(plan) == {"a.1.v1": "n1"}
    assert reasons(plan) == {"no suitable node: insufficient cpu on 1 node"}


def test_max_replicas_per_node() -> None:
    s = spec("web", max_per_node=2)
    plan = schedule(tasks(s, 4, start=2), THREE[:2], [running(s, 1, "n1")])
    assert per_node(plan) == {"n1": 1, "n2": 2}
    assert [u.task_id for u in plan.unplaced] == ["web.5.v1"]
    assert reasons(plan) == {"no suitable node: max_replicas_per_node 2 reached on 2 nodes"}
    assert plan.decision == (
        "placed 3 tasks on 2 nodes, 1 pending: "
        "no suitable node: max_replicas_per_node 2 reached on 2 nodes"
    )


def test_preferences_spread_over_zones_before_nodes() -> None:
    nodes = [
        node("a1", labels={"zone": "a"}),
        node("a2", labels={"zone": "a"}),
        node("a3", labels={"zone": "a"}),
        node("b1", labels={"zone": "b"}),
        node("x1"),  # no zone label: a group of its own
    ]
    s = spec("web", preferences=("spread=node.labels.zone",))
    plan = schedule(tasks(s, 6), nodes, [])
    zones = Counter(p.node_id[0] for p in plan.placements)
    assert zones == {"a": 2, "b": 2, "x": 2}
    assert per_node(plan) == {"a1": 1, "a2": 1, "b1": 2, "x1": 2}


def test_preferences_count_tasks_already_running_in_a_zone() -> None:
    nodes = [node("a1", labels={"zone": "a"}), node("b1", labels={"zone": "b"})]
    s = spec("web", preferences=("node.labels.zone",))
    assigned = [running(s, 1, "a1"), running(s, 2, "a1")]
    plan = schedule(tasks(s, 3, start=3), nodes, assigned)
    assert per_node(plan) == {"a1": 1, "b1": 2}


def test_nested_preferences() -> None:
    nodes = [
        node("eu-r1", labels={"zone": "eu", "rack": "r1"}),
        node("eu-r1b", labels={"zone": "eu", "rack": "r1"}),
        node("eu-r2", labels={"zone": "eu", "rack": "r2"}),
        node("us-r1", labels={"zone": "us", "rack": "r1"}),
    ]
    s = spec("web", preferences=("spread=node.labels.zone", "spread=node.labels.rack"))
    plan = schedule(tasks(s, 4), nodes, [])
    assert per_node(plan) == {"eu-r1": 1, "eu-r2": 1, "us-r1": 2}


def test_host_port_conflicts() -> None:
    proxy = spec("proxy", host_ports=(8080,))
    assigned = [running(spec("old", host_ports=(8080,)), 1, "n1")]
    plan = schedule(tasks(proxy, 3), THREE, assigned)
    assert per_node(plan) == {"n2": 1, "n3": 1}
    assert reasons(plan) == {"no suitable node: host port 8080/tcp in use on 3 nodes"}


def test_volume_affinity_pins_to_the_volume_node() -> None:
    s = spec("db", volumes=("data",))
    plan = schedule(tasks(s, 2), THREE, [], [volume("data", "n2")])
    assert per_node(plan) == {"n2": 2}


def test_new_volume_holds_every_task_of_the_pass_to_the_first_ones_node() -> None:
    # The volume lives nowhere yet: the first task may go anywhere (spread picks n1),
    # the others follow it there instead of spreading to n2 and n3.
    plan = schedule(tasks(spec("db", volumes=("data",)), 3), THREE, [], [volume("data")])
    assert per_node(plan) == {"n1": 3}
    assert plan.unplaced == ()


def test_new_volume_shared_by_two_services_in_one_pass_lands_on_one_node() -> None:
    # db goes to n2; backup would spread to the empty n3, the volume keeps it on n2.
    assigned = [running(spec("other"), 1, "n1")]
    pending = [task(spec("db", volumes=("data",)), 1), task(spec("backup", volumes=("data",)), 1)]
    plan = schedule(pending, THREE, assigned, [volume("data")])
    assert where(plan) == {"db.1.v1": "n2", "backup.1.v1": "n2"}


def test_new_volume_node_full_leaves_the_later_task_pending_naming_the_volume() -> None:
    nodes = [node("n1", memory=GIB), node("n2", memory=GIB)]
    s = spec("db", volumes=("data",), memory=GIB)
    plan = schedule(tasks(s, 2), nodes, [], [volume("data")])
    assert where(plan) == {"db.1.v1": "n1"}
    assert reasons(plan) == {
        "no suitable node: insufficient memory on 1 node, "
        "volume data will live on node n1, where a task mounting it went"
    }


def test_global_tasks_each_use_their_own_nodes_copy_of_a_volume() -> None:
    # A global service runs everywhere, each task with its node's local volume (as
    # Swarm's local driver): neither a volume living on n2 nor a new one holds them.
    agent = spec("agent", mode="global", volumes=("data",))
    for vol in (volume("data", "n2"), volume("data")):
        pinned = [task(agent, 0, node_id=n) for n in ("n1", "n2", "n3")]
        plan = schedule(pinned, THREE, [], [vol])
        assert plan.unplaced == ()
    # A new volume a global task mounts stays unclaimed: a replicated task may go anywhere.
    pinned = task(agent, 0, node_id="n3")
    plan = schedule([pinned, task(spec("db", volumes=("data",)), 1)], THREE, [], [volume("data")])
    assert where(plan)["db.1.v1"] in ("n1", "n2")


def test_volume_on_a_down_node() -> None:
    nodes = [node("n1"), node("n2"), node("n3", state="down")]
    plan = schedule([task(spec("db", volumes=("data",)), 1)], nodes, [], [volume("data", "n3")])
    assert reasons(plan) == {
        "no suitable node: 1 node not ready, volume data lives on node n3, which is down"
    }


def test_volume_node_full() -> None:
    nodes = [node("n1"), node("n2", memory=GIB)]
    s = spec("db", volumes=("data",), memory=2 * GIB)
    plan = schedule([task(s, 1)], nodes, [], [volume("data", "n2")])
    assert reasons(plan) == {
        "no suitable node: insufficient memory on 1 node, volume data lives on another node"
    }


def test_pinned_task_goes_to_its_node_only() -> None:
    g = spec("agent", mode="global")
    pinned = [task(g, 0, node_id=n.id) for n in THREE]
    plan = schedule(pinned, THREE, [])
    assert sorted(where(plan).values()) == ["n1", "n2", "n3"]
    assert all(tid.endswith("@" + nid) for tid, nid in where(plan).items())


def test_pinned_task_failing_its_node_stays_pending() -> None:
    nodes: list[Node] = [node("n1", availability="drain"), node("n2", memory=GIB)]
    g = spec("agent", mode="global", memory=2 * GIB)
    pinned = [task(g, 0, node_id="n1"), task(g, 0, node_id="n2"), task(g, 0, node_id="n9")]
    plan = schedule(pinned, nodes, [])
    assert plan.placements == ()
    assert {u.task_id: u.reason for u in plan.unplaced} == {
        "agent.0.v1@n1": "no suitable node: 1 node paused or drained",
        "agent.0.v1@n2": "no suitable node: insufficient memory on 1 node",
        "agent.0.v1@n9": "no suitable node: node n9 is not in the cluster",
    }


def test_pinned_tasks_count_before_free_ones() -> None:
    s = spec("web", max_per_node=1)
    pending = [*tasks(s, 2), task(s, 9, node_id="n1")]
    plan = schedule(pending, THREE[:2], [])
    assert where(plan)["web.9.v1@n1"] == "n1"
    assert [u.task_id for u in plan.unplaced] == ["web.2.v1"]


def test_spec_versions_are_separate_groups_sharing_spread() -> None:
    s = spec("web")
    pending = [task(s, 1, version=1), task(s, 2, version=2), task(s, 3, version=2)]
    plan = schedule(pending, THREE, [])
    assert per_node(plan) == {"n1": 1, "n2": 1, "n3": 1}


def test_decision_mentions_other_reasons() -> None:
    pending = [task(spec("a", memory=99 * GIB), 1), task(spec("b", cpus=99), 1)]
    plan = schedule(pending, THREE, [])
    assert plan.decision == (
        "placed 0 tasks on 0 nodes, 2 pending: "
        "no suitable node: insufficient memory on 3 nodes (and 1 other reason)"
    )


def test_deterministic_whatever_the_input_order() -> None:
    nodes = [node(f"n{i}", labels={"zone": f"z{i % 2}"}) for i in range(5)]
    pending = tasks(spec("web", preferences=("node.labels.zone",)), 9) + tasks(spec("db"), 4)
    first = schedule(pending, nodes, [])
    again = schedule(list(reversed(pending)), list(reversed(nodes)), [])
    assert first == schedule(pending, nodes, [])
    assert sorted(first.placements, key=str) == sorted(again.placements, key=str)


def test_preference_spread_skips_full_nodes_within_a_zone() -> None:
    nodes = [
        node("a1", labels={"zone": "a"}, memory=GIB),
        node("a2", labels={"zone": "a"}, memory=4 * GIB),
        node("b1", labels={"zone": "b"}, memory=4 * GIB),
    ]
    s = spec("web", preferences=("node.labels.zone",), memory=GIB)
    plan = schedule(tasks(s, 10), nodes, [])
    assert per_node(plan) == {"a1": 1, "a2": 4, "b1": 4}
    assert reasons(plan) == {"no suitable node: insufficient memory on 3 nodes"}


def test_the_pass_records_where_each_new_volume_now_lives() -> None:
    # Stack volumes, and another stack's volume mounted as external, are pinned to the
    # node of the first task placed with them; a global task pins nothing.
    borrowed = Mount(type="volume", target="/d", source="shop_data", external=True)
    reporting = task(msgspec.structs.replace(spec("reporting"), stack="bi", mounts=(borrowed,)), 1)
    db = task(spec("db", volumes=("data", "old")), 1)
    agent = task(spec("agent", mode="global", volumes=("data",)), 0)
    state = ClusterState(
        volumes=MappingProxyType(
            {v.id: Versioned(v, 4) for v in (volume("data"), volume("old", "n3"))}
        )
    )
    for placed in ([(reporting, "n2"), (db, "n1")], [(db, "n1"), (reporting, "n2")]):
        (put,) = _volume_pins(state, [(agent, "n3"), *placed])
        assert isinstance(put.obj, Volume) and put.expect == 4
        assert (put.obj.name, put.obj.node_id) == ("shop_data", placed[0][1])


def test_a_task_still_stopping_holds_its_host_port_until_it_has_stopped() -> None:
    # Scaled down then up at once: the new task went to the node where the old one
    # still held the port, failed to start once, and healed through its restart policy.
    proxy = spec("proxy", host_ports=(8080,))
    plan = schedule(tasks(proxy, 1, start=2), THREE[:2], [stopping(proxy, 1, "n1")])
    assert where(plan) == {"proxy.2.v1": "n2"}
    plan = schedule(tasks(proxy, 1, start=2), THREE[:1], [stopping(proxy, 1, "n1")])
    assert reasons(plan) == {"no suitable node: host port 8080/tcp in use on 1 node"}


def test_a_task_still_stopping_holds_its_reservations() -> None:
    db = spec("db", memory=3 * GIB, cpus=3)
    plan = schedule(tasks(db, 1, start=2), [node("n1", memory=4 * GIB)], [stopping(db, 1, "n1")])
    assert reasons(plan) == {"no suitable node: insufficient cpu on 1 node"}


def test_a_task_still_stopping_counts_neither_for_spread_nor_max_replicas() -> None:
    # As in Swarm: it is on its way out, so only the resources it holds count. A
    # volume living on its node keeps pinning the service there (a volume is shared).
    s = spec("db", max_per_node=1, volumes=("data",))
    plan = schedule(tasks(s, 1, start=2), THREE, [stopping(s, 1, "n1")], [volume("data", "n1")])
    assert where(plan) == {"db.2.v1": "n1"}
    web = spec("web")
    plan = schedule(
        tasks(web, 1, start=3), THREE[:2], [stopping(web, 1, "n2"), running(web, 2, "n1")]
    )
    assert where(plan) == {"web.3.v1": "n2"}


class _Recorder(Store):
    def __init__(self) -> None:
        self.ops: list[Put | Delete] = []

    async def commit(self, ops: Sequence[Put | Delete]) -> int:
        self.ops.extend(ops)
        return 1


async def test_the_scheduler_loop_waits_for_a_stopping_task_to_free_its_host_port() -> None:
    proxy = spec("proxy", host_ports=(8080,))
    old, new = stopping(proxy, 1, "n1"), task(proxy, 2)
    store = _Recorder()
    loop = SchedulerLoop(store, StateCache(store), clock=lambda: 100.0)

    def state(*items: Task | Node) -> ClusterState:
        nodes = {n.id: Versioned(n, 1) for n in items if isinstance(n, Node)}
        found = {t.id: Versioned(t, 1) for t in items if isinstance(t, Task)}
        return ClusterState(nodes=MappingProxyType(nodes), tasks=MappingProxyType(found))

    decision = await loop.pass_once(state(node("n1"), old, new))
    assert decision == "placed 0 tasks on 0 nodes, 1 pending: " + (
        "no suitable node: host port 8080/tcp in use on 1 node"
    )
    stopped = msgspec.structs.replace(old, status=TaskStatus(state=TaskState.SHUTDOWN))
    assert await loop.pass_once(state(node("n1"), stopped, new)) == "placed 1 task on 1 node"
    (put,) = store.ops[-1:]
    placed = put.obj if isinstance(put, Put) else None
    assert isinstance(placed, Task) and (placed.id, placed.node_id) == (new.id, "n1")
