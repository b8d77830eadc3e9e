"""Two live tasks in one slot, and tasks stopped before any node took them."""

from __future__ import annotations

from swarmlite.manager.reconcile import reconcile
from swarmlite.spec.objects import TaskState as S
from tests.unit.test_reconcile import NODES, T0, running_tasks, service, spec, task


def test_a_duplicate_task_in_a_slot_is_shut_down_keeping_the_running_one() -> None:
    svc = service()
    tasks = running_tasks(svc, 3)
    duplicate = task(svc, 2, S.ASSIGNED, created=T0)  # made twice by a stale pass
    plan = reconcile(svc, [*tasks, duplicate], NODES, T0)
    assert list(plan.updates) == [duplicate.id]
    assert plan.updates[duplicate.id].desired_state == S.SHUTDOWN
    assert not plan.create
    assert f"slot 2: duplicate {duplicate.id[:12]} shut down" in plan.decision("s_web")


def test_scaling_away_a_task_no_node_took_ends_it_so_the_slot_can_refill() -> None:
    svc = service(spec(replicas=1))
    placed = task(svc, 1)
    pending = task(svc, 2, S.PENDING, node_id="")
    plan = reconcile(svc, [placed, pending], NODES, T0)
    stopped = plan.updates[pending.id]
    assert stopped.desired_state == S.SHUTDOWN
    assert stopped.status.state == S.SHUTDOWN  # no agent would ever report it
    # Scaled up again, the slot refills at once instead of waiting for it to stop.
    bigger = service(spec(replicas=2), version=2)
    again = reconcile(bigger, [placed, stopped], NODES, T0 + 1)
    assert [t.slot for t in again.create] == [2]
