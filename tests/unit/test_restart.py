"""Restart policy through the reconciler: condition, delay, max_attempts, window."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from swarmlite.manager.reconcile import reconcile
from swarmlite.manager.restart import restart_verdict
from swarmlite.spec.objects import TaskState
from swarmlite.spec.service import RestartPolicy
from tests.unit.test_reconcile import (
    NAME,
    NODES,
    T0,
    Sim,
    check_plan,
    service,
    spec,
    task,
    with_status,
)

S = TaskState


@pytest.mark.parametrize(
    ("condition", "state", "restarted"),
    [
        ("any", S.FAILED, True),
        ("any", S.COMPLETE, True),
        ("any", S.REJECTED, True),
        ("any", S.SHUTDOWN, True),  # stopped behind the manager's back
        ("on-failure", S.FAILED, True),
        ("on-failure", S.REJECTED, True),
        ("on-failure", S.COMPLETE, False),
        ("none", S.FAILED, False),
        ("none", S.COMPLETE, False),
    ],
)
def test_restart_condition(condition: str, state: TaskState, restarted: bool) -> None:
    svc = service(spec(replicas=1, restart_policy=RestartPolicy(condition=condition, delay=5)))  # type: ignore[arg-type]
    ended = task(svc, 1, state, at=T0, err="exit 137" if state == S.FAILED else "")
    plan = reconcile(svc, [ended], NODES, T0 + 5)
    check_plan(plan, [ended])
    if restarted:
        assert [(t.slot, t.attempt) for t in plan.create] == [(1, 1)]
        assert plan.updates[ended.id].desired_state == S.SHUTDOWN
        assert plan.decision(NAME) == (
            f"service={NAME} slot 1: {ended.id[:12]} {state.label}, "
            f"restarted as {plan.create[0].id[:12]} (attempt 1)"
        )
    else:
        assert plan.empty and plan.wake_at is None
        why = (
            "completed; restart_policy on-failure, not restarted"
            if condition == "on-failure"
            else f"{state.label}; restart_policy none, not restarted"
        )
        assert plan.decision(NAME) == f"service={NAME} slot 1: {why}"


def test_killed_task_restarts_after_the_delay_counted_from_when_it_ended() -> None:
    svc = service(spec(replicas=2, restart_policy=RestartPolicy(delay=5)))
    killed = task(svc, 1, S.FAILED, at=T0, err="exit 137")
    tasks = [killed, task(svc, 2)]
    for now in (T0, T0 + 1, T0 + 4.9):
        plan = reconcile(svc, tasks, NODES, now)
        assert plan.empty and plan.wake_at == T0 + 5
        assert plan.decision(NAME) == (
            f"service={NAME} slot 1: restart in {T0 + 5 - now:.1f}s (failed: exit 137)"
        )
    for now in (T0 + 5, T0 + 60):
        plan = reconcile(svc, tasks, NODES, now)
        check_plan(plan, tasks)
        assert plan.wake_at is None
        [new] = plan.create
        assert (new.slot, new.attempt, new.created_at) == (1, 1, now)
        assert list(plan.updates) == [killed.id]


def test_restart_of_a_task_with_no_end_time_is_not_postponed_forever() -> None:
    svc = service(spec(replicas=1, restart_policy=RestartPolicy(delay=5)))
    ended = task(svc, 1, S.FAILED, at=0.0, created=T0)
    assert reconcile(svc, [ended], NODES, T0 + 1).wake_at == T0 + 5
    assert len(reconcile(svc, [ended], NODES, T0 + 5).create) == 1


@pytest.mark.parametrize(("attempt", "restarted"), [(0, True), (2, True), (3, False), (7, False)])
def test_max_attempts_without_window_counts_the_slot_attempts(
    attempt: int, restarted: bool
) -> None:
    svc = service(spec(replicas=1, restart_policy=RestartPolicy(delay=0, max_attempts=3)))
    ended = task(svc, 1, S.FAILED, attempt=attempt)
    plan = reconcile(svc, [ended], NODES, T0)
    if restarted:
        assert [t.attempt for t in plan.create] == [attempt + 1]
    else:
        assert plan.empty and plan.wake_at is None
        assert plan.decision(NAME) == (
            f"service={NAME} slot 1: failed; max_attempts 3 reached, not restarted"
        )


@pytest.mark.parametrize("carried", [True, False], ids=["carried", "stored-before-times"])
@pytest.mark.parametrize(("window", "restarted"), [(60.0, False), (30.0, True), (5.0, True)])
def test_max_attempts_within_a_window(window: float, restarted: bool, carried: bool) -> None:
    policy = RestartPolicy(delay=0, max_attempts=2, window=window)
    svc = service(spec(replicas=1, restart_policy=policy))
    history = [
        task(svc, 1, S.FAILED, desired=S.SHUTDOWN, attempt=1, created=T0 - 100),
        task(svc, 1, S.FAILED, desired=S.SHUTDOWN, attempt=2, created=T0 - 50),
    ]
    ended = task(svc, 1, S.FAILED, attempt=3, created=T0 - 10, at=T0)
    if carried:  # the times on the task count, not the (here empty) history
        ended = msgspec.structs.replace(ended, restart_times=(T0 - 50, T0 - 10))
        history = []
    # else a task stored before restart times were carried: the history counts.
    # Restarts in the window ending when the task ended: 60s -> 2 (T0-50, T0-10),
    # 30s -> 1, 5s -> 0.
    for now in (T0, T0 + 1000):  # a later pass must not change the verdict
        plan = reconcile(svc, [*history, ended], NODES, now)
        assert bool(plan.create) is restarted, now
        if restarted:
            expected = (T0 - 10, now) if carried else (now,)
            assert [t.restart_times for t in plan.create] == [expected]
        else:
            assert plan.decision(NAME) == (
                f"service={NAME} slot 1: failed; max_attempts 2 reached, not restarted"
            )


def test_restart_times_are_kept_for_a_window_only() -> None:
    svc = service(spec(replicas=1, restart_policy=RestartPolicy(delay=0, max_attempts=2)))
    ended = task(svc, 1, S.FAILED, attempt=1)
    [created] = reconcile(svc, [ended], NODES, T0).create
    assert (created.attempt, created.restart_times) == (2, ())


def test_window_count_starts_afresh_on_update_and_is_kept_by_a_refill() -> None:
    policy = RestartPolicy(delay=0, max_attempts=1, window=60)
    old = service(spec(replicas=1, restart_policy=policy), version=1)
    stopped = msgspec.structs.replace(
        task(old, 1, S.SHUTDOWN, desired=S.SHUTDOWN, attempt=1), restart_times=(T0 - 20,)
    )
    new = service(spec(replicas=1, image="img:2", restart_policy=policy), version=2)
    [fresh] = reconcile(new, [stopped], NODES, T0).create
    assert (fresh.attempt, fresh.restart_times) == (0, ())
    [refill] = reconcile(old, [stopped], NODES, T0).create  # same spec: after a drain
    assert (refill.attempt, refill.restart_times) == (1, (T0 - 20,))
    failed = with_status(refill, S.FAILED, T0 + 5)
    plan = reconcile(old, [stopped, failed], NODES, T0 + 5)
    assert plan.decision(NAME) == (
        f"service={NAME} slot 1: failed; max_attempts 1 reached, not restarted"
    )


def test_restart_verdict_ignores_restarts_after_the_task_ended() -> None:
    policy = RestartPolicy(delay=1, max_attempts=1, window=10)
    svc = service(spec(replicas=1, restart_policy=policy))
    ended = task(svc, 1, S.FAILED, attempt=0, created=T0 - 5, at=T0)
    verdict = restart_verdict(policy, ended, [ended], T0 + 500)
    assert verdict.restart_at == T0 + 1


def test_rejected_image_is_retried_per_policy_then_given_up() -> None:
    policy = RestartPolicy(condition="on-failure", delay=2, max_attempts=2)
    svc = service(spec(replicas=1, image="nginx:nope", restart_policy=policy))
    sim = Sim(svc, NODES)
    sim.fail_next_starts = 100
    sim.run()
    slot = sorted(sim.tasks.values(), key=lambda t: t.created_at)
    assert [t.attempt for t in slot] == [0, 1, 2]
    assert all(t.status.state == S.REJECTED for t in slot)
    assert all(t.status.err == "No such image: nginx:nope" for t in slot)
    # Each retry waited for the delay after the rejection before it.
    for before, after in itertools.pairwise(slot):
        assert after.created_at >= before.status.timestamp + 2
    assert any("restart in 2.0s (rejected: No such image: nginx:nope)" in d for d in sim.decisions)
    final = reconcile(svc, list(sim.tasks.values()), NODES, sim.now + 100)
    assert final.empty and final.decision(NAME) == (
        f"service={NAME} slot 1: rejected; max_attempts 2 reached, not restarted"
    )


def test_rejected_image_then_fixed_recovers() -> None:
    svc = service(spec(replicas=2, restart_policy=RestartPolicy(delay=1)))
    sim = Sim(svc, NODES)
    sim.fail_next_starts = 3
    sim.run()
    assert sorted(t.slot for t in sim.running()) == [1, 2]
    assert sim.decisions[-1] == f"service={NAME} converged"


def test_max_attempts_within_a_window_holds_when_history_is_pruned() -> None:
    # More restarts than the history keeps (5 tasks): the count must not stop at what
    # is left of the history, or the slot restarts forever.
    policy = RestartPolicy(condition="on-failure", delay=1, max_attempts=7, window=3600)
    svc = service(spec(replicas=1, image="nginx:nope", restart_policy=policy))
    sim = Sim(svc, NODES)
    sim.fail_next_starts = 100
    sim.run()
    [last] = [t for t in sim.tasks.values() if t.desired_state == S.RUNNING]
    assert last.attempt == 7 and len(last.restart_times) == 7
    assert len(sim.tasks) == 5  # pruned: the last one and 4 of history
    final = reconcile(svc, list(sim.tasks.values()), NODES, sim.now + 100)
    assert final.empty and final.decision(NAME) == (
        f"service={NAME} slot 1: rejected; max_attempts 7 reached, not restarted"
    )
