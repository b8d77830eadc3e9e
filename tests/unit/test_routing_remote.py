"""Routing to replicas on other nodes: table planning, dialing, and a loopback mesh."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from swarmlite.manager.routes import build_routes
from swarmlite.proxy.context import ProxyContext
from swarmlite.proxy.mesh import MeshProxy
from swarmlite.proxy.table import RoutingTable, Target, parse_host_port, plan_listeners
from swarmlite.spec.objects import Node, NodeStatus, Service, Task, TaskState, TaskStatus
from swarmlite.spec.routes import Backend, ServiceRoute
from swarmlite.spec.service import PortSpec, ServiceSpec
from swarmlite.store.cache import ClusterState
from swarmlite.store.store import Versioned
from tests.unit.test_proxy_support import NET, TcpBackend, free_port, route, snapshot


def _b(task: str, node: str, ip: str = "", remote: dict[int, str] | None = None) -> Backend:
    return Backend(
        task_id=task,
        node_id=node,
        addresses={NET: ip} if ip else {},
        remote_ports=remote or {},
    )


def _svc() -> ServiceRoute:
    return route(
        "web",
        backends=(
            _b("local", "n1", "10.0.0.2"),
            _b("far", "n2", "10.0.0.3", {8080: "192.168.1.7:32768"}),
            _b("dark", "n3", "10.0.0.4"),  # no published port: unreachable from n1
            _b("hostnet", "n4", remote={8080: "192.168.1.9:8080"}),  # no container address
        ),
        target=8080,
        published=80,
        endpoints={"st_default": "10.0.0.200"},
        listen_ports=(8080,),
    )


def test_plan_targets_remote_backends_at_their_published_port() -> None:
    plans, _ = plan_listeners(snapshot(_svc()), "0.0.0.0", "n1")
    expect = (
        Target("local", "n1", "10.0.0.2", 8080, None),
        Target("far", "n2", "10.0.0.3", 8080, ("192.168.1.7", 32768)),
        Target("hostnet", "n4", "", 8080, ("192.168.1.9", 8080)),
    )
    assert plans[("0.0.0.0", 80)].targets == expect
    assert plans[("10.0.0.200", 8080)].targets == expect  # VIP: the same port


def test_plan_remote_entry_is_looked_up_by_target_port() -> None:
    svc = route(
        "web",
        backends=(_b("far", "n2", "10.0.0.3", {9000: "192.168.1.7:32768"}),),
        target=8080,
        published=80,
    )
    plans, _ = plan_listeners(snapshot(svc), "0.0.0.0", "n1")
    assert plans[("0.0.0.0", 80)].targets == ()  # remote, but not for port 8080


def test_plan_without_local_node_keeps_every_dialable_backend() -> None:
    plans, _ = plan_listeners(snapshot(_svc()), "0.0.0.0")
    assert [t.task_id for t in plans[("0.0.0.0", 80)].targets] == [
        "local",
        "far",
        "dark",
        "hostnet",
    ]


def test_table_with_local_node_skips_unreachable() -> None:
    table = RoutingTable.from_snapshot(snapshot(_svc()), "0.0.0.0", "n1")
    picker = table.picker(("0.0.0.0", 80))
    assert picker is not None
    assert [t.task_id for t in picker.targets] == ["local", "far", "hostnet"]


def test_context_address_local_remote_and_unreachable() -> None:
    ctx = ProxyContext("n1")
    assert ctx.address(Target("a", "n1", "10.0.0.2", 80)) == ("10.0.0.2", 80)
    assert ctx.address(Target("a", "n1", "", 80, ("1.2.3.4", 5))) is None  # local: no address
    assert ctx.address(Target("b", "n2", "10.0.0.3", 80, ("1.2.3.4", 5))) == ("1.2.3.4", 5)
    assert ctx.address(Target("c", "n2", "10.0.0.3", 80)) is None


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("10.0.0.5:32768", ("10.0.0.5", 32768)),
        ("[fd00::5]:80", ("fd00::5", 80)),
        ("10.0.0.5", None),
        (":80", None),
        ("10.0.0.5:0", None),
        ("10.0.0.5:http", None),
    ],
)
def test_parse_host_port(value: str, parsed: tuple[str, int] | None) -> None:
    assert parse_host_port(value) == parsed


def _task(
    tid: str,
    spec: ServiceSpec,
    node_id: str,
    status: TaskStatus,
    desired: TaskState = TaskState.RUNNING,
) -> Task:
    return Task(
        id=tid,
        service_id="s1",
        service_name=spec.full_name,
        slot=1,
        spec=spec,
        spec_version=1,
        spec_hash="h",
        node_id=node_id,
        desired_state=desired,
        status=status,
    )


def test_build_routes_copies_remote_ports() -> None:
    spec = ServiceSpec(name="web", stack="st", image="img", ports=(PortSpec(target=80),))
    running = TaskStatus(state=TaskState.RUNNING, remote_ports={80: "192.168.1.7:32768"})

    def task(tid: str, status: TaskStatus) -> Versioned[Task]:
        return Versioned(_task(tid, spec, "n2", status), 1)

    ready = Node(
        id="n2", hostname="h", addr="10.0.0.2", api_port=1, status=NodeStatus(state="ready")
    )
    state = ClusterState(
        revision=3,
        services={"s1": Versioned(Service(id="s1", spec=spec), 1)},
        tasks={
            "t1": task("t1", running),
            "t2": task("t2", TaskStatus(state=TaskState.RUNNING)),  # no way to reach it
        },
        nodes={"n2": Versioned(ready, 2)},
    )
    (svc,) = build_routes(state).services
    assert svc.backends == (
        Backend(task_id="t1", node_id="n2", addresses={}, remote_ports={80: "192.168.1.7:32768"}),
    )
    # Its node goes down or is removed: the task keeps its last status (no agent will
    # change it, and a spent restart policy may never replace it), but no mesh routes
    # there any more.
    down = Node(id="n2", hostname="h", addr="10.0.0.2", api_port=1, status=NodeStatus(state="down"))
    for nodes in ({"n2": Versioned(down, 4)}, {}):
        lost = ClusterState(revision=4, services=state.services, tasks=state.tasks, nodes=nodes)
        (svc,) = build_routes(lost).services
        assert svc.backends == ()


def test_build_routes_lists_live_unrouted_replicas_apart() -> None:
    spec = ServiceSpec(name="api", stack="st", image="img", expose=(8000,))

    def task(tid: str, state: TaskState, desired: TaskState = TaskState.RUNNING) -> Task:
        status = TaskStatus(state=state, addresses={NET: f"10.0.0.{len(tid)}{tid[-1]}"})
        return _task(tid, spec, "n1", status, desired)

    ready = Node(
        id="n1", hostname="h", addr="10.0.0.2", api_port=1, status=NodeStatus(state="ready")
    )
    tasks = (
        task("t1", TaskState.RUNNING),
        task("t2", TaskState.STARTING),  # waiting for its healthcheck
        task("t3", TaskState.RUNNING, desired=TaskState.SHUTDOWN),  # being stopped
        task("t4", TaskState.FAILED),  # its container is gone
    )
    state = ClusterState(
        revision=3,
        services={"s1": Versioned(Service(id="s1", spec=spec), 1)},
        tasks={t.id: Versioned(t, 1) for t in tasks},
        nodes={"n1": Versioned(ready, 2)},
    )
    (svc,) = build_routes(state).services
    assert [b.task_id for b in svc.backends] == ["t1"]
    assert [b.task_id for b in svc.unrouted] == ["t2", "t3"]
    assert svc.unrouted[0].addresses == {NET: "10.0.0.22"}


# ---- a real mesh over loopback ------------------------------------------------------


async def _ask(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"name\n")
    data = await asyncio.wait_for(r.read(), 5)
    w.close()
    return data.strip()


async def test_mesh_balances_over_local_and_remote_replicas(mesh: MeshProxy) -> None:
    port = free_port("127.0.0.2")
    here = await TcpBackend("here", "127.0.0.2", port).start()
    there = await TcpBackend("there", "127.0.0.3", port).start()
    try:
        published = free_port()
        svc = route(
            "web",
            target=port,
            published=published,
            backends=(
                _b("here", "n1", "127.0.0.2"),
                # Its container address is another host's; only the published port works.
                _b("there", "n2", "10.99.0.3", {port: f"127.0.0.3:{port}"}),
            ),
        )
        await mesh.apply(snapshot(svc))
        names = Counter([await _ask(published) for _ in range(20)])
        assert names == {b"here": 10, b"there": 10}
    finally:
        await here.stop()
        await there.stop()


async def test_mesh_never_dials_a_remote_replica_without_a_published_port(
    mesh: MeshProxy,
) -> None:
    port = free_port("127.0.0.2")
    here = await TcpBackend("here", "127.0.0.2", port).start()
    # Listening where the unpublished replica's container address would lead locally.
    decoy = await TcpBackend("decoy", "127.0.0.4", port).start()
    try:
        published = free_port()
        svc = route(
            "web",
            target=port,
            published=published,
            backends=(_b("here", "n1", "127.0.0.2"), _b("dark", "n2", "127.0.0.4")),
        )
        await mesh.apply(snapshot(svc))
        names = Counter([await _ask(published) for _ in range(6)])
        assert names == {b"here": 6}
        assert decoy.accepts == 0
    finally:
        await here.stop()
        await decoy.stop()
