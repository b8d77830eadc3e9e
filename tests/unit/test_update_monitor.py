"""The update's ``monitor`` window: which ended tasks count against an update, and how
long a task still starting may take before it does."""

from __future__ import annotations

import msgspec

from swarmlite.manager.reconcile import Plan
from swarmlite.manager.updater import begin_update, finish_update, update_failures
from swarmlite.spec.objects import Task, TaskState, TaskStatus
from swarmlite.spec.service import HealthCheck
from tests.unit.test_reconcile import NAME, T0, service, task
from tests.unit.test_updater import images_running, started, update_to, with_status

S = TaskState


def ran(t: Task, running_at: float, state: TaskState, at: float, code: int = 1) -> Task:
    """``t`` first reported running at ``running_at``, then ``state`` at ``at``."""
    running = with_status(t, S.RUNNING, running_at)
    status = TaskStatus(state=state, err=f"task: non-zero exit ({code})", exit_code=code)
    return running.reported(msgspec.structs.replace(status, timestamp=at))


def test_the_first_running_report_stamps_running_at_and_later_reports_keep_it() -> None:
    t = task(service(), 1, S.STARTING, at=T0)
    assert t.running_at == 0.0
    assert with_status(t, S.STARTING, T0 + 1).running_at == 0.0
    running = with_status(t, S.RUNNING, T0 + 2)
    assert running.running_at == T0 + 2
    assert with_status(running, S.RUNNING, T0 + 9).running_at == T0 + 2
    failed = with_status(running, S.FAILED, T0 + 30, "task: non-zero exit (1)")
    assert failed.running_at == T0 + 2 and failed.status.state == S.FAILED


def test_only_an_end_within_monitor_of_running_counts_against_the_update() -> None:
    v1 = service()  # monitor 5 s
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="nginx:2"), T0)
    new = task(v2, 1, S.STARTING, at=T0 + 1, created=T0)
    old = [task(v1, 2), task(v1, 3)]
    early = ran(new, T0 + 2, S.FAILED, T0 + 7)  # 5 s after it ran: within
    [failure], _ = update_failures(v2, [early, *old], T0 + 8)
    assert failure.reason == f"task {NAME}.1 failed: task: non-zero exit (1)"
    # Swarm stops watching a task once it has run for monitor: a later crash is the
    # restart policy's business, not a failed update.
    for state, code in ((S.FAILED, 1), (S.COMPLETE, 0)):
        late = ran(new, T0 + 2, state, T0 + 7.5, code)
        assert update_failures(v2, [late, *old], T0 + 8) == ([], None)


def test_a_task_that_never_ran_counts_however_late_it_ends() -> None:
    v1 = service()
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="nginx:2"), T0)
    new = task(v2, 1, S.STARTING, at=T0 + 1, created=T0)
    failed = with_status(new, S.FAILED, T0 + 60, "task: unhealthy container")
    [failure], _ = update_failures(v2, [failed, task(v1, 2), task(v1, 3)], T0 + 61)
    assert failure.reason == f"task {NAME}.1 failed: task: unhealthy container"


def test_a_crash_after_monitor_during_the_delay_does_not_stop_the_update() -> None:
    # Slot 1's new task runs past monitor (5 s), then crashes while the update waits its
    # 30 s delay before slot 2: it is restarted and the update goes on to complete.
    sim = started(parallelism=1, delay=30, monitor=5, failure_action="pause")
    update_to(sim, "nginx:2")
    for _ in range(20):
        sim.pass_()
        sim.agent_step()
        new = next((t for t in sim.live() if t.spec.image == "nginx:2"), None)
        if new is not None and new.running_at and sim.now >= new.running_at + 10:
            break
    assert new is not None and new.status.state == S.RUNNING
    assert sim.state() == "updating"
    crash = TaskStatus(state=S.FAILED, err="task: non-zero exit (137)", timestamp=sim.now)
    sim.tasks[new.id] = new.reported(crash)
    sim.run()
    assert sim.state() == "completed"
    assert images_running(sim) == ["nginx:2"] * 3
    assert not any("paused" in d for d in sim.decisions)


def test_a_task_waiting_for_its_images_own_healthcheck_gets_time_for_a_first_check() -> None:
    # No healthcheck in the compose file; the image's HEALTHCHECK (30 s interval and
    # timeout), as the agent reports it, gates running: the 5 s monitor alone would fail
    # every update of such an image (why baaa8b8 was reverted in 1ecd708).
    v1 = service()
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="web:2"), T0)
    image = HealthCheck(test=("CMD-SHELL", "curl -f localhost"), start_period=5)
    status = TaskStatus(state=S.STARTING, message="starting: waiting for healthcheck")
    waiting = task(v2, 1, S.STARTING, created=T0).reported(
        msgspec.structs.replace(status, timestamp=T0 + 2, healthcheck=image)
    )
    tasks = [waiting, task(v1, 2), task(v1, 3)]
    assert update_failures(v2, tasks, T0 + 30) == ([], T0 + 72)  # 2 + 5 monitor + 65
    [failure], _ = update_failures(v2, tasks, T0 + 72)
    assert failure.reason == (
        f"task {NAME}.1 not running within 70s (starting: waiting for healthcheck)"
    )


def test_the_update_completes_monitor_after_the_newest_task_first_ran() -> None:
    # A task running since T0 + 2 and reported running again at T0 + 9 (an agent that
    # reconnected, say) has run for monitor (5 s) by T0 + 8: the update is complete.
    v1 = service()
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="nginx:2"), T0)
    tasks = [
        with_status(
            with_status(task(v2, s, S.STARTING, created=T0), S.RUNNING, T0 + 2), S.RUNNING, T0 + 9
        )
        for s in (1, 2, 3)
    ]
    assert all(t.running_at == T0 + 2 for t in tasks)
    plan = Plan()
    finish_update(v2, tasks, 3, T0 + 8, plan)
    assert plan.service is not None and plan.service.update_status.state == "completed"
