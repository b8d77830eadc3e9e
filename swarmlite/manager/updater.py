"""The updater's judgement of a rolling update or rollback in progress. Pure.

``reconcile`` rolls slots batch by batch (``rollout.py``); this module decides, from the
tasks alone, whether the update in progress has failed and what to do about it:

- a *failure* is a task of the current spec version, created since the update
  started, that ended on its own (failed, rejected, or exited) before it ever ran or
  within ``monitor`` of when it first ran (``Task.running_at``; a later end is the
  restart policy's business, not the update's, as in Swarm), or that reached
  STARTING and is still not RUNNING (healthy) ``monitor`` seconds after its last report
  (plus, with a healthcheck, the service's or else the image's own as the agent
  reports it in ``status.healthcheck``, the time its first check needs: start_period +
  interval + timeout; else a 30 s default interval would fail every update with the
  5 s monitor);
- the update fails when failures exceed ``max_failure_ratio`` of the slots it updates
  (ratio 0: the first failure), as in Swarm, where the ratio is over the whole update
  so that it means the same at parallelism 1 as at parallelism 10;
- then ``failure_action``: ``pause`` (state paused / rollback_paused, no further
  batches, failed new tasks not restarted), ``continue`` (ignore), ``rollback`` (the
  previous spec becomes the spec under a new version, state rollback_started; the
  same machinery rolls it out with ``rollback_config``; a failing rollback pauses;
  a previous spec publishing a port another service has taken since is not rolled
  back into, the update pauses instead: ``check_rollback_ports``);
- the update completes once every slot runs the current version and the newest task
  has been running for ``monitor`` seconds.

The service value to write goes into ``plan.service``; the orchestrator commits it
with compare-and-swap together with the task operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from swarmlite.errors import SpecError
from swarmlite.manager.ports import check_published_ports
from swarmlite.spec.objects import Service, Task, TaskState, UpdateStatus
from swarmlite.spec.service import ServiceSpec, UpdateConfig

if TYPE_CHECKING:
    from swarmlite.manager.reconcile import Plan

ACTIVE = ("updating", "rollback_started")
HALTED = ("paused", "rollback_paused")


@dataclass(frozen=True)
class UpdateFailure:
    task: Task
    reason: str  # "task s_web.2 failed: image not found: foo:9"
    at: float


def rolling_back(service: Service) -> bool:
    return service.update_status.state.startswith("rollback")


def active_config(service: Service) -> UpdateConfig:
    """``rollback_config`` while rolling back, else ``update_config``."""
    spec = service.spec
    return spec.rollback_config if rolling_back(service) else spec.update_config


def is_current(service: Service, task: Task) -> bool:
    return task.spec_version == service.version or task.spec_hash == service.spec.task_hash()


def started_in_update(service: Service, task: Task) -> bool:
    """A current-spec task the update in progress (or halted) created."""
    return (
        service.update_status.state in ACTIVE + HALTED
        and task.created_at >= service.update_status.started_at
        and is_current(service, task)
    )


def update_failures(
    service: Service, tasks: Sequence[Task], now: float
) -> tuple[list[UpdateFailure], float | None]:
    """Failures of the update in progress, oldest first, and when a task still
    starting would time out (to wake the orchestrator then)."""
    if service.update_status.state not in ACTIVE:
        return [], None
    monitor = active_config(service).monitor
    failures: list[UpdateFailure] = []
    deadline: float | None = None
    for task in tasks:
        if not started_in_update(service, task) or task.spec_version != service.version:
            continue
        status = task.status
        if status.state.terminal and not _within_monitor(task, monitor):
            continue
        if status.state in (TaskState.FAILED, TaskState.REJECTED):
            why = status.err or status.message or status.state.label
            failures.append(
                UpdateFailure(task, f"task {task.name} failed: {why}", status.timestamp)
            )
        elif status.state == TaskState.COMPLETE:  # a task told to stop reports SHUTDOWN
            code = status.exit_code if status.exit_code is not None else 0
            failures.append(
                UpdateFailure(task, f"task {task.name} exited with code {code}", status.timestamp)
            )
        elif (
            TaskState.STARTING <= status.state < TaskState.RUNNING
            and task.desired_state <= TaskState.RUNNING
        ):
            window = monitor + _first_check(task)
            due = status.timestamp + window
            if now >= due:
                why = status.message or status.state.label
                failures.append(
                    UpdateFailure(
                        task, f"task {task.name} not running within {window:g}s ({why})", due
                    )
                )
            else:
                deadline = due if deadline is None else min(deadline, due)
    failures.sort(key=lambda f: f.at)
    return failures, deadline


def _within_monitor(task: Task, monitor: float) -> bool:
    """Whether an ended task ended before it ever ran or within ``monitor`` of that."""
    return not task.running_at or task.status.timestamp - task.running_at <= monitor


def _first_check(task: Task) -> float:
    """Seconds before a task's healthcheck can first have passed (0 without one): the
    service's, or else the image's own as the agent reported it."""
    check = task.spec.healthcheck
    if check is None or check.inherits:  # the container's merged one, as reported
        check = task.status.healthcheck
    if check is None or check.disabled:
        return 0.0
    return check.start_period + check.interval + check.timeout


def judge_update(
    service: Service, tasks: Sequence[Task], slots: int, now: float, plan: Plan
) -> bool:
    """Decide on the update in progress; True when no further batch may start.

    Writes the new update state into ``plan.service`` when it changes.
    """
    state = service.update_status.state
    if state in HALTED:
        plan.notes.append(f"{_what(service)} paused: {_reason(service)}")
        return True
    failures, deadline = update_failures(service, tasks, now)
    if deadline is not None:
        plan.wake(deadline)
    cfg = active_config(service)
    if not failures or cfg.failure_action == "continue":
        if failures:
            plan.notes.append(
                f"{_what(service)}: {len(failures)} failed tasks ignored (failure_action continue)"
            )
        return False
    if len(failures) <= cfg.max_failure_ratio * max(1, slots):
        plan.notes.append(
            f"{_what(service)}: {len(failures)} of {slots} tasks failed, within "
            f"max_failure_ratio {cfg.max_failure_ratio:g}"
        )
        return False
    first = failures[0].reason
    if cfg.failure_action == "rollback" and state == "updating" and service.previous_spec:
        plan.service = begin_rollback(service, now, f"update failed: {first}")
        plan.notes.append(
            f"update failed ({first}): rolling back to the previous spec "
            f"as version {plan.service.version}"
        )
        return True
    message = f"{_what(service)} paused: {first}"
    plan.service = _paused(service, message)
    plan.notes.append(message)
    return True


def check_rollback_ports(service: Service, plan: Plan, services: Iterable[Service]) -> None:
    """Refuse the automatic rollback ``plan`` starts for ``service`` when the previous
    spec publishes a port another of ``services`` holds by now, as deploy and ``service
    rollback`` would (``check_published_ports``): the update pauses instead, its message
    naming the port and the service holding it. ``services`` may include ``service``;
    it is read only when a rollback starts."""
    rollback = plan.service
    if rollback is None or service.update_status.state != "updating" or not rolling_back(rollback):
        return
    try:
        check_published_ports([rollback.spec], (s for s in services if s.id != service.id))
    except SpecError as err:
        why = rollback.update_status.message.removeprefix("rollback started: ")
        message = f"update paused: rollback refused: {err} ({why})"
        plan.service = _paused(service, message)
        plan.notes[-1:] = [message]  # in place of judge_update's "rolling back" note


def finish_update(
    service: Service, tasks: Sequence[Task], slots: int, now: float, plan: Plan
) -> None:
    """Mark the update completed once every slot runs the current version and the
    newest task has run for ``monitor`` seconds since it first ran; call only when the
    plan does nothing."""
    status = service.update_status
    if status.state not in ACTIVE:
        return
    live = [t for t in tasks if t.desired_state == TaskState.RUNNING]
    if len(live) != slots or any(
        not is_current(service, t) or t.status.state != TaskState.RUNNING for t in live
    ):
        return
    # From when each first ran: a later running report (an agent that reconnected)
    # does not restart its watch.
    newest = max(
        (t.running_at or t.status.timestamp for t in live if t.created_at >= status.started_at),
        default=0.0,
    )
    monitor = active_config(service).monitor
    if now < newest + monitor:
        plan.wake(newest + monitor)
        plan.notes.append(f"{_what(service)}: watching new tasks for {newest + monitor - now:.1f}s")
        return
    message = f"{_what(service)} completed"
    plan.service = msgspec.structs.replace(
        service,
        update_status=UpdateStatus(
            state="rollback_completed" if rolling_back(service) else "completed",
            message=message,
            started_at=status.started_at,
            completed_at=now,
        ),
    )
    plan.notes.append(message)


def begin_update(service: Service, spec: ServiceSpec, now: float) -> Service:
    """``service`` changed to ``spec``: a new version, the old spec kept for rollback,
    and an update in progress when its containers change."""
    reshapes = spec.task_hash() != service.spec.task_hash()
    return msgspec.structs.replace(
        service,
        spec=spec,
        version=service.version + 1,
        previous_spec=service.spec,
        updated_at=now,
        update_status=UpdateStatus(state="updating", message="update in progress", started_at=now)
        if reshapes
        else service.update_status,
    )


def begin_rollback(service: Service, now: float, why: str) -> Service:
    """The previous spec becomes the spec (and the current one the previous)."""
    assert service.previous_spec is not None
    return msgspec.structs.replace(
        service,
        spec=service.previous_spec,
        previous_spec=service.spec,
        version=service.version + 1,
        updated_at=now,
        update_status=UpdateStatus(
            state="rollback_started", message=f"rollback started: {why}", started_at=now
        ),
    )


def _paused(service: Service, message: str) -> Service:
    state = service.update_status.state
    paused = "rollback_paused" if state == "rollback_started" else "paused"
    return msgspec.structs.replace(
        service,
        update_status=msgspec.structs.replace(service.update_status, state=paused, message=message),
    )


def _what(service: Service) -> str:
    return "rollback" if rolling_back(service) else "update"


def _reason(service: Service) -> str:
    message = service.update_status.message
    return message.split("paused: ", 1)[-1]
