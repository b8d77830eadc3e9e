"""What a task's container says about the task (``agent/observe.py``, pure)."""

from __future__ import annotations

import msgspec

from swarmlite.agent.observe import observed_status
from swarmlite.spec.objects import TaskState
from swarmlite.spec.service import HealthCheck
from tests.unit.test_agent_runner import container, make_task


def test_a_container_without_a_healthcheck_runs_at_once() -> None:
    task = make_task()
    for check in (None, HealthCheck(test=("NONE",))):
        spec = msgspec.structs.replace(task.spec, healthcheck=check)
        with_check = msgspec.structs.replace(task, spec=spec)
        assert observed_status(with_check, container(task, "running")).state == TaskState.RUNNING


def test_a_service_healthcheck_waits_for_its_first_result() -> None:
    task = make_task()
    spec = msgspec.structs.replace(task.spec, healthcheck=HealthCheck(test=("CMD", "true")))
    task = msgspec.structs.replace(task, spec=spec)
    # Before Docker shows any health state, a task with a healthcheck is not yet running.
    assert observed_status(task, container(task, "running")).state == TaskState.STARTING


def test_a_never_started_container_of_a_task_told_to_stop_is_shut_down() -> None:
    # Created, then the daemon died before the start, and meanwhile the task was told
    # to stop: nothing will start or stop that container, so the task is shut down
    # (it stayed "starting", and whoever waited for it to stop waited in vain).
    for desired in (TaskState.SHUTDOWN, TaskState.REMOVE):
        task = make_task(desired)
        status = observed_status(task, container(task, "created"))
        assert (status.state, status.exit_code) == (TaskState.SHUTDOWN, None)
