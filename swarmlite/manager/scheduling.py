"""The scheduler loop: place new and pending tasks whenever the state changes.

The placement logic itself is pure (manager/scheduler); this loop only selects the
tasks to place, commits the placements and records why the rest stay pending. Tasks
of a service whose ``depends_on`` does not hold yet (manager/dependencies) are not
offered to the scheduler at all: they stay PENDING with "waiting for db: ...".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec

from swarmlite.background import BackgroundLoop
from swarmlite.errors import StoreUnavailableError
from swarmlite.manager.dependencies import blocked
from swarmlite.manager.orchestrator import COALESCE
from swarmlite.manager.scheduler import schedule
from swarmlite.manager.scheduler.nodeinfo import holds_node
from swarmlite.manager.scheduler.pipeline import mounted_volumes
from swarmlite.spec.objects import Task, TaskState
from swarmlite.store.cache import ClusterState, StateCache
from swarmlite.store.store import Put, Store, commit_chunked

log = logging.getLogger("swarmlite.scheduler")


class SchedulerLoop(BackgroundLoop):
    name = "scheduler"

    def __init__(
        self, store: Store, cache: StateCache, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self._store = store
        self._cache = cache
        self._clock = clock
        self.last_decision = ""
        self._written = 0  # store revision of our last commit

    async def _run(self) -> None:
        while True:
            # Place on a view that includes our own last placements (no double booking).
            await self._cache.caught_up(self._written)
            seen = self._cache.version
            retry: float | None = None
            try:
                await self.pass_once(self._cache.view())
            except StoreUnavailableError as exc:
                log.warning("scheduling deferred: %s", exc)
                retry = 1.0
            except Exception:
                log.exception("scheduling pass failed; retrying")
                retry = 1.0
            if await self._cache.wait_changed(seen, timeout=retry) != seen:
                await asyncio.sleep(COALESCE)  # place a burst of new tasks in one pass

    async def pass_once(self, state: ClusterState) -> str:
        pending = []
        assigned = []
        revisions = {}
        for vt in state.tasks.values():
            task = vt.value
            if holds_node(task):
                assigned.append(task)  # stopping ones too: they hold their ports until stopped
            elif task.desired_state == TaskState.RUNNING and task.status.state <= TaskState.PENDING:
                pending.append(task)
                revisions[task.id] = vt.revision
        if not pending:
            return ""
        now = self._clock()
        pending, ops, waiting = _hold_blocked(state, pending, revisions, now)
        if not pending:
            if ops:
                self._written = max(self._written, await commit_chunked(self._store, ops))
            self.last_decision = waiting
            return waiting
        pending.sort(key=lambda t: (t.created_at, t.id))
        plan = schedule(
            pending,
            [v.value for v in state.nodes.values()],
            assigned,
            [v.value for v in state.volumes.values()],
        )
        by_id = {t.id: t for t in pending}
        pins = _volume_pins(state, [(by_id[p.task_id], p.node_id) for p in plan.placements])
        if pins:
            # Named volumes are node-local: the first placement decides where one lives.
            self._written = max(self._written, await commit_chunked(self._store, pins))
        for placement in plan.placements:
            task = by_id[placement.task_id]
            placed = msgspec.structs.replace(
                task,
                node_id=placement.node_id,
                pending_reason="",
                status=msgspec.structs.replace(
                    task.status, state=TaskState.ASSIGNED, message="assigned", timestamp=now
                ),
            )
            ops.append(Put(placed, revisions[task.id]))
        for unplaced in plan.unplaced:
            task = by_id[unplaced.task_id]
            if task.status.state == TaskState.PENDING and task.pending_reason == unplaced.reason:
                continue
            held = msgspec.structs.replace(
                task,
                pending_reason=unplaced.reason,
                status=msgspec.structs.replace(
                    task.status, state=TaskState.PENDING, message="pending", timestamp=now
                ),
            )
            ops.append(Put(held, revisions[task.id]))
        if ops:
            log.info("%s", plan.decision)
            self._written = max(self._written, await commit_chunked(self._store, ops))
        self.last_decision = plan.decision
        return plan.decision


def _hold_blocked(
    state: ClusterState, pending: list[Task], revisions: dict[str, int], now: float
) -> tuple[list[Task], list[Put], str]:
    """Pending tasks whose dependencies hold, the writes recording why the rest wait,
    and a decision line for the held ones ("" when none changed)."""
    free: list[Task] = []
    ops: list[Put] = []
    reasons: dict[tuple[str, int], str | None] = {}
    said: set[str] = set()
    for task in pending:
        key = (task.service_id, task.spec_version)
        if key not in reasons:
            reasons[key] = blocked(task.spec, state)
        reason = reasons[key]
        if reason is None:
            free.append(task)
            continue
        if task.status.state == TaskState.PENDING and task.pending_reason == reason:
            continue
        held = msgspec.structs.replace(
            task,
            pending_reason=reason,
            status=msgspec.structs.replace(
                task.status, state=TaskState.PENDING, message="pending", timestamp=now
            ),
        )
        ops.append(Put(held, revisions[task.id]))
        said.add(reason)
    decision = f"held {len(ops)} tasks: {'; '.join(sorted(said))}" if ops else ""
    if decision:
        log.info("%s", decision)
    return free, ops, decision


def _volume_pins(state: ClusterState, placed: list[tuple[Task, str]]) -> list[Put]:
    """A Put recording the node of every volume a placement created there: the volumes
    the planner claimed in this pass (``mounted_volumes``, stack or external name)."""
    volumes = {v.value.name: v.value for v in state.volumes.values()}
    revisions = {v.value.name: v.revision for v in state.volumes.values()}
    pins: dict[str, Put] = {}
    for task, node_id in placed:
        if task.spec.mode == "global":
            continue  # each node's task has its own copy: a global task pins no volume
        for _, found in mounted_volumes(task, volumes):
            if found.node_id or found.name in pins:
                continue
            pinned = msgspec.structs.replace(found, node_id=node_id)
            pins[found.name] = Put(pinned, revisions[found.name])
    return list(pins.values())
