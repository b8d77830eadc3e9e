"""Reconciler: a global service runs only on the nodes its placement constraints allow."""

from __future__ import annotations

import msgspec

from swarmlite.manager.reconcile import reconcile
from swarmlite.manager.updater import begin_update
from swarmlite.spec.objects import TaskState
from swarmlite.spec.service import Placement, RestartPolicy
from tests.unit.test_reconcile import T0, Sim, check_plan, node, nodes, service, spec, task

S = TaskState


def managers_only() -> Placement:
    return Placement(constraints=("node.role==manager",))


def test_global_service_creates_tasks_only_on_nodes_meeting_its_constraints() -> None:
    # As in Swarm: no task at all on a worker, so none sits pending there for good
    # (which kept `service ls` at 1/2 and a depends_on service_healthy waiting).
    svc = service(spec(mode="global", placement=managers_only()))
    manager = msgspec.structs.replace(node("n1"), role="manager")
    node_map = nodes(manager, node("n2"))
    plan = reconcile(svc, [], node_map, 1000.0)
    check_plan(plan, [])
    assert [t.node_id for t in plan.create] == ["n1"]


def test_global_task_on_a_node_that_stops_meeting_the_constraints_is_shut_down() -> None:
    svc = service(spec(mode="global", placement=Placement(constraints=("node.labels.gpu==yes",))))
    labelled = msgspec.structs.replace(node("n1"), labels={"gpu": "yes"})
    tasks = [task(svc, 0, node_id="n1"), task(svc, 0, node_id="n2")]
    plan = reconcile(svc, tasks, nodes(labelled, node("n2")), 1000.0)
    check_plan(plan, tasks)
    assert not plan.create
    assert [(t.node_id, t.desired_state) for t in plan.updates.values()] == [("n2", S.SHUTDOWN)]


def test_global_service_with_a_malformed_constraint_leaves_it_to_the_scheduler() -> None:
    # The scheduler says what is wrong with it ("invalid placement constraint ..."),
    # as it does for a replicated service; the reconciler must not fail on it.
    svc = service(spec(mode="global", placement=Placement(constraints=("node.role=manager",))))
    plan = reconcile(svc, [], nodes(node("n1"), node("n2")), 1000.0)
    assert sorted(t.node_id for t in plan.create) == ["n1", "n2"]


# --- paused nodes: no new task, the one there is left alone (as in Swarm) -------------


def test_global_task_that_ends_on_a_paused_node_is_not_replaced() -> None:
    # A replacement would be pinned to a node that takes no new task: pending for good.
    svc = service(spec(mode="global", restart_policy=RestartPolicy(delay=0)))
    crashed = task(svc, 0, S.FAILED, node_id="n1", err="task: non-zero exit (1)")
    fine = task(svc, 0, node_id="n2")
    node_map = nodes(node("n1", availability="pause"), node("n2"))
    plan = reconcile(svc, [crashed, fine], node_map, T0)
    check_plan(plan, [crashed, fine])
    assert not plan.create
    assert [(t.id, t.desired_state) for t in plan.updates.values()] == [(crashed.id, S.SHUTDOWN)]


def test_global_update_leaves_a_paused_nodes_task_on_the_old_spec_and_completes() -> None:
    # Stopping it would leave the paused node without the service (no new task goes
    # there); start-first would pin a new task there that can never be placed.
    v1 = service(spec(mode="global"))
    node_map = nodes(node("n1", availability="pause"), node("n2"), node("n3"))
    old = [task(v1, 0, node_id=n, created=T0 - 100 + i) for i, n in enumerate(("n1", "n2", "n3"))]
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="nginx:2"), T0)
    sim = Sim(v2, node_map, old)
    sim.run()
    assert sim.service.update_status.state == "completed"
    by_node = {t.node_id: t.spec.image for t in sim.live()}
    assert by_node == {"n1": "nginx:1", "n2": "nginx:2", "n3": "nginx:2"}
