"""Reconciler: a change of placement alone restarts only the tasks whose node no longer
fits it, as Swarm's IsTaskDirtyPlacementConstraintsOnly: no churn for the rest."""

from __future__ import annotations

import msgspec

from swarmlite.manager.reconcile import reconcile
from swarmlite.manager.updater import begin_update
from swarmlite.spec.objects import Node, Service, TaskState
from swarmlite.spec.service import Placement
from tests.unit.test_reconcile import T0, Sim, check_plan, node, nodes, service, task

S = TaskState


def zoned(node_id: str, zone: str) -> Node:
    return msgspec.structs.replace(node(node_id), labels={"zone": zone})


NODES = nodes(zoned("n1", "us"), zoned("n2", "eu"), zoned("n3", "eu"))


def placed(v1: Service, placement: Placement) -> Service:
    return begin_update(v1, msgspec.structs.replace(v1.spec, placement=placement), T0)


def test_new_preferences_or_max_replicas_restart_nothing() -> None:
    v1 = service()
    tasks = [task(v1, s, node_id=n) for s, n in ((1, "n1"), (2, "n2"), (3, "n3"))]
    for placement in (
        Placement(preferences=("spread=node.labels.zone",)),
        Placement(max_replicas_per_node=2),
    ):
        v2 = placed(v1, placement)
        assert v2.update_status.state == "updating"
        plan = reconcile(v2, tasks, NODES, T0 + 1)
        check_plan(plan, tasks)
        assert not plan.create
        assert {(t.desired_state, t.spec_version) for t in plan.updates.values()} == {
            (S.RUNNING, 2)
        }
        assert len(plan.updates) == 3


def test_a_new_constraint_rolls_only_the_tasks_on_nodes_failing_it() -> None:
    v1 = service()
    tasks = [task(v1, s, node_id=n) for s, n in ((1, "n1"), (2, "n2"), (3, "n3"))]
    v2 = placed(v1, Placement(constraints=("node.labels.zone==eu",)))
    plan = reconcile(v2, tasks, NODES, T0 + 1)
    check_plan(plan, tasks)
    moved = {t.node_id: (t.desired_state, t.spec_version) for t in plan.updates.values()}
    # n1's task is the rolling update's (stop-first): stopped, then its slot refills.
    assert moved == {"n1": (S.SHUTDOWN, 1), "n2": (S.RUNNING, 2), "n3": (S.RUNNING, 2)}
    assert not plan.create


def test_a_placement_change_completes_its_update() -> None:
    v1 = service()
    tasks = [task(v1, s, node_id=n) for s, n in ((1, "n1"), (2, "n2"), (3, "n3"))]
    sim = Sim(placed(v1, Placement(preferences=("spread=node.labels.zone",))), NODES, tasks)
    sim.run()
    assert sim.service.update_status.state == "completed"
    assert sorted(t.id for t in sim.live()) == sorted(t.id for t in tasks)
