"""What a task's container says about the task (``agent/observe.py``, pure)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from swarmlite.agent.observe import observed_status
from swarmlite.spec.objects import TaskState
from swarmlite.spec.service import HealthCheck
from tests.unit.test_agent_runner import FakeEngine, Reports, container, make_task, running

IMAGE_CHECK = HealthCheck(test=("CMD-SHELL", "curl -f localhost"), interval=30, timeout=30)


@pytest.mark.parametrize(
    ("health", "state"),
    [
        ("starting", TaskState.STARTING),
        ("healthy", TaskState.RUNNING),
        ("unhealthy", TaskState.FAILED),
    ],
)
def test_the_images_own_healthcheck_counts_when_the_service_sets_none(
    health: str, state: TaskState
) -> None:
    # No ``healthcheck:`` in the compose file, a HEALTHCHECK in the image: Swarm waits
    # for it (it reads the container's merged config), so a task is running once healthy;
    # the status carries the check, so the updater gives its first result time.
    task = make_task()
    assert task.spec.healthcheck is None
    seen = msgspec.structs.replace(
        container(task, "running"), health=health, healthcheck=IMAGE_CHECK
    )
    status = observed_status(task, seen)
    assert status.state == state
    assert status.healthcheck == IMAGE_CHECK
    if state == TaskState.FAILED:
        assert status.err == "task: unhealthy container"


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


async def test_a_lost_health_event_of_the_images_own_check_is_covered_by_a_re_read() -> None:
    # The runner re-reads a container waiting for its first check after about two
    # intervals; with no check in the compose file it must use the image's, or a lost
    # health_status event would leave the task starting for good.
    quick = HealthCheck(test=("CMD", "true"), interval=0.2, timeout=0.2)

    class ImageCheckEngine(FakeEngine):
        async def start(self, container_id: str) -> None:
            await super().start(container_id)
            info = self.containers[container_id]
            self.containers[container_id] = msgspec.structs.replace(
                info, health="starting", healthcheck=quick
            )

    engine, task, reports = ImageCheckEngine(), make_task(), Reports()
    async with running(engine, task, reports):
        async with asyncio.timeout(3.0):  # its first report (at create) has no check yet
            while (got := reports.last.get("t1")) is None or got.healthcheck != quick:
                await asyncio.sleep(0.01)
        assert got.state == TaskState.STARTING
        # Healthy now, but no health_status event comes: only the re-read sees it.
        info = engine.containers["c-t1"]
        engine.containers["c-t1"] = msgspec.structs.replace(info, health="healthy")
        await reports.wait_for("t1", TaskState.RUNNING, timeout=3.0)
