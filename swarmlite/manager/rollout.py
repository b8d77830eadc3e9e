"""Rolling update of a service's tasks to its current spec, one batch per pass. Pure.

Follows ``update_config`` (``rollback_config`` while rolling back): ``parallelism``
slots at a time (0 = all), ``order`` stop-first (old stops, then the slot refills) or
start-first (new starts, old stops once the new one runs), ``delay`` between batches.
Whether the update failed, and what then, is the updater's call (``updater.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swarmlite.manager.updater import active_config
from swarmlite.spec.objects import Service, Task, TaskState

if TYPE_CHECKING:
    from swarmlite.manager.reconcile import Plan

SlotKey = tuple[int, str]


@dataclass(frozen=True)
class OutdatedSlot:
    key: SlotKey
    stale: Task  # live task of an older spec
    fresh: Task | None  # the slot's current-spec task, when start-first already made one


def rollout_step(
    service: Service,
    outdated: Sequence[OutdatedSlot],
    in_flight: int,
    last_done_at: float,
    now: float,
    plan: Plan,
    *,
    make_task: Callable[[Service, int, float, str], Task],
    shut_down: Callable[[Task], Task],
) -> None:
    cfg = active_config(service)
    waiting: list[OutdatedSlot] = []
    for slot in outdated:
        if slot.fresh is None:
            waiting.append(slot)
        elif slot.fresh.status.state == TaskState.RUNNING:
            plan.put(shut_down(slot.stale))
            plan.notes.append(
                f"slot {_name(slot.key)}: new task running, stopping old {slot.stale.id[:12]}"
            )
    if not waiting:
        return
    # parallelism 0: every outdated slot at once, whatever else is in flight.
    budget = len(waiting) if cfg.parallelism == 0 else max(0, cfg.parallelism - in_flight)
    if budget and cfg.delay > 0 and now < last_done_at + cfg.delay:
        plan.wake(last_done_at + cfg.delay)
        plan.notes.append(f"update: next batch in {last_done_at + cfg.delay - now:.1f}s")
        return
    for slot in waiting[:budget]:
        stale = slot.stale
        not_started = stale.status.state < TaskState.RUNNING
        if not_started or cfg.order == "stop-first":
            plan.put(shut_down(stale))
            if not_started:  # nothing serves yet: replace at once
                plan.create.append(make_task(service, slot.key[0], now, slot.key[1]))
            plan.notes.append(f"slot {_name(slot.key)}: updating {stale.id[:12]} ({cfg.order})")
        else:
            task = make_task(service, slot.key[0], now, slot.key[1])
            plan.create.append(task)
            plan.notes.append(
                f"slot {_name(slot.key)}: starting {task.id[:12]} before stopping {stale.id[:12]}"
            )
    if len(waiting) > budget:
        plan.notes.append(f"update: {len(waiting) - budget} slots wait for the next batch")


def _name(key: SlotKey) -> str:
    return str(key[0]) if key[0] else f"node {key[1][:12]}"
