"""A service's slots: which it wants, and what drains, lost nodes and scale-downs do to
their tasks. Pure; ``reconcile`` calls these at the start of every pass.

A replicated service's slots are 1..N; a global service's slot is its node (slot 0
and the node id). A paused node takes no new task and keeps the one it has, left as
it is, as in Swarm: not restarted once it ends, not rolled by an update.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import msgspec

from swarmlite.errors import SpecError
from swarmlite.spec.constraints import parse_constraints
from swarmlite.spec.objects import Node, Service, Task, TaskState, node_lost

if TYPE_CHECKING:
    from swarmlite.manager.reconcile import Plan

SlotKey = tuple[int, str]


def shut_down(task: Task) -> Task:
    if task.status.state < TaskState.ASSIGNED:
        # Never placed (a global task may name its node before), so no agent ever had
        # it and none will report it stopped: it ends here.
        return msgspec.structs.replace(
            task,
            desired_state=TaskState.SHUTDOWN,
            status=msgspec.structs.replace(
                task.status, state=TaskState.SHUTDOWN, message="shut down before it was placed"
            ),
        )
    return msgspec.structs.replace(task, desired_state=TaskState.SHUTDOWN)


def slot_key(task: Task) -> SlotKey:
    return (task.slot, task.node_id if task.slot == 0 else "")


def slot_name(key: SlotKey) -> str:
    return str(key[0]) if key[0] else f"node {key[1][:12]}"


def wanted_slots(
    service: Service, nodes: Mapping[str, Node], by_slot: Mapping[SlotKey, list[Task]]
) -> set[SlotKey]:
    """Replicated: slots 1..N. Global: every active node that is not down and meets the
    placement constraints (as in Swarm, no task elsewhere), and every paused one that
    still has a task running or starting there (pause keeps it, takes no new one)."""
    if service.spec.mode == "replicated":
        return {(s, "") for s in range(1, service.spec.replicas + 1)}
    try:
        constraints = parse_constraints(service.spec.placement.constraints)
    except SpecError:
        constraints = ()  # the scheduler leaves its tasks pending, saying why
    wanted = set()
    for n in nodes.values():
        if n.status.state == "down" or n.availability == "drain":
            continue
        if not all(c.matches(n) for c in constraints):
            continue
        key = (0, n.id)
        if n.availability == "pause" and not any(
            t.desired_state <= TaskState.RUNNING and not t.status.state.terminal
            for t in by_slot.get(key, ())
        ):
            continue  # nothing running there: nothing to keep, and no new task
        wanted.add(key)
    return wanted


def end_unwanted_slots(
    service: Service,
    by_slot: Mapping[SlotKey, list[Task]],
    wanted: set[SlotKey],
    nodes: Mapping[str, Node],
    plan: Plan,
) -> None:
    """Slots no longer wanted (scale down, node drained): shut their live tasks down.
    A slot gone for good (scaled away, its global node removed) keeps no history: its
    tasks are deleted once ended, as Swarm's task reaper does."""
    for key, slot_tasks in by_slot.items():
        if key in wanted:
            continue
        gone = service.spec.mode == "replicated" or key[1] not in nodes
        for task in slot_tasks:
            if task.desired_state <= TaskState.RUNNING:
                plan.put(shut_down(task))
                plan.notes.append(f"slot {slot_name(key)} removed: shutting down {task.id[:12]}")
            elif gone and task.status.state.terminal:
                plan.delete.append(task)
                plan.notes.append(f"slot {slot_name(key)} removed: deleted {task.id[:12]}")


def fail_tasks_on_lost_nodes(
    groups: Iterable[list[Task]], nodes: Mapping[str, Node], plan: Plan
) -> None:
    """See every unfinished task on a down or removed node as failed, in this pass only.

    Its agent will never report again: a live one is replaced per the restart policy
    (the delay counts from its last report), a stopping one counts as stopped.
    """
    for slot_tasks in groups:
        for i, task in enumerate(slot_tasks):
            if not task.node_id or task.status.state.terminal:
                continue
            if task.status.state < TaskState.ASSIGNED:
                continue  # never placed (a global task names its node early): not lost
            node = nodes.get(task.node_id)
            if not node_lost(node):
                continue
            why = "node removed" if node is None else "node down"
            slot_tasks[i] = msgspec.structs.replace(
                task,
                status=msgspec.structs.replace(
                    task.status, state=TaskState.FAILED, err=why, message=why
                ),
            )
            if task.desired_state <= TaskState.RUNNING:
                plan.notes.append(f"task {task.id[:12]} lost with its node ({why})")


def shut_down_on_unfit_nodes(
    groups: Iterable[list[Task]], nodes: Mapping[str, Node], plan: Plan
) -> None:
    """Shut down every unfinished live task on a drained node, or on an active one that
    no longer meets the task's placement constraints (its labels changed: Swarm's
    constraint enforcer). Replicated services; a paused node's tasks are left alone.

    In this pass the slot then has no live task, so it is refilled at once and the
    scheduler, which places nothing on a drained or unfit node, puts it elsewhere.
    """
    for slot_tasks in groups:
        for i, task in enumerate(slot_tasks):
            node = nodes.get(task.node_id)
            if node is None or task.status.state.terminal or task.desired_state > TaskState.RUNNING:
                continue
            why = "drained" if node.availability == "drain" else _unmet(task, node)
            if not why:
                continue
            slot_tasks[i] = shut_down(task)
            plan.put(slot_tasks[i])
            plan.notes.append(
                f"slot {task.slot}: node {task.node_id[:12]} {why}, shutting down {task.id[:12]}"
            )


def _unmet(task: Task, node: Node) -> str:
    """Why an active ``node`` no longer fits ``task`` ("no longer meets C"), or ""."""
    if node.availability != "active" or not task.spec.placement.constraints:
        return ""
    try:
        constraints = parse_constraints(task.spec.placement.constraints)
    except SpecError:
        return ""  # never placed by the scheduler, which says why
    failed = next((c for c in constraints if not c.matches(node)), None)
    return f"no longer meets {failed.text}" if failed else ""


def paused_slots(service: Service, nodes: Mapping[str, Node]) -> set[SlotKey]:
    """A global service's slots on paused nodes: their tasks are left as they are."""
    if service.spec.mode != "global":
        return set()
    return {(0, n.id) for n in nodes.values() if n.availability == "pause"}
