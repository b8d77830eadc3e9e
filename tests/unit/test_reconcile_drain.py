"""Reconciler and node availability: drain moves replicated tasks away, pause keeps them."""

from __future__ import annotations

import msgspec

from swarmlite.manager.reconcile import reconcile
from swarmlite.spec.objects import Node
from swarmlite.spec.service import Placement
from tests.unit.test_reconcile import (
    NAME,
    T0,
    S,
    Sim,
    check_plan,
    node,
    nodes,
    running_tasks,
    service,
    spec,
    task,
)


def test_drain_shuts_down_replicated_tasks_and_refills_their_slots() -> None:
    svc = service()
    node_map = nodes(node("n1", availability="drain"), node("n2"), node("n3"))
    tasks = [task(svc, 1, node_id="n1"), task(svc, 2, node_id="n2"), task(svc, 3, node_id="n1")]
    plan = reconcile(svc, tasks, node_map, T0)
    check_plan(plan, tasks)
    assert set(plan.updates) == {tasks[0].id, tasks[2].id}
    assert all(t.desired_state == S.SHUTDOWN for t in plan.updates.values())
    # Refilled unplaced: the scheduler (no drained nodes) picks the node.
    assert sorted((t.slot, t.node_id) for t in plan.create) == [(1, ""), (3, "")]
    assert f"slot 1: node n1 drained, shutting down {tasks[0].id[:12]}" in plan.decision(NAME)


def test_drained_node_ends_with_no_running_task_and_the_service_keeps_its_replicas() -> None:
    svc = service()
    sim = Sim(svc, nodes(node("n1"), node("n2"), node("n3")))
    sim.run()
    assert len(sim.running()) == 3
    sim.nodes["n1"] = node("n1", availability="drain")
    sim.run()
    running = sim.running()
    assert len(running) == 3
    assert {t.node_id for t in running} <= {"n2", "n3"}
    assert sorted(t.slot for t in running) == [1, 2, 3]


def test_drain_leaves_a_finished_task_to_the_restart_policy() -> None:
    svc = service()
    node_map = nodes(node("n1", availability="drain"), node("n2"))
    failed = task(svc, 1, S.FAILED, node_id="n1", at=T0 - 1, err="exit 1")
    plan = reconcile(svc, [failed], node_map, T0 + 60)
    restarted = [t for t in plan.create if t.slot == 1]
    assert len(restarted) == 1 and restarted[0].node_id == "" and restarted[0].attempt == 1
    assert "drained" not in plan.decision(NAME)


def test_drain_does_not_touch_tasks_already_shutting_down() -> None:
    svc = service(spec(replicas=1))
    node_map = nodes(node("n1", availability="drain"), node("n2"))
    stopping = task(svc, 1, node_id="n1", desired=S.SHUTDOWN)
    plan = reconcile(svc, [stopping], node_map, T0)
    assert stopping.id not in plan.updates
    assert [t.slot for t in plan.create] == [1]


def test_pause_keeps_running_replicated_tasks() -> None:
    svc = service()
    node_map = nodes(node("n1", availability="pause"), node("n2"), node("n3"))
    tasks = running_tasks(svc, 3, node_id="n1")
    plan = reconcile(svc, tasks, node_map, T0)
    assert plan.empty
    assert plan.decision(NAME) == f"service={NAME} converged"


def test_paused_node_takes_no_new_replicated_task() -> None:
    svc = service()
    sim = Sim(svc, nodes(node("n1", availability="pause"), node("n2")))
    sim.run()
    assert len(sim.running()) == 3
    assert {t.node_id for t in sim.running()} == {"n2"}


def test_global_service_keeps_its_task_on_a_paused_node() -> None:
    svc = service(spec(mode="global"))
    node_map = nodes(node("n1", availability="pause"), node("n2"))
    tasks = [task(svc, 0, node_id="n1"), task(svc, 0, node_id="n2")]
    plan = reconcile(svc, tasks, node_map, T0)
    check_plan(plan, tasks)
    assert plan.empty


def test_global_service_starts_no_task_on_a_paused_node() -> None:
    svc = service(spec(mode="global"))
    node_map = nodes(node("n1", availability="pause"), node("n2"))
    plan = reconcile(svc, [], node_map, T0)
    assert [(t.slot, t.node_id) for t in plan.create] == [(0, "n2")]


def test_global_task_on_a_node_drained_after_pause_is_shut_down() -> None:
    svc = service(spec(mode="global"))
    tasks = [task(svc, 0, node_id="n1")]
    drained = nodes(node("n1", availability="drain"))
    plan = reconcile(svc, tasks, drained, T0)
    assert [t.desired_state for t in plan.updates.values()] == [S.SHUTDOWN]
    assert not plan.create


def test_reactivated_node_gets_global_task_back() -> None:
    svc = service(spec(mode="global"))
    old = msgspec.structs.replace(
        task(svc, 0, S.SHUTDOWN, node_id="n1", desired=S.SHUTDOWN), created_at=T0 - 100
    )
    plan = reconcile(svc, [old], nodes(node("n1")), T0)
    assert [(t.slot, t.node_id) for t in plan.create] == [(0, "n1")]


# --- a node that no longer meets the constraints (Swarm's constraint enforcer) ---------


def zoned(node_id: str, zone: str, availability: str = "active") -> Node:
    return msgspec.structs.replace(
        node(node_id, availability=availability), labels={"zone": zone} if zone else {}
    )


def test_task_on_a_node_that_no_longer_meets_the_constraints_moves() -> None:
    # node update --label-rm zone n1: its replica is shut down and refilled unplaced,
    # so the scheduler puts it on a node that matches.
    svc = service(spec(replicas=2, placement=Placement(constraints=("node.labels.zone==eu",))))
    node_map = nodes(zoned("n1", ""), zoned("n2", "eu"), zoned("n3", "eu"))
    tasks = [task(svc, 1, node_id="n1"), task(svc, 2, node_id="n2")]
    plan = reconcile(svc, tasks, node_map, T0)
    check_plan(plan, tasks)
    assert [(t.id, t.desired_state) for t in plan.updates.values()] == [(tasks[0].id, S.SHUTDOWN)]
    assert [(t.slot, t.node_id) for t in plan.create] == [(1, "")]
    assert (
        f"slot 1: node n1 no longer meets node.labels.zone==eu, shutting down {tasks[0].id[:12]}"
        in plan.decision(NAME)
    )


def test_constraints_leave_a_paused_nodes_task_alone() -> None:
    # As Swarm's enforcer: pause means the node's tasks are not touched.
    svc = service(spec(replicas=1, placement=Placement(constraints=("node.labels.zone==eu",))))
    tasks = [task(svc, 1, node_id="n1")]
    plan = reconcile(svc, tasks, nodes(zoned("n1", "us", "pause"), zoned("n2", "eu")), T0)
    assert plan.empty
