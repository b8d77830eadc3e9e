"""What a deploy shows while it waits for the stack to converge. Pure: values in, lines out.

    views = [service_view(summary, tasks, ...) for each service]
    verdict(views)            # Verdict("waiting" | "converged" | "failed", reason)
    table_lines(views)        # the block a terminal redraws in place
    event_lines(before, now)  # one line per change, when stdout is not a terminal
    redraw(height, lines)     # ANSI text that overwrites the previous block

A service has *converged* when its running tasks match the desired count, every task
meant to run carries its current version (the orchestrator has acted on it: a
scale-down's first look still counts the extra replicas) and no update or rollback
is in flight; a job-like service (restart_policy none or on-failure) whose
tasks all completed with exit 0 counts as converged too ("completed"). It has *failed*
when its update paused, rolled back or its rollback paused, or when tasks of its
current version (the service's, not the newest a task carries: the new version's
tasks may not exist yet) failed ``FAIL_AFTER`` times (fewer if its restart_policy
will not restart them that often). After a failure of its current version, a changed
service is *verifying* until its running tasks have run ``SETTLE`` seconds, as
``docker service update`` waits to see tasks stable: a task that crashes at once and
is restarted is running for a moment each time, and must not pass for converged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from swarmlite.api.models import ServiceSummary
from swarmlite.spec.objects import Task, TaskState

FAIL_AFTER = 3  # failed tasks of a service's new version that fail a deploy
SETTLE = 5.0  # seconds running tasks must last after a failure (Docker's monitor default)

Outcome = Literal["waiting", "converged", "failed"]

_UPDATE_STATES = {
    "updating": "updating",
    "paused": "update paused",
    "rollback_started": "rolling back",
    "rollback_completed": "rolled back",
    "rollback_paused": "rollback paused",
}


@dataclass(frozen=True)
class ServiceView:
    name: str
    running: int
    desired: int
    state: str  # creating, scaling, verifying, updating, update paused, ..., converged
    step: str = ""  # the current step, or the last error
    failed: str = ""  # why the deploy fails because of this service ("" if it does not)
    failures: tuple[tuple[str, str], ...] = ()  # (task id, "task web.3 failed: why")

    @property
    def done(self) -> bool:
        return self.state in ("converged", "completed")


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""


def service_view(
    summary: ServiceSummary,
    tasks: Sequence[Task],
    *,
    created: bool,
    changed: bool,
    first_update_state: str,
    running_for: Mapping[str, float] | None = None,
) -> ServiceView:
    """One service's progress. ``changed``: this deploy created or updated it (only then
    do its failed tasks fail the deploy); ``first_update_state``: its update state when
    the watch began (a rollback finished before this deploy is not this deploy's);
    ``running_for``: seconds each running task has been seen running."""
    version = summary.spec_version or max((t.spec_version for t in tasks), default=0)
    current = [t for t in tasks if t.spec_version == version]
    live = [
        t for t in tasks if t.desired_state == TaskState.RUNNING and not t.status.state.terminal
    ]
    failed_tasks = sorted(
        (t for t in current if t.status.state in (TaskState.FAILED, TaskState.REJECTED)),
        key=lambda t: (t.status.timestamp, t.id),
    )
    failures = tuple((t.id, f"task {t.name} failed: {_why(t)}") for t in failed_tasks)
    update = summary.update_state
    failed = ""
    if update in ("paused", "rollback_paused") or (
        update == "rollback_completed" and first_update_state != "rollback_completed"
    ):
        label, message = _UPDATE_STATES[update], summary.update_message or "no reason given"
        failed = message if message.startswith(label) else f"{label}: {message}"
    elif changed and failures and len(failures) >= _fail_after(current):
        failed = failures[-1][1]
        if len(failures) > 1:
            failed += f" ({len(failures)} failed tasks)"
    if update in _UPDATE_STATES and not (update == "rollback_completed" and not failed):
        state = _UPDATE_STATES[update]
    elif (
        summary.running >= summary.desired
        and not _starting(live)
        and not (summary.spec_version and any(t.spec_version != version for t in live))
    ):
        state = (
            "verifying" if changed and failures and _unsettled(live, running_for) else "converged"
        )
    elif _completed(current, summary.desired, live):
        state = "completed"
    else:
        state = "creating" if created else "scaling"
    if failed and state in ("creating", "scaling"):
        state = "failed"
    if state == "verifying":
        step = f"waiting {SETTLE:g} s to see the tasks stay up after {len(failures)} failed"
    else:
        step = failed or _step(update, summary.update_message, live, failures)
    return ServiceView(
        name=summary.name,
        running=summary.running,
        desired=summary.desired,
        state=state,
        step="" if state in ("converged", "completed") and not failed else step,
        failed=failed,
        failures=failures,
    )


def _why(task: Task) -> str:
    return task.status.err or task.status.message or task.status.state.label


def _fail_after(current: Sequence[Task]) -> int:
    """How many failures mean "this will not come up": fewer when restarts are limited."""
    if not current:
        return FAIL_AFTER
    policy = current[-1].spec.restart_policy
    if policy.condition == "none":
        return 1
    if policy.max_attempts is not None:
        return min(FAIL_AFTER, policy.max_attempts + 1)
    return FAIL_AFTER


def _unsettled(live: Sequence[Task], running_for: Mapping[str, float] | None) -> bool:
    """A running task not yet seen running for ``SETTLE`` seconds."""
    seen = running_for or {}
    return any(seen.get(t.id, 0.0) < SETTLE for t in live if t.status.state == TaskState.RUNNING)


def _starting(live: Sequence[Task]) -> bool:
    """A live task not running yet: converged only once it runs (or is gone)."""
    return any(t.status.state < TaskState.RUNNING for t in live)


def _completed(current: Sequence[Task], desired: int, live: Sequence[Task]) -> bool:
    if live or not current or current[-1].spec.restart_policy.condition == "any":
        return False
    slots = {(t.slot, t.node_id) for t in current if t.status.state == TaskState.COMPLETE}
    return len(slots) >= max(desired, 1)


def _step(
    update: str, message: str, live: Sequence[Task], failures: Sequence[tuple[str, str]]
) -> str:
    pending = Counter(
        t.pending_reason for t in live if t.status.state <= TaskState.PENDING and t.pending_reason
    )
    if pending:
        reason, count = pending.most_common(1)[0]
        return f"{count} pending: {reason}"
    if update in ("updating", "rollback_started") and message:
        return message
    starting = [t for t in live if t.status.state < TaskState.RUNNING and t.status.message]
    if starting:
        return f"{starting[0].name}: {starting[0].status.message}"
    if failures:
        return f"last error: {failures[-1][1]}"
    return ""


def verdict(views: Iterable[ServiceView]) -> Verdict:
    views = list(views)
    failed = [v for v in views if v.failed]
    if failed:
        return Verdict("failed", "; ".join(f"{v.name}: {v.failed}" for v in failed))
    if all(v.done for v in views):
        return Verdict("converged")
    return Verdict("waiting")


def table_lines(views: Sequence[ServiceView]) -> list[str]:
    """A fixed-width block: name, running/desired, state, step."""
    if not views:
        return []
    width = max(len(v.name) for v in views)
    rows = []
    for v in views:
        row = f"{v.name:<{width}}  {f'{v.running}/{v.desired}':>7}  {v.state:<15}  {v.step}"
        rows.append(row.rstrip())
    return rows


def event_lines(before: Mapping[str, ServiceView], views: Sequence[ServiceView]) -> list[str]:
    """One line per change since ``before`` (empty: the watch just began)."""
    lines: list[str] = []
    for v in views:
        old = before.get(v.name)
        known = {task_id for task_id, _ in old.failures} if old else set()
        for task_id, text in v.failures:
            if task_id not in known:
                lines.append(f"{v.name}: {text}")
        if old is None or (old.running, old.desired) != (v.running, v.desired):
            lines.append(f"{v.name}: {v.running}/{v.desired} running")
        if old is None or old.state != v.state:
            lines.append(f"{v.name}: {v.state}")
        fresh_step = v.step and (old is None or old.step != v.step)
        if fresh_step and not v.failed and not v.step.startswith("last error: "):
            lines.append(f"{v.name}: {v.step}")
    return lines


def redraw(height: int, lines: Sequence[str]) -> str:
    """Text that moves up over the previous block of ``height`` lines and writes ``lines``."""
    up = f"\x1b[{height}A" if height else ""
    body = "".join(f"\x1b[2K{line}\n" for line in lines)
    # A shorter block than before: clear what is left of the old one.
    rest = "".join("\x1b[2K\n" for _ in range(height - len(lines)))
    back = f"\x1b[{height - len(lines)}A" if height > len(lines) else ""
    return up + body + rest + back
