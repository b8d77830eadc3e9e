"""Restart policy: whether and when a slot whose task ended gets a new task. Pure.

``max_attempts`` counts the slot's restarts under the current spec (an update starts
afresh, as in Swarm). Without a ``window`` that is ``Task.attempt``; with one, only
restarts within ``window`` seconds before the task ended count, read from the times
each task carries (``Task.restart_times``), not from the slot's history, which is
pruned to a few tasks and would let the count stop short of the limit.
"""

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
            attempts = _restarts_in_window(policy.window, ended, history, ended_at)
        else:
            attempts = ended.attempt
        if attempts >= policy.max_attempts:
            return RestartVerdict(
                None, f"{state.label}; max_attempts {policy.max_attempts} reached, not restarted"
            )
    return RestartVerdict(
        ended_at + policy.delay, f"{state.label}: {ended.status.err or ended.status.message}"
    )


def next_restart_times(policy: RestartPolicy, ended: Task, now: float) -> tuple[float, ...]:
    """``restart_times`` of the task that restarts ``ended`` at ``now``: the last
    ``max_attempts`` restarts are all a window check needs (the policy is part of the
    spec, so it cannot grow while the count lasts)."""
    keep = (policy.max_attempts or 0) if policy.window > 0 else 0
    return (*ended.restart_times, now)[-keep:] if keep > 0 else ()


def _restarts_in_window(
    window: float, ended: Task, history: Sequence[Task], ended_at: float
) -> int:
    # Swarm counts the restarts in the window that ends when it decides (on the
    # failure); ours ends when the task ended, so a later pass gets the same verdict.
    times: Sequence[float] = ended.restart_times
    if ended.attempt > 0 and not times:
        # Stored by a version that did not carry the times: what the history still has.
        times = [t.created_at for t in history if t.attempt > 0 and t.created_at <= ended_at]
    return sum(1 for at in times if at >= ended_at - window)
