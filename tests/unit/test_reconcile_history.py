"""Reconciler: task history pruning, and a pass applied to its own output."""

from __future__ import annotations

import msgspec
import pytest

from swarmlite.manager.reconcile import reconcile
from swarmlite.spec.objects import Service, Task, TaskState
from swarmlite.spec.service import RestartPolicy
from tests.unit.test_reconcile import (
    NAME,
    NODES,
    T0,
    Sim,
    check_plan,
    node,
    nodes,
    running_tasks,
    service,
    spec,
    task,
)

S = TaskState


# --- history -------------------------------------------------------------------------


def finished(svc: Service, slot: int, n: int) -> list[Task]:
    return [
        task(svc, slot, S.FAILED, desired=S.SHUTDOWN, created=T0 - 100 + i, at=T0 - 99 + i)
        for i in range(n)
    ]


# The limit counts every task of the slot, the running one too, as Swarm's
# task_history_retention_limit does: `service ps` shows 5 tasks per slot, not 6.
@pytest.mark.parametrize(
    ("n_finished", "limit", "pruned"), [(7, 5, 3), (5, 5, 1), (4, 5, 0), (3, 0, 3)]
)
def test_history_is_pruned_per_slot_oldest_first(n_finished: int, limit: int, pruned: int) -> None:
    svc = service(spec(replicas=2))
    old1, old2 = finished(svc, 1, n_finished), finished(svc, 2, 1)
    tasks = [*old1, *old2, task(svc, 1), task(svc, 2)]
    plan = reconcile(svc, tasks, NODES, T0, history_limit=limit)
    check_plan(plan, tasks)
    expect = old1[:pruned] + (old2 if limit == 0 else [])
    assert plan.delete == expect
    assert not plan.create and not plan.updates
    if expect:
        assert plan.decision(NAME) == f"service={NAME} " + "; ".join(
            f"pruned {t.id[:12]} (history limit {limit})" for t in expect
        )
    else:
        assert plan.decision(NAME) == f"service={NAME} converged"


def test_history_never_prunes_a_task_still_stopping_or_still_wanted() -> None:
    svc = service(spec(replicas=1, restart_policy=RestartPolicy(condition="none")))
    stopping = task(svc, 1, S.RUNNING, desired=S.SHUTDOWN, created=T0 - 90)
    dead = task(svc, 1, S.FAILED, created=T0 - 80)  # not restarted, still desired running
    plan = reconcile(svc, [stopping, dead], NODES, T0, history_limit=0)
    assert not plan.delete


def test_a_pass_is_idempotent_on_its_own_output() -> None:
    svc = service()
    sim = Sim(svc, NODES)
    first = sim.pass_()
    second = sim.pass_()
    assert len(first.create) == 3 and second.empty
    assert second.decision(NAME) == f"service={NAME} converged"


# --- slots that are gone -------------------------------------------------------------


def test_tasks_of_a_slot_removed_by_scale_down_are_deleted_once_stopped() -> None:
    # As in Swarm (desired state REMOVE, then the task reaper): `service ps` of a
    # service scaled from 3 to 1 lists slot 1 only, not slots 2 and 3 for good.
    svc = service(spec(replicas=1))
    kept = task(svc, 1)
    stopped = [task(svc, s, S.SHUTDOWN, desired=S.SHUTDOWN) for s in (2, 3)]
    older = task(svc, 3, S.FAILED, desired=S.SHUTDOWN, created=T0 - 50)
    tasks = [kept, *stopped, older]
    plan = reconcile(svc, tasks, NODES, T0)
    check_plan(plan, tasks)
    assert sorted(t.id for t in plan.delete) == sorted(t.id for t in [*stopped, older])
    assert not plan.create and not plan.updates


def test_scale_down_leaves_only_the_wanted_slots_in_the_store() -> None:
    svc = service()
    sim = Sim(svc, NODES, running_tasks(svc, 3))
    sim.service = msgspec.structs.replace(svc, spec=spec(replicas=1))
    sim.run()
    assert sorted(t.slot for t in sim.tasks.values()) == [1]


def test_a_removed_nodes_global_task_is_deleted_once_ended() -> None:
    svc = service(spec(mode="global"))
    here = task(svc, 0, node_id="n1")
    gone = task(svc, 0, S.RUNNING, desired=S.SHUTDOWN, node_id="n9")  # no agent will report
    drained = task(svc, 0, S.SHUTDOWN, desired=S.SHUTDOWN, node_id="n2")  # kept as history
    tasks = [here, gone, drained]
    node_map = nodes(node("n1"), node("n2", availability="drain"))
    plan = reconcile(svc, tasks, node_map, T0)
    # (Not check_plan: its status is still the agent's last word, RUNNING.)
    assert [t.id for t in plan.delete] == [gone.id]
    assert not plan.create and not plan.updates
