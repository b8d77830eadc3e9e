"""Tasks whose service is gone: stopped through their agent, or deleted at once when no
agent will ever report on them."""

from __future__ import annotations

import msgspec

from swarmlite.manager.orchestrator import remove_orphan
from swarmlite.spec.objects import Node, NodeStatus, Task, TaskState, TaskStatus
from swarmlite.spec.service import ServiceSpec
from swarmlite.store.store import Delete, Put, Versioned

NODES = {
    "up": Node(
        id="up", hostname="a", addr="10.0.0.1", api_port=1, status=NodeStatus(state="ready")
    ),
    "dead": Node(
        id="dead", hostname="b", addr="10.0.0.2", api_port=1, status=NodeStatus(state="down")
    ),
}


def orphan(node_id: str, state: TaskState) -> Versioned[Task]:
    task = Task(
        id="t1",
        service_id="gone",
        service_name="s_web",
        slot=1,
        spec=ServiceSpec(name="web", stack="s", image="img"),
        spec_version=1,
        spec_hash="h",
        node_id=node_id,
        status=TaskStatus(state=state),
    )
    return Versioned(task, 5)


def test_a_running_orphan_on_a_live_node_is_told_to_stop_first() -> None:
    (op,) = remove_orphan(orphan("up", TaskState.RUNNING), NODES)
    assert isinstance(op, Put) and op.expect == 5
    assert isinstance(op.obj, Task) and op.obj.desired_state == TaskState.REMOVE
    told = msgspec.structs.replace(op.obj, desired_state=TaskState.REMOVE)
    assert remove_orphan(Versioned(told, 6), NODES) == []  # waits for its agent


def test_orphans_no_agent_will_report_on_are_deleted_at_once() -> None:
    for vt in (
        orphan("up", TaskState.COMPLETE),  # ended
        orphan("", TaskState.PENDING),  # never placed
        orphan("up", TaskState.PENDING),  # a global task never placed
        orphan("dead", TaskState.RUNNING),  # its node is down
        orphan("removed", TaskState.RUNNING),  # its node was removed
    ):
        assert remove_orphan(vt, NODES) == [Delete(Task, "t1", 5)], vt.value
