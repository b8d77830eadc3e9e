"""The orchestrator loop: reconcile every service whenever the state changes.

Wakes on store changes (and on restart-delay deadlines), never on a polling timer.
Each pass logs one decision per service that is not converged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

import msgspec

from swarmlite.background import BackgroundLoop
from swarmlite.errors import StoreUnavailableError
from swarmlite.manager.reconcile import reconcile
from swarmlite.manager.updater import check_rollback_ports
from swarmlite.spec.objects import Node, Task, TaskState, node_lost
from swarmlite.store.cache import ClusterState, StateCache
from swarmlite.store.store import Delete, Put, Store, Versioned, commit_chunked

log = logging.getLogger("swarmlite.orchestrator")

# Seconds a loop lets further changes arrive before acting on one: a deploy of 10,000
# replicas lands as ~100 commits, better reconciled in a few passes than in 100.
COALESCE = 0.02


class Orchestrator(BackgroundLoop):
    name = "orchestrator"

    def __init__(
        self, store: Store, cache: StateCache, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self._store = store
        self._cache = cache
        self._clock = clock
        self.last_decisions: list[str] = []
        self._written = 0  # store revision of our last commit

    async def _run(self) -> None:
        seen = -1
        while True:
            # Never decide on a view older than our own last writes: a pass on it would
            # see freshly filled slots as empty and fill them twice.
            await self._cache.caught_up(self._written)
            seen = self._cache.version
            wake_at: float | None = None
            try:
                wake_at = await self.pass_once(self._cache.view())
            except StoreUnavailableError as exc:
                log.warning("orchestrator pass deferred: %s", exc)
                wake_at = self._clock() + 1.0
            except Exception:
                log.exception("orchestrator pass failed; retrying")
                wake_at = self._clock() + 1.0
            timeout = None if wake_at is None else max(0.05, wake_at - self._clock())
            if await self._cache.wait_changed(seen, timeout=timeout) != seen:
                # Let a burst of commits land, then reconcile them in one pass.
                await asyncio.sleep(COALESCE)

    async def pass_once(self, state: ClusterState) -> float | None:
        now = self._clock()
        nodes = {k: v.value for k, v in state.nodes.items()}
        limit = state.cluster.task_history_limit if state.cluster else 5
        by_service: dict[str, list[Versioned[Task]]] = defaultdict(list)
        for vt in state.tasks.values():
            by_service[vt.value.service_id].append(vt)
        ops: list[Put | Delete] = []
        wake_at: float | None = None
        decisions = []
        # Services as this pass leaves them: a rollback started here holds its ports.
        services = {vs.value.id: vs.value for vs in state.services.values()}
        for vs in state.services.values():
            service = vs.value
            versioned = by_service.pop(service.id, [])
            plan = reconcile(service, [v.value for v in versioned], nodes, now, history_limit=limit)
            check_rollback_ports(service, plan, services.values())
            revisions = {v.value.id: v.revision for v in versioned}
            ops.extend(Put(t, 0) for t in plan.create)
            ops.extend(Put(t, revisions[t.id]) for t in plan.updates.values())
            ops.extend(Delete(Task, t.id, revisions[t.id]) for t in plan.delete)
            if plan.service is not None:  # its update state changed (updater.py)
                ops.append(Put(plan.service, vs.revision))
                services[service.id] = plan.service
            if plan.wake_at is not None:
                wake_at = plan.wake_at if wake_at is None else min(wake_at, plan.wake_at)
            if not plan.empty:
                decisions.append(plan.decision(service.name))
        # Tasks whose service is gone: stop them, then forget them.
        for orphans in by_service.values():
            for vt in orphans:
                ops.extend(remove_orphan(vt, nodes))
        self.last_decisions = decisions
        for decision in decisions:
            log.info("%s", decision)
        if ops:
            self._written = max(self._written, await commit_chunked(self._store, ops))
        return wake_at


def remove_orphan(vt: Versioned[Task], nodes: Mapping[str, Node]) -> list[Put | Delete]:
    """A task whose service is gone: deleted once ended, else first told to stop. One
    that no agent will ever report on (never placed, its node removed or down) is
    deleted at once; a down node that comes back removes the container itself."""
    task = vt.value
    unheard = task.status.state < TaskState.ASSIGNED or node_lost(nodes.get(task.node_id))
    if task.status.state.terminal or unheard:
        return [Delete(Task, task.id, vt.revision)]
    if task.desired_state < TaskState.REMOVE:
        return [Put(msgspec.structs.replace(task, desired_state=TaskState.REMOVE), vt.revision)]
    return []
