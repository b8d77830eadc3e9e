"""Reconcile one service's desired state against its tasks: pure, level-triggered.

``reconcile(service, tasks, nodes, now)`` looks at everything and returns a ``Plan``:
tasks to create, tasks to rewrite (desired state, spec version), tasks to delete, the
service itself when its update state changes (``updater.py``), a one-line decision for
the log, and when to look again (restart delays, batch delays, update monitoring).
"""

from __future__ import annotations

import base64
import secrets
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from swarmlite.errors import SpecError
from swarmlite.manager.restart import next_restart_times, restart_verdict
from swarmlite.manager.rollout import OutdatedSlot, rollout_step
from swarmlite.manager.slots import (
    SlotKey,
    end_unwanted_slots,
    fail_tasks_on_lost_nodes,
    paused_slots,
    shut_down,
    shut_down_on_unfit_nodes,
    slot_key,
    slot_name,
    wanted_slots,
)
from swarmlite.manager.updater import (
    ACTIVE,
    active_config,
    finish_update,
    judge_update,
    started_in_update,
)
from swarmlite.spec.constraints import parse_constraints
from swarmlite.spec.objects import Node, Service, Task, TaskState, TaskStatus


def new_id(length: int = 25) -> str:
    """``length`` characters of a-z and 2-7 (base32), 5 random bits each: one call for
    the randomness, not one per character (10,000 tasks cost 0.2 s that way)."""
    raw = secrets.token_bytes((length * 5 + 7) // 8)
    return base64.b32encode(raw).decode("ascii").lower()[:length]


@dataclass
class Plan:
    create: list[Task] = field(default_factory=list)
    updates: dict[str, Task] = field(default_factory=dict)  # same id, new content
    delete: list[Task] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wake_at: float | None = None
    service: Service | None = None  # the service with a new update state, to write

    @property
    def empty(self) -> bool:
        return not (self.create or self.updates or self.delete or self.service)

    def put(self, task: Task) -> None:
        self.updates[task.id] = task

    def wake(self, at: float) -> None:
        self.wake_at = at if self.wake_at is None else min(self.wake_at, at)

    def decision(self, service_name: str) -> str:
        """One line for the log: what this pass did, or what it is waiting for."""
        if self.empty and not self.notes:
            return f"service={service_name} converged"
        return f"service={service_name} " + "; ".join(self.notes)


def make_task(
    service: Service,
    slot: int,
    now: float,
    *,
    node_id: str = "",
    attempt: int = 0,
    restart_times: tuple[float, ...] = (),
) -> Task:
    return Task(
        id=new_id(),
        service_id=service.id,
        service_name=service.name,
        slot=slot,
        spec=service.spec,
        spec_version=service.version,
        spec_hash=service.spec.task_hash(),
        node_id=node_id,
        desired_state=TaskState.RUNNING,
        status=TaskStatus(state=TaskState.NEW, message="created", timestamp=now),
        created_at=now,
        attempt=attempt,
        restart_times=restart_times,
    )


def reconcile(
    service: Service,
    tasks: Sequence[Task],
    nodes: Mapping[str, Node],
    now: float,
    *,
    history_limit: int = 5,
) -> Plan:
    plan = Plan()
    stored = {t.id: t for t in tasks}
    by_slot: dict[tuple[int, str], list[Task]] = defaultdict(list)
    for task in tasks:
        by_slot[slot_key(task)].append(task)
    for slot_tasks in by_slot.values():
        slot_tasks.sort(key=lambda t: t.created_at)

    # From here on a task on a lost node is seen as failed (in memory only).
    fail_tasks_on_lost_nodes(by_slot.values(), nodes, plan)
    if service.spec.mode == "replicated":
        shut_down_on_unfit_nodes(by_slot.values(), nodes, plan)
    wanted = wanted_slots(service, nodes, by_slot)
    paused = paused_slots(service, nodes) & wanted  # their tasks are left as they are
    settled: set[SlotKey] = set()  # slots an update need not wait for
    # Has the update in progress failed? Then no further batch (and maybe a rollback).
    verdict = Plan()
    halted = judge_update(service, tasks, len(wanted), now, verdict)
    if verdict.service is not None:
        return verdict  # paused or rolling back: write that alone, act on it next pass
    plan.notes.extend(verdict.notes)
    if verdict.wake_at is not None:
        plan.wake(verdict.wake_at)
    end_unwanted_slots(service, by_slot, wanted, nodes, plan)

    outdated: list[OutdatedSlot] = []
    in_flight = 0
    last_done_at = 0.0
    task_hash = service.spec.task_hash()
    fits = _placement_only(service, nodes)
    for key in sorted(wanted):
        slot_tasks = by_slot.get(key, [])
        live = [t for t in slot_tasks if t.desired_state <= TaskState.RUNNING]
        current = [
            t
            for t in live
            if t.spec_version == service.version or t.spec_hash == task_hash or fits(t)
        ]
        stale = [t for t in live if t not in current]
        if len(current) > 1:
            # Two live tasks of the same spec in one slot (a pass on a stale view made
            # one twice): keep the one furthest along, stop the others.
            keep = max(
                current, key=lambda t: (not t.status.state.terminal, t.status.state, t.created_at)
            )
            for extra in current:
                if extra is not keep:
                    plan.put(shut_down(extra))
                    plan.notes.append(f"slot {slot_name(key)}: duplicate {extra.id[:12]} shut down")
            live = [t for t in live if t is keep or t in stale]
            current = [keep]
        for task in current:
            if task.spec_version != service.version:
                # Same container spec under a new version (replicas, labels): no restart.
                plan.put(
                    msgspec.structs.replace(task, spec=service.spec, spec_version=service.version)
                )
                plan.notes.append(
                    f"slot {slot_name(key)}: {task.id[:12]} moved to spec version "
                    f"{service.version} in place"
                )
            elif task.status.state == TaskState.RUNNING:
                last_done_at = max(last_done_at, task.status.timestamp)
        if not live:
            in_flight += 1
            _fill_slot(service, key, slot_tasks, now, plan)
            continue
        newest = max(live, key=lambda t: t.created_at)
        if newest.status.state.terminal:
            if halted and started_in_update(service, newest):
                # The updater owns this failure: no restart while paused or rolling back.
                plan.notes.append(
                    f"slot {slot_name(key)}: {newest.id[:12]} of the update "
                    f"{newest.status.state.label}, not restarted while halted"
                )
                continue
            if service.update_status.state in ACTIVE and not halted and newest not in current:
                _replace_stale(service, key, newest, now, plan)
                in_flight += 1
            elif _restart_slot(service, key, slot_tasks, newest, now, plan):
                in_flight += 1
            else:  # given up by its restart policy: holds no batch back, nor completion
                settled.add(key)
            continue
        if current and current[-1].status.state < TaskState.RUNNING:
            in_flight += 1
        if stale and key not in paused:
            outdated.append(OutdatedSlot(key, stale[0], current[-1] if current else None))

    if outdated and halted:
        plan.notes.append(f"{len(outdated)} slots left on the old spec")
    elif outdated:
        rollout_step(
            service,
            outdated,
            in_flight,
            last_done_at,
            now,
            plan,
            make_task=lambda svc, slot, at, node: make_task(svc, slot, at, node_id=node),
            shut_down=shut_down,
        )
    if not halted and plan.empty:
        settled |= paused
        rolled = [t for t in tasks if slot_key(t) not in settled]
        finish_update(service, rolled, len(wanted - settled), now, plan)
    _prune_history(by_slot.values(), history_limit, plan)
    # Managers write desired state only: never let a plan rewrite an observed status,
    # except to end a task no node ever took (no agent will report on it).
    for task_id, task in plan.updates.items():
        if task.status != stored[task_id].status and not _ended_unplaced(stored[task_id], task):
            plan.updates[task_id] = msgspec.structs.replace(task, status=stored[task_id].status)
    plan.delete = [stored[t.id] for t in plan.delete]
    return plan


def _placement_only(service: Service, nodes: Mapping[str, Node]) -> Callable[[Task], bool]:
    """Whether a task of an older spec differs from the service's in placement alone and
    its node meets the current constraints: then it moves to the new version in place,
    not restarted, as in Swarm (IsTaskDirtyPlacementConstraintsOnly)."""
    placement, task_hash = service.spec.placement, service.spec.task_hash()
    try:
        constraints = parse_constraints(placement.constraints)
    except SpecError:
        return lambda task: False
    same: dict[int, bool] = {}  # spec version -> equal but for placement

    def fits(task: Task) -> bool:
        if task.spec.placement == placement:
            return False
        if task.spec_version not in same:
            spec = msgspec.structs.replace(task.spec, placement=placement)
            same[task.spec_version] = spec.task_hash() == task_hash
        node = nodes.get(task.node_id)
        return same[task.spec_version] and (
            not task.node_id or (node is not None and all(c.matches(node) for c in constraints))
        )

    return fits


def _ended_unplaced(old: Task, new: Task) -> bool:
    return old.status.state < TaskState.ASSIGNED and new.status.state == TaskState.SHUTDOWN


def _fill_slot(
    service: Service, key: tuple[int, str], history: list[Task], now: float, plan: Plan
) -> None:
    # Every task here was shut down on purpose (update, scale, drain): refill at once,
    # except that stop-first waits for the old task to have stopped.
    last = history[-1] if history else None
    if (
        last is not None
        and not last.status.state.terminal
        and active_config(service).order == "stop-first"
        and last.spec_version != service.version
    ):
        plan.notes.append(f"slot {slot_name(key)}: waiting for {last.id[:12]} to stop")
        return
    # Restarts count per spec: a new spec (an update) starts from none, as in Swarm.
    same = last if last is not None and last.spec_version == service.version else None
    attempt, times = (same.attempt, same.restart_times) if same else (0, ())
    task = make_task(service, key[0], now, node_id=key[1], attempt=attempt, restart_times=times)
    plan.create.append(task)
    plan.notes.append(f"slot {slot_name(key)}: created {task.id[:12]}")


def _replace_stale(
    service: Service, key: tuple[int, str], ended: Task, now: float, plan: Plan
) -> None:
    # An update (or rollback) is in progress and this slot's task of an older spec has
    # ended: the slot is down anyway, so it gets the current spec now, no restart delay.
    plan.put(shut_down(ended))
    task = make_task(service, key[0], now, node_id=key[1])
    plan.create.append(task)
    plan.notes.append(
        f"slot {slot_name(key)}: {ended.id[:12]} of an older spec {ended.status.state.label}, "
        f"replaced by {task.id[:12]}"
    )


def _restart_slot(
    service: Service,
    key: tuple[int, str],
    history: list[Task],
    ended: Task,
    now: float,
    plan: Plan,
) -> bool:
    """Restart the slot of ``ended`` per the restart policy; False when it never will."""
    verdict = restart_verdict(service.spec.restart_policy, ended, history, now)
    if verdict.restart_at is None:
        plan.notes.append(f"slot {slot_name(key)}: {verdict.reason}")
        return False
    if verdict.restart_at > now:
        plan.wake(verdict.restart_at)
        plan.notes.append(
            f"slot {slot_name(key)}: restart in {verdict.restart_at - now:.1f}s ({verdict.reason})"
        )
        return True
    plan.put(shut_down(ended))
    task = make_task(
        service,
        key[0],
        now,
        node_id=key[1],
        attempt=ended.attempt + 1,
        restart_times=next_restart_times(service.spec.restart_policy, ended, now),
    )
    plan.create.append(task)
    plan.notes.append(
        f"slot {slot_name(key)}: {ended.id[:12]} {ended.status.state.label}, "
        f"restarted as {task.id[:12]} (attempt {task.attempt})"
    )
    return True


def _prune_history(groups: Iterable[list[Task]], limit: int, plan: Plan) -> None:
    """Keep at most ``limit`` tasks per slot, the live ones included (as Swarm's
    task_history_retention_limit): the oldest finished ones go first."""
    touched = set(plan.updates) | {t.id for t in plan.delete}
    deleted = {t.id for t in plan.delete}
    for slot_tasks in groups:
        finished = [
            t
            for t in slot_tasks
            if t.desired_state > TaskState.RUNNING
            and t.status.state.terminal
            and t.id not in touched
        ]
        kept = sum(1 for t in slot_tasks if t.id not in deleted)
        for task in finished[: max(0, kept - limit)]:
            plan.delete.append(task)
            plan.notes.append(f"pruned {task.id[:12]} (history limit {limit})")
