"""The updater, simulated pass by pass: failures, pause, continue, rollback, completion.

``UpdateSim`` plays agents that know three bad images: ``nginx:nope`` is not found (the
task is rejected), ``crash:1`` runs for a moment then exits 1, ``slow:1`` starts and never
becomes healthy.
"""

from __future__ import annotations

from typing import Any

import msgspec

from swarmlite.manager.reconcile import reconcile
from swarmlite.manager.updater import begin_rollback, begin_update, update_failures
from swarmlite.spec.objects import Task, TaskState, TaskStatus, UpdateStatus
from swarmlite.spec.service import HealthCheck, RestartPolicy, UpdateConfig
from tests.unit.test_reconcile import NAME, NODES, T0, Sim, service, spec, task
from tests.unit.test_reconcile import with_status as _with_status

S = TaskState
MISSING = "image not found: nginx:nope"


def with_status(t: Task, state: TaskState, at: float, err: str = "") -> Task:
    """A report applied as the dispatcher applies it (stamping ``running_at``)."""
    return t.reported(_with_status(t, state, at, err).status)


class UpdateSim(Sim):
    def agent_step(self, dt: float = 1.0) -> None:
        self.now += dt
        workers = sorted(NODES)
        for t in list(self.tasks.values()):
            state, image = t.status.state, t.spec.image
            if t.desired_state > S.RUNNING:
                if not state.terminal:
                    self.tasks[t.id] = with_status(t, S.SHUTDOWN, self.now)
            elif state == S.NEW:
                t = msgspec.structs.replace(t, node_id=workers[(t.slot - 1) % len(workers)])
                self.tasks[t.id] = with_status(t, S.ASSIGNED, self.now)
            elif state == S.ASSIGNED:
                if image == "nginx:nope" or self.fail_next_starts:
                    self.fail_next_starts = max(0, self.fail_next_starts - 1)
                    err = f"image not found: {image}"
                    self.tasks[t.id] = with_status(t, S.REJECTED, self.now, err)
                else:
                    self.tasks[t.id] = with_status(t, S.STARTING, self.now)
            elif state == S.STARTING and image != "slow:1":
                self.tasks[t.id] = with_status(t, S.RUNNING, self.now)
            elif state == S.RUNNING and image == "crash:1":
                status = TaskStatus(
                    state=S.FAILED,
                    err="task: non-zero exit (1)",
                    exit_code=1,
                    timestamp=self.now,
                )
                self.tasks[t.id] = t.reported(status)

    def state(self) -> str:
        return self.service.update_status.state


def started(replicas: int = 3, **update: Any) -> UpdateSim:
    """A converged v1 service (nginx:1) whose update settings are ``update``."""
    cfg = UpdateConfig(**update)
    rollback = UpdateConfig(monitor=cfg.monitor)
    v1 = service(spec(replicas=replicas, update_config=cfg, rollback_config=rollback))
    sim = UpdateSim(v1, NODES)
    sim.run()
    assert len(sim.running()) == replicas
    return sim


def update_to(sim: UpdateSim, image: str) -> None:
    new = msgspec.structs.replace(sim.service.spec, image=image)
    sim.service = begin_update(sim.service, new, sim.now)
    assert sim.state() == "updating"


def images_running(sim: UpdateSim) -> list[str]:
    return sorted(t.spec.image for t in sim.running() if t.desired_state == S.RUNNING)


def test_missing_image_pauses_at_the_first_failure_and_old_replicas_keep_serving() -> None:
    sim = started(parallelism=1, order="stop-first", failure_action="pause")
    update_to(sim, "nginx:nope")
    sim.run()
    assert sim.state() == "paused"
    assert sim.service.update_status.message == (
        f"update paused: task {NAME}.1 failed: image not found: nginx:nope"
    )
    assert images_running(sim) == ["nginx:1", "nginx:1"]  # slots 2 and 3 still serve
    pause = next(d for d in sim.decisions if "paused" in d)
    assert pause == f"service={NAME} update paused: task {NAME}.1 failed: {MISSING}"
    # Paused: later passes create nothing, restart nothing, stop nothing.
    count = len(sim.tasks)
    for _ in range(5):
        sim.now += 60
        plan = sim.pass_()
        assert plan.empty
        sim.agent_step()
    assert len(sim.tasks) == count
    assert sim.decisions[-1].startswith(f"service={NAME} update paused: task {NAME}.1 failed")


def test_start_first_pause_keeps_every_old_replica_running() -> None:
    sim = started(parallelism=2, order="start-first", failure_action="pause")
    update_to(sim, "nginx:nope")
    sim.run()
    assert sim.state() == "paused"
    assert images_running(sim) == ["nginx:1"] * 3


def test_crash_with_rollback_returns_to_the_old_spec() -> None:
    sim = started(parallelism=1, failure_action="rollback", monitor=5)
    v1_spec = sim.service.spec
    update_to(sim, "crash:1")
    sim.run()
    assert sim.state() == "rollback_completed"
    assert sim.service.spec == v1_spec and sim.service.version == 3
    assert sim.service.previous_spec is not None
    assert sim.service.previous_spec.image == "crash:1"
    assert images_running(sim) == ["nginx:1"] * 3
    assert all(t.spec_version == 3 for t in sim.live())
    rolled = next(d for d in sim.decisions if "rolling back" in d)
    assert rolled == (
        f"service={NAME} update failed (task {NAME}.1 failed: task: non-zero exit (1)): "
        "rolling back to the previous spec as version 3"
    )
    assert sim.service.update_status.completed_at >= sim.service.update_status.started_at


def test_failing_rollback_pauses_as_rollback_paused() -> None:
    sim = started(parallelism=1, failure_action="rollback")
    update_to(sim, "crash:1")
    for _ in range(60):
        if sim.state() == "rollback_started":
            break
        sim.pass_()
        sim.agent_step()
    sim.fail_next_starts = 1
    sim.run()
    assert sim.state() == "rollback_paused"
    assert sim.service.update_status.message.startswith(
        f"rollback paused: task {NAME}.1 failed: image not found"
    )


def test_task_not_running_within_monitor_counts_as_failed() -> None:
    sim = started(parallelism=1, monitor=5)
    update_to(sim, "slow:1")
    for _ in range(20):  # run() would wait forever for the slow task to settle
        plan = sim.pass_()
        if sim.state() == "paused":
            break
        if plan.empty and plan.wake_at is not None:
            sim.now = max(sim.now, plan.wake_at - 1.0)
        sim.agent_step()
    assert sim.state() == "paused"
    assert sim.service.update_status.message == (
        f"update paused: task {NAME}.1 not running within 5s (starting)"
    )
    [slow] = [t for t in sim.live() if t.spec.image == "slow:1"]
    assert slow.status.state == S.STARTING and sim.now >= slow.status.timestamp + 5


def test_monitor_deadline_wakes_the_orchestrator() -> None:
    v1 = service()
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="slow:1"), T0)
    starting = task(v2, 1, S.STARTING, at=T0 + 2, created=T0)
    tasks = [starting, task(v1, 2), task(v1, 3)]
    assert update_failures(v2, tasks, T0 + 3) == ([], T0 + 7)
    plan = reconcile(v2, tasks, NODES, T0 + 3)
    assert plan.wake_at == T0 + 7 and plan.service is None
    plan = reconcile(v2, tasks, NODES, T0 + 7)
    assert plan.service is not None and plan.service.update_status.state == "paused"


def test_max_failure_ratio_half_tolerates_one_failure_of_four() -> None:
    sim = started(replicas=4, parallelism=1, max_failure_ratio=0.5)
    update_to(sim, "nginx:2")
    sim.fail_next_starts = 1
    sim.run()
    assert sim.state() == "completed"
    assert images_running(sim) == ["nginx:2"] * 4
    assert f"service={NAME} update: 1 of 4 tasks failed, within max_failure_ratio 0.5" in (
        sim.decisions
    )


def test_max_failure_ratio_half_pauses_at_the_third_failure_of_four() -> None:
    sim = started(replicas=4, parallelism=1, max_failure_ratio=0.5)
    update_to(sim, "nginx:2")
    sim.fail_next_starts = 3
    sim.run()
    assert sim.state() == "paused"
    assert len([t for t in sim.tasks.values() if t.status.state == S.REJECTED]) == 3


def test_continue_ignores_failures_and_completes() -> None:
    sim = started(parallelism=1, failure_action="continue")
    update_to(sim, "nginx:2")
    sim.fail_next_starts = 2
    sim.run()
    assert sim.state() == "completed"
    assert sim.service.update_status.message == "update completed"
    assert images_running(sim) == ["nginx:2"] * 3
    assert any("failed tasks ignored (failure_action continue)" in d for d in sim.decisions)


def test_parallelism_2_with_delay_and_monitor_before_completion() -> None:
    sim = started(replicas=4, parallelism=2, delay=10, monitor=5)
    update_to(sim, "nginx:2")
    batches: list[float] = []
    for _ in range(80):
        plan = sim.pass_()
        assert len(plan.create) <= 2
        if plan.create:
            batches.append(sim.now)
        if sim.state() == "completed":
            break
        if plan.empty and plan.wake_at is not None:
            sim.now = max(sim.now, plan.wake_at - 1.0)
        sim.agent_step()
    assert sim.state() == "completed"
    assert len(batches) == 2 and batches[1] - batches[0] >= 10
    newest = max(t.status.timestamp for t in sim.live())
    assert sim.service.update_status.completed_at >= newest + 5
    assert any("update: watching new tasks for" in d for d in sim.decisions)


def test_manual_rollback_after_a_completed_update() -> None:
    sim = started(parallelism=0)
    update_to(sim, "nginx:2")
    sim.run()
    assert sim.state() == "completed"
    sim.service = begin_rollback(sim.service, sim.now, "manually requested")
    sim.run()
    assert sim.state() == "rollback_completed"
    assert sim.service.spec.image == "nginx:1" and sim.service.version == 3
    assert images_running(sim) == ["nginx:1"] * 3


def test_failed_new_task_is_restarted_while_updating_but_not_while_paused() -> None:
    v1 = service(spec(restart_policy=RestartPolicy(delay=0)))
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="nginx:2"), T0)
    failed = task(v2, 1, S.REJECTED, at=T0 + 1, created=T0, err="image not found: nginx:2")
    tasks = [failed, task(v1, 2), task(v1, 3)]
    paused = msgspec.structs.replace(
        v2, update_status=UpdateStatus(state="paused", message="update paused: x", started_at=T0)
    )
    plan = reconcile(paused, tasks, NODES, T0 + 10)
    assert plan.empty
    assert plan.decision(NAME) == (
        f"service={NAME} update paused: x; slot 1: {failed.id[:12]} of the update rejected, "
        "not restarted while halted; 2 slots left on the old spec"
    )


def test_replica_change_alone_starts_no_update() -> None:
    v1 = service()
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, replicas=5), T0)
    assert v2.version == 2 and v2.update_status == v1.update_status
    assert v2.previous_spec == v1.spec


def test_force_update_changes_the_task_hash() -> None:
    sp = spec()
    assert msgspec.structs.replace(sp, force_update=1).task_hash() != sp.task_hash()


def test_monitor_of_a_healthchecked_task_adds_the_time_its_first_check_needs() -> None:
    hc = HealthCheck(test=("CMD", "true"), interval=3, timeout=2, start_period=1)
    v1 = service(spec(healthcheck=hc))
    v2 = begin_update(v1, msgspec.structs.replace(v1.spec, image="slow:1"), T0)
    starting = task(v2, 1, S.STARTING, at=T0 + 2, created=T0)
    tasks = [starting, task(v1, 2), task(v1, 3)]
    assert update_failures(v2, tasks, T0 + 8) == ([], T0 + 13)  # 2 + 5 monitor + 6
    [failure], _ = update_failures(v2, tasks, T0 + 13)
    assert failure.reason == f"task {NAME}.1 not running within 11s (starting)"


def test_continue_goes_on_past_a_slot_its_restart_policy_gave_up_on() -> None:
    # Slot 1's new task is rejected and, with condition none, never restarted: that
    # slot is not "in flight", so parallelism 1 must not wait on it for good.
    cfg = UpdateConfig(parallelism=1, failure_action="continue")
    v1 = service(spec(update_config=cfg, restart_policy=RestartPolicy(condition="none")))
    sim = UpdateSim(v1, NODES)
    sim.run()
    update_to(sim, "nginx:2")
    sim.fail_next_starts = 1
    sim.run()
    assert images_running(sim) == ["nginx:2"] * 2
    # Every slot was updated; the failure was tolerated: completed, as in Swarm (not
    # "updating" for good, waiting on a slot nothing will restart).
    assert sim.state() == "completed"
