"""What a task's container says about the task, and what the agent must do. Pure."""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping

import msgspec

from swarmlite.agent.containers import ContainerInfo
from swarmlite.spec.objects import Task, TaskState, TaskStatus

# After a task leaves the routes, how long before its stop signal: time for the mesh of
# every node to apply routes without it (they get them with the same assignments push).
DRAIN_DELAY = 1.0


class Action(enum.Enum):
    NONE = "none"
    START = "start"  # prepare, create and start a container
    STOP = "stop"  # stop the running container (desired state is past running)
    REPORT = "report"  # only report an observed change


def observed_status(task: Task, container: ContainerInfo, now: float | None = None) -> TaskStatus:
    """The task's observed status read off its container."""
    now = time.time() if now is None else now
    base = TaskStatus(
        container_id=container.id,
        addresses=container.addresses,
        remote_ports=container.host_ports,
        healthcheck=container.healthcheck,
        timestamp=now,
        state=TaskState.STARTING,
        message="starting",
    )
    if container.state == "running":
        # The image's own HEALTHCHECK counts too, as in Swarm (it reads the merged
        # config); the updater allows for its first check from ``status.healthcheck``.
        unchecked = container.health == "none" and not task.spec.has_healthcheck
        if unchecked or container.health == "healthy":
            return msgspec.structs.replace(base, state=TaskState.RUNNING, message="running")
        if container.health == "unhealthy":
            return msgspec.structs.replace(
                base, state=TaskState.FAILED, message="unhealthy", err="task: unhealthy container"
            )
        return msgspec.structs.replace(base, message="starting: waiting for healthcheck")
    stopping = task.desired_state > TaskState.RUNNING
    # Never started, and never will be: a "created" container of a task told to stop.
    if container.state in ("exited", "dead") or (container.state == "created" and stopping):
        code = container.exit_code
        ended_at = container.finished_at or now
        if stopping:
            return msgspec.structs.replace(
                base,
                state=TaskState.SHUTDOWN,
                message="shutdown",
                exit_code=code,
                timestamp=ended_at,
            )
        if code == 0:
            return msgspec.structs.replace(
                base, state=TaskState.COMPLETE, message="finished", exit_code=0, timestamp=ended_at
            )
        err = container.error or f"task: non-zero exit ({code})"
        return msgspec.structs.replace(
            base,
            state=TaskState.FAILED,
            message="failed",
            err=err,
            exit_code=code,
            timestamp=ended_at,
        )
    return base


def decide(task: Task, container: ContainerInfo | None, reported: TaskStatus) -> Action:
    """The next thing to do for one task, given its container and what was reported."""
    if task.desired_state <= TaskState.RUNNING:
        if reported.state.terminal:
            return Action.NONE  # the manager decides what comes next
        if container is None:
            # Once created (starting or later), a vanished container fails the task,
            # as in Swarm: the orchestrator replaces it; it never gets a second one.
            return Action.START if reported.state < TaskState.STARTING else Action.REPORT
        if container.state == "created":
            return Action.START  # never started (a daemon killed in between): create adopts it
        if container.state == "running" and container.health == "unhealthy":
            return Action.STOP
        return Action.REPORT
    if container is not None and container.state in ("running", "restarting", "paused"):
        return Action.STOP
    return Action.NONE if reported.state.terminal else Action.REPORT


def relisted(
    before: Mapping[str, ContainerInfo],
    now: Mapping[str, ContainerInfo],
    listed: Iterable[ContainerInfo],
) -> dict[str, ContainerInfo]:
    """Task id -> container after a fresh list of them. A container the runner recorded
    while the list was made (in ``now``, not as ``before``) and the list lacks was
    created after the list's snapshot: it is kept, not forgotten."""
    fresh = {k: c for k, c in now.items() if before.get(k) is not c}
    return {**fresh, **{c.task_id: c for c in listed if c.task_id}}


def drain_waits(
    grace: float, received_at: float, now: float, delay: float = DRAIN_DELAY
) -> tuple[float, float]:
    """How long to wait before stopping a routed task whose desired state is past running.

    Returns ``(pause, in_flight)``: pause until ``delay`` has passed since the agent
    received the shutdown (``received_at``), then wait up to ``in_flight`` s for this
    node's mesh to have nothing in flight to the task. Both fit in ``grace`` (the
    task's stop_grace_period) counted from ``received_at``: 0 means stop at once.
    """
    end = received_at + max(grace, 0.0)
    pause = max(0.0, min(received_at + delay, end) - now)
    return pause, max(0.0, end - now - pause)


def task_status(
    state: TaskState, message: str, *, err: str = "", container_id: str = ""
) -> TaskStatus:
    return TaskStatus(
        state=state, message=message, err=err, timestamp=time.time(), container_id=container_id
    )


def gone_status(task: Task) -> TaskStatus:
    """The status of a task without a container (never made, or removed)."""
    if task.desired_state > TaskState.RUNNING:
        return task_status(TaskState.SHUTDOWN, "shutdown")
    return task_status(TaskState.FAILED, "failed", err="task: container removed")


def same_status(a: TaskStatus, b: TaskStatus) -> bool:
    # Timestamps differ on every read; report only real changes.
    return msgspec.structs.replace(a, timestamp=0.0) == msgspec.structs.replace(b, timestamp=0.0)
