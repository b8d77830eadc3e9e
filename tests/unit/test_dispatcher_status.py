"""The dispatcher applies agents' status reports: compare-and-swap, only forward, and
read from the store when this manager's view has not seen the task yet."""

from __future__ import annotations

import asyncio
import contextlib
from types import MappingProxyType
from typing import Any

from swarmlite.api.agent_protocol import TaskUpdate
from swarmlite.errors import ConflictError
from swarmlite.manager.dispatcher import Dispatcher
from swarmlite.spec.objects import Task, TaskStatus
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Store, Versioned
from tests.unit.test_reconcile import S, service, task


class MemoryStore(Store):
    """Tasks by id; a write names the revision it read, or it conflicts."""

    def __init__(self) -> None:
        self.tasks: dict[str, Versioned[Task]] = {}
        self.revision = 0

    def put(self, t: Task) -> Versioned[Task]:
        self.revision += 1
        self.tasks[t.id] = Versioned(t, self.revision)
        return self.tasks[t.id]

    async def get(self, kind: type[Any], obj_id: str) -> Versioned[Any] | None:
        return self.tasks.get(obj_id)

    async def update(self, old: Versioned[Any], new: Any) -> Versioned[Any]:
        stored = self.tasks.get(new.id)
        if stored is None or stored.revision != old.revision:
            raise ConflictError(f"{new.id} changed since revision {old.revision}")
        return self.put(new)


class FixedCache:
    """A manager's view, as far as it has got."""

    def __init__(self, tasks: dict[str, Versioned[Task]]) -> None:
        self.state = ClusterState(tasks=MappingProxyType(dict(tasks)))

    def view(self) -> ClusterState:
        return self.state


def dispatcher(store: MemoryStore, cache: FixedCache) -> Dispatcher:
    return Dispatcher(store, cache, client=None, manager_id="m1")  # type: ignore[arg-type]


def running(at: float) -> TaskStatus:
    return TaskStatus(state=S.RUNNING, message="running", timestamp=at)


async def test_a_report_for_a_task_this_managers_view_lacks_is_applied() -> None:
    # The agent had the task from another manager; this one's watch is a little behind.
    store = MemoryStore()
    assigned = store.put(task(service(), 1, S.ASSIGNED))
    disp = dispatcher(store, FixedCache({}))
    applied = await disp.apply_status("n1", [TaskUpdate(assigned.value.id, running(2000.0))])
    assert applied == 1
    assert store.tasks[assigned.value.id].value.status.state == S.RUNNING


async def test_a_report_for_a_task_placed_here_after_the_view_is_applied() -> None:
    store = MemoryStore()
    pending = task(service(), 1, S.PENDING, node_id="")
    cache = FixedCache({pending.id: store.put(pending)})
    placed = store.put(task(service(), 1, S.ASSIGNED, node_id="n1"))
    disp = dispatcher(store, cache)
    assert await disp.apply_status("n1", [TaskUpdate(placed.value.id, running(2000.0))]) == 1


async def test_reports_for_deleted_tasks_or_other_nodes_are_dropped() -> None:
    store = MemoryStore()
    elsewhere = store.put(task(service(), 2, S.ASSIGNED, node_id="n2"))
    disp = dispatcher(store, FixedCache({}))
    updates = [TaskUpdate("gone", running(2000.0)), TaskUpdate(elsewhere.value.id, running(2000.0))]
    assert await disp.apply_status("n1", updates) == 0
    assert store.tasks[elsewhere.value.id] == elsewhere


async def test_a_late_report_of_an_earlier_state_is_dropped() -> None:
    store = MemoryStore()
    done = store.put(task(service(), 1, S.COMPLETE))
    disp = dispatcher(store, FixedCache({done.value.id: done}))
    assert await disp.apply_status("n1", [TaskUpdate(done.value.id, running(2000.0))]) == 0
    assert store.tasks[done.value.id] == done


async def test_a_late_report_of_the_same_state_does_not_overwrite_a_newer_one() -> None:
    # An old session's manager applies its report after the new session's: same state,
    # older news (say, the addresses before a network was attached).
    store = MemoryStore()
    newer = TaskStatus(
        state=S.RUNNING, message="running", addresses={"n": "10.0.0.2"}, timestamp=2001.0
    )
    now = store.put(task(service(), 1, S.ASSIGNED).reported(newer))
    disp = dispatcher(store, FixedCache({now.value.id: now}))
    assert await disp.apply_status("n1", [TaskUpdate(now.value.id, running(2000.0))]) == 0
    assert store.tasks[now.value.id] == now
    later = TaskStatus(state=S.RUNNING, message="running", timestamp=2002.0)
    assert await disp.apply_status("n1", [TaskUpdate(now.value.id, later)]) == 1


class FakeSocket:
    def __init__(self) -> None:
        self.closed = False
        self.close_message = b""

    async def close(self, *, message: bytes = b"") -> None:
        self.closed, self.close_message = True, message

    async def send_str(self, data: str) -> None:
        raise AssertionError("nothing is sent while the store is lost")


class Disconnected(FixedCache):
    connected = False


class Beating:
    def silent_for(self) -> float:
        return 0.0


async def test_a_wall_clock_step_does_not_close_sessions_while_the_store_is_briefly_lost() -> None:
    wall = iter([100.0] + [100.0 + 3600] * 100)  # NTP steps the clock an hour forward
    store = MemoryStore()
    disp = Dispatcher(
        store,
        Disconnected({}),  # type: ignore[arg-type]
        client=None,
        manager_id="m1",
        heartbeat_ttl=3,
        clock=lambda: next(wall),
    )
    ws = FakeSocket()
    loop = asyncio.create_task(disp._send_loop(ws, "n1", Beating()))  # type: ignore[arg-type]
    await asyncio.sleep(0.7)  # lost for well under the heartbeat's TTL
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    assert not ws.closed, ws.close_message
