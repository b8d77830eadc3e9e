"""The agent's task runner when the Docker engine fails under it (a small fake engine)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest

from swarmlite.agent.containers import ContainerInfo
from swarmlite.agent.docker_streams import RuntimeEvent
from swarmlite.agent.worker import TaskRunner
from swarmlite.errors import RuntimeFailure
from swarmlite.spec.objects import Network, Task, TaskState, TaskStatus, Volume
from swarmlite.spec.service import Mount, ServiceSpec

ALWAYS = 1_000_000


class FakeEngine:
    """The part of ``DockerRuntime`` the runner calls; ``failing[name]`` calls of a
    method raise as a failing engine does."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.containers: dict[str, ContainerInfo] = {}
        self.failing: dict[str, int] = {}
        self.stream: asyncio.Queue[RuntimeEvent] = asyncio.Queue()

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.failing.get(name, 0) > 0:
            self.failing[name] -= 1
            raise RuntimeFailure(f"{name}: the engine failed")

    def events(self) -> AsyncIterator[RuntimeEvent]:
        self.calls.append("events")
        return self._events()

    async def _events(self) -> AsyncIterator[RuntimeEvent]:
        while True:
            yield await self.stream.get()

    async def list_own(self) -> list[ContainerInfo]:
        self._call("list_own")
        return list(self.containers.values())

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        self._call("inspect")
        return self.containers.get(container_id)

    async def create(self, task: Task, networks: Sequence[Network]) -> str:
        self._call("create")
        self.containers[f"c-{task.id}"] = container(task, "created")
        return f"c-{task.id}"

    async def start(self, container_id: str) -> None:
        self._call("start")
        info = self.containers[container_id]
        self.containers[container_id] = msgspec.structs.replace(info, state="running")

    async def stop(self, container_id: str, *, grace: float, signal: str | None) -> None:
        self._call("stop")
        info = self.containers[container_id]
        self.containers[container_id] = msgspec.structs.replace(info, state="exited", exit_code=0)

    async def remove(self, container_id: str) -> None:
        self._call("remove")
        self.containers.pop(container_id, None)


def make_task(desired: TaskState = TaskState.RUNNING) -> Task:
    spec = ServiceSpec(name="web", stack="shop", image="img", networks=())
    return Task(
        id="t1",
        service_id="s1",
        service_name="shop_web",
        slot=1,
        spec=spec,
        spec_version=1,
        spec_hash="h",
        node_id="n1",
        desired_state=desired,
    )


def container(task: Task, state: str) -> ContainerInfo:
    return ContainerInfo(
        id=f"c-{task.id}",
        name=task.name,
        task_id=task.id,
        service_id=task.service_id,
        service_name=task.service_name,
        slot=task.slot,
        node_id=task.node_id,
        spec_hash=task.spec_hash,
        state=state,
        exit_code=None,
        health="none",
        addresses={},
        started_at=0.0,
        finished_at=0.0,
        error="",
    )


class Reports:
    def __init__(self) -> None:
        self.last: dict[str, TaskStatus] = {}

    def __call__(self, task_id: str, status: TaskStatus) -> None:
        self.last[task_id] = status

    async def wait_for(self, task_id: str, state: TaskState, timeout: float = 5.0) -> TaskStatus:
        async with asyncio.timeout(timeout):
            while (got := self.last.get(task_id)) is None or got.state != state:
                await asyncio.sleep(0.01)
            return got


@pytest.fixture
async def engine() -> FakeEngine:
    return FakeEngine()


@contextlib.asynccontextmanager
async def running(
    engine: FakeEngine, task: Task | None, reports: Reports
) -> AsyncIterator[TaskRunner]:
    """A started runner, assigned ``task`` (if any), stopped afterwards."""
    runner = TaskRunner(engine, "n1", reports)  # type: ignore[arg-type]
    await runner.start()
    try:
        if task is not None:
            runner.apply([task], [], [])
        yield runner
    finally:
        await runner.stop()


async def test_it_subscribes_to_events_before_listing_containers(engine: FakeEngine) -> None:
    async with running(engine, None, Reports()):
        # A container that exits between the list and the subscription would be missed.
        assert engine.calls[:2] == ["events", "list_own"]


async def test_a_failed_list_after_a_resync_is_retried_and_events_keep_coming(
    engine: FakeEngine,
) -> None:
    task, reports = make_task(), Reports()
    engine.containers["c-t1"] = container(task, "running")
    async with running(engine, task, reports):
        await reports.wait_for("t1", TaskState.RUNNING)
        engine.failing["list_own"] = 2
        await engine.stream.put(RuntimeEvent(container_id="", task_id="", action="resync"))
        engine.containers["c-t1"] = msgspec.structs.replace(
            engine.containers["c-t1"], state="exited", exit_code=3
        )
        die = RuntimeEvent(container_id="c-t1", task_id="t1", action="die", exit_code=3)
        await engine.stream.put(die)
        failed = await reports.wait_for("t1", TaskState.FAILED)
        assert engine.calls.count("list_own") == 4  # start, 2 failures, then success
        assert failed.exit_code == 3


async def test_a_failing_stop_is_retried_after_a_pause_not_in_a_tight_loop(
    engine: FakeEngine,
) -> None:
    task = make_task(TaskState.SHUTDOWN)
    engine.containers["c-t1"] = container(task, "running")
    engine.failing["stop"] = ALWAYS
    async with running(engine, task, Reports()):
        await asyncio.sleep(2.5)
        assert 2 <= engine.calls.count("stop") <= 4, engine.calls.count("stop")
        engine.failing["stop"] = 0  # the engine is back: the next try stops it
        await asyncio.sleep(1.5)
        assert engine.containers["c-t1"].state == "exited"


async def test_a_started_container_it_cannot_read_is_removed_and_the_task_failed(
    engine: FakeEngine,
) -> None:
    task, reports = make_task(), Reports()
    engine.failing["inspect"] = ALWAYS
    async with running(engine, task, reports):
        failed = await reports.wait_for("t1", TaskState.FAILED)
        assert "inspect: the engine failed" in failed.err
        assert engine.calls[-1] == "remove" and not engine.containers


async def test_what_was_reported_of_a_task_no_longer_assigned_is_forgotten(
    engine: FakeEngine,
) -> None:
    task, reports = make_task(), Reports()
    engine.failing["create"] = 1  # the task ends without a container
    async with running(engine, task, reports) as runner:
        await reports.wait_for("t1", TaskState.REJECTED)
        assert "t1" in runner.statuses()
        runner.apply([], [], [])  # the manager no longer assigns it
        assert runner.statuses() == {}


async def test_a_named_volume_is_created_with_its_compose_driver_opts_and_labels() -> None:
    class VolumeEngine(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.volumes: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {}

        async def ensure_volume(
            self, name: str, *, driver: str, driver_opts: dict[str, str], labels: dict[str, str]
        ) -> None:
            self._call("ensure_volume")
            self.volumes[name] = (driver, dict(driver_opts), dict(labels))

    engine, reports = VolumeEngine(), Reports()
    task = make_task()
    mount = Mount(type="volume", source="data", target="/data")
    task = msgspec.structs.replace(task, spec=msgspec.structs.replace(task.spec, mounts=(mount,)))
    opts, labels = {"type": "tmpfs"}, {"team": "db"}
    volume = Volume(id="v1", name="shop_data", stack="shop", driver_opts=opts, labels=labels)
    runner = TaskRunner(engine, "n1", reports)  # type: ignore[arg-type]
    await runner.start()
    try:
        runner.apply([task], [], [volume])
        await reports.wait_for("t1", TaskState.RUNNING)
    finally:
        await runner.stop()
    assert engine.volumes["shop_data"] == (
        "local",
        {"type": "tmpfs"},
        {"team": "db", "swarmlite.stack": "shop"},
    )


async def test_a_container_left_created_by_a_killed_daemon_is_started_not_left_starting(
    engine: FakeEngine,
) -> None:
    # The daemon was killed between the create and the start: after its restart the
    # task's container exists, never started, and the manager last heard "starting".
    task, reports = make_task(), Reports()
    status = TaskStatus(state=TaskState.STARTING, message="starting", container_id="c-t1")
    task = msgspec.structs.replace(task, status=status)
    engine.containers["c-t1"] = container(task, "created")
    async with running(engine, task, reports):
        await reports.wait_for("t1", TaskState.RUNNING)
    assert engine.calls.count("start") == 1


async def test_a_running_task_whose_container_is_removed_fails_and_is_not_recreated(
    engine: FakeEngine,
) -> None:
    # ``docker rm -f`` of a replica: Swarm fails the task; its replacement is the
    # orchestrator's to make (restart policy, delay), never a second container of it.
    task, reports = make_task(), Reports()
    engine.containers["c-t1"] = container(task, "running")
    async with running(engine, task, reports):
        await reports.wait_for("t1", TaskState.RUNNING)
        del engine.containers["c-t1"]
        await engine.stream.put(RuntimeEvent(container_id="c-t1", task_id="t1", action="destroy"))
        failed = await reports.wait_for("t1", TaskState.FAILED)
        await asyncio.sleep(0.1)
    assert "create" not in engine.calls and not engine.containers
    assert "container" in failed.err and "removed" in failed.err


async def test_a_task_is_rejected_before_its_container_exists_and_failed_once_it_does() -> None:
    # Swarm's rule (agent/exec): an error before the task starts rejects it, one from
    # its start on fails it, whatever the words of the error.
    class NoBinary(FakeEngine):
        async def start(self, container_id: str) -> None:
            self._call("start")
            raise RuntimeFailure(
                'start container c-t1: exec: "pythn": executable file not found in $PATH'
            )

    engine, reports = NoBinary(), Reports()
    async with running(engine, make_task(), reports):
        failed = await reports.wait_for("t1", TaskState.FAILED)
    assert "executable file not found" in failed.err

    engine, reports = FakeEngine(), Reports()
    engine.failing["create"] = 1
    async with running(engine, make_task(), reports):
        rejected = await reports.wait_for("t1", TaskState.REJECTED)
    assert rejected.err == "create: the engine failed"


async def test_a_running_container_no_longer_assigned_stops_with_its_own_grace_period() -> None:
    # A service removed while its node was down: back, the node removes the container
    # itself, with the stop_grace_period it was created with (Docker's StopTimeout).
    class Graces(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.graces: list[float] = []

        async def stop(self, container_id: str, *, grace: float, signal: str | None) -> None:
            self.graces.append(grace)
            await super().stop(container_id, grace=grace, signal=signal)

    engine, task = Graces(), make_task()
    engine.containers["c-t1"] = msgspec.structs.replace(container(task, "running"), stop_grace=45.0)
    async with running(engine, None, Reports()) as runner:
        runner.apply([], [], [])
        async with asyncio.timeout(5):
            while engine.containers:
                await asyncio.sleep(0.01)
    assert engine.graces == [45.0]


async def test_a_container_started_while_a_resync_lists_containers_is_not_lost() -> None:
    # The list is a snapshot from before the start: it must not erase the container the
    # start recorded meanwhile (the task would be failed as "container removed").
    class SlowList(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.gate = asyncio.Event()
            self.listing = asyncio.Event()

        async def list_own(self) -> list[ContainerInfo]:
            snapshot = await super().list_own()
            if len(self.calls) > 2:  # not the first list, at start
                self.listing.set()
                await self.gate.wait()
            return snapshot

    engine, reports = SlowList(), Reports()
    async with running(engine, None, reports) as runner:
        await engine.stream.put(RuntimeEvent(container_id="", task_id="", action="resync"))
        await engine.listing.wait()
        runner.apply([make_task()], [], [])
        await reports.wait_for("t1", TaskState.RUNNING)
        engine.gate.set()
        await asyncio.sleep(0.2)
        assert reports.last["t1"].state == TaskState.RUNNING, reports.last["t1"]
        assert engine.calls.count("create") == 1
