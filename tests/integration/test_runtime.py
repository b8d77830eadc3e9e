"""DockerRuntime against the real engine: networks, VIPs, containers, events, logs."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import docker
import msgspec
import pytest

from swarmlite.agent.runtime import DockerRuntime, RuntimeEvent
from swarmlite.errors import RuntimeFailure
from swarmlite.spec.objects import Network, Task
from swarmlite.spec.service import HealthCheck, Mount, ServiceSpec
from tests.integration.conftest import DOCKER_HOST, DockerCleanup

pytestmark = pytest.mark.integration


@pytest.fixture
async def runtime(node_id: str, docker_cleanup: DockerCleanup) -> AsyncIterator[DockerRuntime]:
    rt = DockerRuntime(node_id, DOCKER_HOST)
    yield rt
    await rt.close()


def make_network(cleanup: DockerCleanup, stack: str) -> Network:
    subnet = cleanup.free_subnet()
    net = Network(
        id=secrets.token_hex(12),
        name=f"{stack}_net",
        stack=stack,
        subnet=str(subnet),
        gateway=str(subnet.network_address + 1),
    )
    cleanup.networks.append(net.name)
    return net


def make_task(stack: str, image: str, command: str, slot: int = 1, **spec: Any) -> Task:
    service = ServiceSpec(
        name="svc", stack=stack, image=image, command=("sh", "-c", command), **spec
    )
    return Task(
        id=secrets.token_hex(8),
        service_id="s" + secrets.token_hex(6),
        service_name=service.full_name,
        slot=slot,
        spec=service,
        spec_version=1,
        spec_hash=service.task_hash(),
    )


async def next_event(
    events: AsyncIterator[RuntimeEvent], match: Callable[[RuntimeEvent], bool], timeout: float
) -> RuntimeEvent:
    async def find() -> RuntimeEvent:
        async for ev in events:
            if match(ev):
                return ev
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), timeout)


def bridge_addrs(dev: str) -> set[str]:
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[3] for line in out.splitlines()}


async def test_network_idempotent_subnet_and_recreate(
    runtime: DockerRuntime,
    docker_api: docker.APIClient,
    docker_cleanup: DockerCleanup,
    unique: str,
    busybox_image: str,
) -> None:
    stack = f"rtn{unique}"
    net = make_network(docker_cleanup, stack)
    await runtime.ensure_network(net)
    await runtime.ensure_network(net)  # idempotent
    found = [n for n in docker_api.networks(names=[net.name]) if n["Name"] == net.name]
    assert len(found) == 1
    ipam = found[0]["IPAM"]["Config"][0]
    lower = str(next(ipaddress.IPv4Network(net.subnet).subnets(prefixlen_diff=1)))
    assert (ipam["Subnet"], ipam["Gateway"], ipam["IPRange"]) == (net.subnet, net.gateway, lower)
    bridge = "sl-" + net.id[:11]
    assert found[0]["Options"]["com.docker.network.bridge.name"] == bridge
    assert found[0]["Labels"]["swarmlite.network.id"] == net.id
    assert f"{net.gateway}/{net.subnet.split('/')[1]}" in bridge_addrs(bridge)

    # Another subnet, unused: recreated.
    other = docker_cleanup.free_subnet()
    moved = Network(
        id=net.id,
        name=net.name,
        stack=stack,
        subnet=str(other),
        gateway=str(other.network_address + 1),
    )
    await runtime.ensure_network(moved)
    found = [n for n in docker_api.networks(names=[net.name]) if n["Name"] == net.name]
    assert found[0]["IPAM"]["Config"][0]["Subnet"] == str(other)

    # In use by a container: refused, with the container named.
    task = make_task(stack, busybox_image, "sleep 30")
    await runtime.create(task, [moved])
    with pytest.raises(RuntimeFailure, match="containers use it"):
        await runtime.ensure_network(net)
    await runtime.remove_network(net.name)  # in use: kept, no error
    assert [n for n in docker_api.networks(names=[net.name]) if n["Name"] == net.name]


async def test_subnet_held_by_a_removed_stacks_bridge_is_taken_over(
    runtime: DockerRuntime,
    docker_api: docker.APIClient,
    docker_cleanup: DockerCleanup,
    unique: str,
    busybox_image: str,
) -> None:
    """``stack rm`` then ``deploy``: the old bridge may still hold the reused subnet."""
    old = make_network(docker_cleanup, f"rto{unique}")
    await runtime.ensure_network(old)
    new = Network(id=secrets.token_hex(12), name=f"rtn{unique}_net", stack=f"rtn{unique}",
                  subnet=old.subnet, gateway=old.gateway)  # fmt: skip
    docker_cleanup.networks.append(new.name)
    # While a container still uses the old bridge it is kept, and the error says why.
    task = make_task(old.stack, busybox_image, "sleep 30")
    await runtime.create(task, [old])
    with pytest.raises(RuntimeFailure, match="another Docker network on this node"):
        await runtime.ensure_network(new)
    await runtime.remove(await _container_of(docker_api, task))
    await runtime.ensure_network(new)
    names = {n["Name"] for n in docker_api.networks()}
    assert new.name in names and old.name not in names


async def _container_of(api: docker.APIClient, task: Task) -> str:
    found = api.containers(all=True, filters={"label": f"swarmlite.task={task.id}"})
    assert len(found) == 1, found
    return str(found[0]["Id"])


async def test_vips_on_bridge_reachable_from_container(
    runtime: DockerRuntime, docker_cleanup: DockerCleanup, unique: str, busybox_image: str
) -> None:
    stack = f"rtv{unique}"
    net = make_network(docker_cleanup, stack)
    await runtime.ensure_network(net)
    bridge = "sl-" + net.id[:11]
    base = ipaddress.IPv4Network(net.subnet).network_address
    vip_a, vip_b = str(base + 200), str(base + 201)

    await runtime.set_vips(net, [vip_a, vip_b])
    assert {f"{vip_a}/32", f"{vip_b}/32"} <= bridge_addrs(bridge)
    await runtime.set_vips(net, [vip_b])
    addrs = bridge_addrs(bridge)
    assert f"{vip_a}/32" not in addrs and f"{vip_b}/32" in addrs
    assert any(a.startswith(net.gateway + "/") for a in addrs)  # gateway untouched
    with pytest.raises(RuntimeFailure, match="outside the VIP range"):
        await runtime.set_vips(net, [str(base + 20)])

    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.put_nowait(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(handle, vip_b, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        task = make_task(stack, busybox_image, f"echo hi-$(hostname) | nc -w 3 {vip_b} {port}")
        cid = await runtime.create(task, [net])
        await runtime.start(cid)
        data = await asyncio.wait_for(got.get(), 10)
        assert data == f"hi-{cid[:12]}\n".encode()
    finally:
        server.close()
    await runtime.set_vips(net, [])
    assert f"{vip_b}/32" not in bridge_addrs(bridge)


async def test_events_start_healthy_and_die_on_kill(
    runtime: DockerRuntime,
    docker_api: docker.APIClient,
    docker_cleanup: DockerCleanup,
    unique: str,
    busybox_image: str,
) -> None:
    stack = f"rte{unique}"
    net = make_network(docker_cleanup, stack)
    await runtime.ensure_network(net)
    hc = HealthCheck(test=("CMD-SHELL", "test -f /tmp/ready"), interval=0.3, timeout=2, retries=3)
    task = make_task(
        stack,
        busybox_image,
        "sleep 0.5; touch /tmp/ready; exec sleep 60",
        healthcheck=hc,
        labels={"team": "a"},
    )
    events = runtime.events()
    try:
        cid = await runtime.create(task, [net])
        ev = await next_event(events, lambda e: e.action == "create", 5)
        assert (ev.container_id, ev.task_id) == (cid, task.id)
        t0 = time.monotonic()
        await runtime.start(cid)
        await next_event(events, lambda e: e.action == "start" and e.container_id == cid, 5)
        ev = await next_event(events, lambda e: e.action == "health_status", 10)
        assert (ev.health, ev.task_id) == ("healthy", task.id)
        assert time.monotonic() - t0 < 8

        info = await runtime.inspect(cid)
        assert info is not None
        assert (info.state, info.health, info.task_id, info.slot) == (
            "running",
            "healthy",
            task.id,
            1,
        )
        assert info.name == f"{task.service_name}.1.{task.id}"
        assert (
            ipaddress.IPv4Address(info.addresses[net.name])
            in ipaddress.IPv4Network(net.subnet).subnets(prefixlen_diff=1).__next__()
        )
        attrs = docker_api.inspect_container(cid)
        assert attrs["Config"]["Labels"]["team"] == "a"
        assert attrs["HostConfig"]["Dns"] == [net.gateway]
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "no"

        await asyncio.to_thread(docker_api.kill, cid)
        ev = await next_event(events, lambda e: e.action == "die", 5)
        assert (ev.container_id, ev.exit_code) == (cid, 137)
        info = await runtime.inspect(cid)
        assert info is not None and (info.state, info.exit_code) == ("exited", 137)
        assert info.finished_at >= info.started_at > 0

        events.break_stream()  # as if the engine connection dropped
        ev = await next_event(events, lambda e: e.action == "resync", 5)
    finally:
        await events.aclose()
    await runtime.remove(cid)
    await runtime.remove(cid)  # absent is fine
    assert await runtime.inspect(cid) is None


async def test_image_not_found(runtime: DockerRuntime, unique: str) -> None:
    task = make_task(f"rti{unique}", f"swarmlite/absent-{unique}:1", "true")
    assert not await runtime.image_present(task.spec.image)
    with pytest.raises(RuntimeFailure, match=f"image not found: swarmlite/absent-{unique}:1"):
        await runtime.create(task, [])


async def test_list_own_only_this_node(
    runtime: DockerRuntime, docker_cleanup: DockerCleanup, unique: str, busybox_image: str
) -> None:
    other_id = "tn" + secrets.token_hex(8)
    docker_cleanup.node_ids.append(other_id)
    other = DockerRuntime(other_id, DOCKER_HOST)
    try:
        mine = await runtime.create(make_task(f"rtl{unique}", busybox_image, "sleep 30"), [])
        await runtime.start(mine)
        theirs = await other.create(make_task(f"rtl{unique}", busybox_image, "true", 2), [])
        assert [c.id for c in await runtime.list_own()] == [mine]
        listed = await other.list_own()
        assert [(c.id, c.state, c.node_id) for c in listed] == [(theirs, "created", other_id)]
    finally:
        await other.close()


async def test_stop_honours_grace_and_signal(
    runtime: DockerRuntime, unique: str, busybox_image: str
) -> None:
    stack = f"rts{unique}"
    # PID 1 without a handler ignores SIGTERM: killed once the grace is over.
    stubborn = await runtime.create(make_task(stack, busybox_image, "exec sleep 60"), [])
    polite = await runtime.create(
        make_task(
            stack,
            busybox_image,
            "trap 'exit 3' TERM; trap 'exit 5' USR1; while :; do sleep 0.1; done",
            2,
        ),
        [],
    )
    await asyncio.gather(runtime.start(stubborn), runtime.start(polite))

    t0 = time.monotonic()
    await runtime.stop(stubborn, grace=1.5, signal=None)
    took = time.monotonic() - t0
    info = await runtime.inspect(stubborn)
    assert info is not None and (info.state, info.exit_code) == ("exited", 137)
    assert 1.4 < took < 8, took  # killed after the grace, not before

    t0 = time.monotonic()
    await runtime.stop(polite, grace=10, signal="SIGUSR1")
    assert time.monotonic() - t0 < 6  # exited on the signal, well before the 10 s grace
    info = await runtime.inspect(polite)
    assert info is not None and info.exit_code == 5
    await runtime.stop(polite, grace=1, signal=None)  # already stopped: no-op


async def test_volume_persists_and_logs(
    runtime: DockerRuntime, docker_cleanup: DockerCleanup, unique: str, busybox_image: str
) -> None:
    stack = f"rtd{unique}"
    docker_cleanup.volumes.append(f"{stack}_data")
    await runtime.ensure_volume(
        f"{stack}_data", driver="local", driver_opts={}, labels={"swarmlite.stack": stack}
    )
    await runtime.ensure_volume(f"{stack}_data", driver="local", driver_opts={}, labels={})
    mounts = (
        Mount(type="volume", source="data", target="/data"),
        Mount(type="tmpfs", target="/scratch", tmpfs_size=1 << 20),
    )
    writer = await runtime.create(
        make_task(
            stack,
            busybox_image,
            "echo kept > /data/f; for i in 1 2 3 4 5; do echo line$i; done",
            mounts=mounts,
        ),
        [],
    )
    events = runtime.events()
    try:
        await runtime.start(writer)
        await next_event(events, lambda e: e.action == "die" and e.container_id == writer, 10)
    finally:
        await events.aclose()
    tail = [line async for line in runtime.logs(writer, follow=False, tail=2)]
    assert tail == [b"line4\n", b"line5\n"]
    await runtime.remove(writer)

    reader = await runtime.create(
        make_task(
            stack,
            busybox_image,
            "cat /data/f; sleep 0.5; echo late; exec sleep 30",
            2,
            mounts=mounts,
        ),
        [],
    )
    await runtime.start(reader)
    seen: list[bytes] = []

    async def follow() -> None:
        async for line in runtime.logs(reader, follow=True, tail=None, timestamps=False):
            seen.append(line)
            if line == b"late\n":
                return

    await asyncio.wait_for(follow(), 10)
    assert seen == [b"kept\n", b"late\n"]


async def test_external_and_anonymous_volumes(
    runtime: DockerRuntime, docker_cleanup: DockerCleanup, unique: str, busybox_image: str
) -> None:
    """An external volume is mounted by its own name, not the stack's; each container
    gets its own anonymous volume (they once all shared one named "STACK_")."""
    stack = f"rtv{unique}"
    own = f"legacy{unique}"
    docker_cleanup.volumes += [own, f"{stack}_{own}", f"{stack}_"]
    api = docker_cleanup.api
    api.create_volume(own)
    seeder = api.create_container(
        busybox_image,
        ["sh", "-c", "echo old > /v/f"],
        host_config=api.create_host_config(binds={own: {"bind": "/v", "mode": "rw"}}),
    )
    docker_cleanup.containers.append(seeder["Id"])
    api.start(seeder["Id"])
    assert api.wait(seeder["Id"], timeout=10)["StatusCode"] == 0
    mounts = (
        Mount(type="volume", source=own, target="/ext", external=True),
        Mount(type="volume", target="/anon"),
    )
    command = "cat /ext/f; cat /anon/f 2>/dev/null; hostname > /anon/f; exec sleep 30"
    first, second = [
        await runtime.create(make_task(stack, busybox_image, command, slot, mounts=mounts), [])
        for slot in (1, 2)
    ]
    for cid in (first, second):
        await runtime.start(cid)
    names = [
        {m["Destination"]: m["Name"] for m in api.inspect_container(cid)["Mounts"]}
        for cid in (first, second)
    ]
    assert names[0]["/ext"] == names[1]["/ext"] == own
    assert len({names[0]["/anon"], names[1]["/anon"]}) == 2, names
    assert not api.volumes(filters={"name": f"{stack}_"})["Volumes"]
    for cid in (first, second):
        await asyncio.sleep(0.2)
        seen = [line async for line in runtime.logs(cid, follow=False, tail=None)]
        assert seen == [b"old\n"], seen  # the old data; no other container's /anon/f


async def test_parallel_create_start(
    runtime: DockerRuntime, docker_cleanup: DockerCleanup, unique: str, busybox_image: str
) -> None:
    stack = f"rtp{unique}"
    net = make_network(docker_cleanup, stack)
    extra = make_network(docker_cleanup, stack + "x")
    await asyncio.gather(runtime.ensure_network(net), runtime.ensure_network(extra))
    tasks = [make_task(stack, busybox_image, "exec sleep 60", slot) for slot in range(1, 21)]

    async def launch(task: Task) -> str:
        cid = await runtime.create(task, [net, extra])
        await runtime.start(cid)
        return cid

    t0 = time.monotonic()
    ids = await asyncio.gather(*(launch(t) for t in tasks))
    took = time.monotonic() - t0
    print(f"create+start of 20 containers on 2 networks in parallel: {took:.2f}s")
    infos = await runtime.list_own()
    assert sorted(i.id for i in infos) == sorted(ids)
    assert all(i.state == "running" and set(i.addresses) == {net.name, extra.name} for i in infos)
    assert len({i.addresses[net.name] for i in infos}) == 20
    # Creating a task's container again adopts the existing one.
    assert await runtime.create(tasks[0], [net, extra]) == ids[0]
    t0 = time.monotonic()
    await asyncio.gather(*(runtime.remove(cid) for cid in ids))
    print(f"remove of 20 running containers in parallel: {time.monotonic() - t0:.2f}s")


async def test_runner_starts_a_container_left_created_under_the_same_id(
    runtime: DockerRuntime, node_id: str, unique: str, busybox_image: str
) -> None:
    # A daemon killed between its create and its start: the next one adopts and starts it.
    from swarmlite.agent.worker import TaskRunner
    from swarmlite.spec.objects import TaskState, TaskStatus

    task = make_task(f"rtc{unique}", busybox_image, "sleep 30", networks=())
    cid = await runtime.create(task, [])
    status = TaskStatus(state=TaskState.STARTING, message="starting", container_id=cid)
    task = msgspec.structs.replace(task, node_id=node_id, status=status)
    reports: dict[str, TaskStatus] = {}
    runner = TaskRunner(runtime, node_id, lambda tid, st: reports.__setitem__(tid, st))
    await runner.start()
    try:
        runner.apply([task], [], [])
        async with asyncio.timeout(20):
            while reports.get(task.id, status).state < TaskState.RUNNING:
                await asyncio.sleep(0.05)
    finally:
        await runner.stop()
    assert reports[task.id].state == TaskState.RUNNING and reports[task.id].container_id == cid
    assert [c.id for c in await runtime.list_own()] == [cid]


async def test_runner_fails_a_task_whose_container_is_removed_and_makes_no_other(
    runtime: DockerRuntime, node_id: str, unique: str, busybox_image: str
) -> None:
    # ``docker rm -f`` of a replica: the task fails, as in Swarm; no second container.
    from swarmlite.agent.worker import TaskRunner
    from swarmlite.spec.objects import TaskState, TaskStatus

    task = make_task(f"rtr{unique}", busybox_image, "exec sleep 60", networks=())
    task = msgspec.structs.replace(task, node_id=node_id)
    reports: dict[str, TaskStatus] = {}
    runner = TaskRunner(runtime, node_id, lambda tid, st: reports.__setitem__(tid, st))

    async def reported(state: TaskState) -> TaskStatus:
        async with asyncio.timeout(20):
            while (got := reports.get(task.id)) is None or got.state < state:
                await asyncio.sleep(0.05)
        return got

    await runner.start()
    try:
        runner.apply([task], [], [])
        cid = (await reported(TaskState.RUNNING)).container_id
        subprocess.run(["docker", "rm", "-f", cid], check=True, capture_output=True)
        failed = await reported(TaskState.FAILED)
        await asyncio.sleep(1.0)  # a second container would be made by now
    finally:
        await runner.stop()
    assert failed.state == TaskState.FAILED, failed
    assert await runtime.list_own() == []
