"""Restart policy: whether and when a slot whose task ended gets a new task. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swarmlite.spec.objects import Task, TaskState
from swarmlite.spec.service import RestartPolicy


@dataclass(frozen=True)
class RestartVerdict:
    restart_at: float | None  # None: leave the slot as it is
    reason: str


def restart_verdict(
    policy: RestartPolicy, ended: Task, history: Sequence[Task], now: float
) -> RestartVerdict:
    state = ended.status.state
    if policy.condition == "none":
        return RestartVerdict(None, f"{state.label}; restart_policy none, not restarted")
    if policy.condition == "on-failure" and state == TaskState.COMPLETE:
        return RestartVerdict(None, "completed; restart_policy on-failure, not restarted")
    # When it ended: its last report; an unknown (0) time falls back to its creation,
    # never to ``now``, which would push the restart back on every pass.
    ended_at = ended.status.timestamp or ended.created_at
    if policy.max_attempts is not None:
        if policy.window > 0:
            # Only restarts inside the window that ends when this task ended count
            # (Swarm's semantics); measured from ``ended_at``, not ``now``, so the
            # verdict does not flip on whichever later pass happens to look.
            attempts = sum(
                1
                for t in history
                if t.attempt > 0 and ended_at - policy.window <= t.created_at <= ended_at
            )
        else:
            attempts = ended.attempt
        if attempts >= policy.max_attempts:
            return RestartVerdict(
                None, f"{state.label}; max_attempts {policy.max_attempts} reached, not restarted"
            )
    return RestartVerdict(
        ended_at + policy.delay, f"{state.label}: {ended.status.err or ended.status.message}"
    )
