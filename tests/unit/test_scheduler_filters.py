"""Each scheduler filter's check and its exact explanation; constraint parsing."""

from __future__ import annotations

import pytest

from swarmlite.errors import SpecError
from swarmlite.manager.scheduler import (
    AvailabilityFilter,
    ConstraintFilter,
    EngineFilter,
    HostPortFilter,
    MaxReplicasFilter,
    NewVolumeFilter,
    NodeInfo,
    Pipeline,
    ReadyNodeFilter,
    ResourceFilter,
    VolumeAffinityFilter,
    build_node_infos,
    parse_constraint,
    parse_preference,
)
from swarmlite.spec.objects import Node, Task
from tests.unit.test_scheduler_fakes import GIB, node, running, spec, task, volume


def info(n: Node, *on_it: Task) -> NodeInfo:
    return build_node_infos([n], on_it)[n.id]


WEB = task(spec("web"), 1)


def test_ready_node_filter() -> None:
    f = ReadyNodeFilter()
    assert f.enabled(WEB)
    assert f.check(WEB, info(node("n1")))
    assert not f.check(WEB, info(node("n1", state="down")))
    assert not f.check(WEB, info(node("n1", state="unknown")))
    assert f.explain(1) == "1 node not ready"
    assert f.explain(3) == "3 nodes not ready"


def test_engine_filter() -> None:
    f = EngineFilter()
    assert f.check(WEB, info(node("n1")))
    assert not f.check(WEB, info(node("n1", engine="docker engine unresponsive: x")))
    assert f.explain(1) == "1 node with an unresponsive docker engine"


def test_availability_filter() -> None:
    f = AvailabilityFilter()
    assert f.check(WEB, info(node("n1")))
    assert not f.check(WEB, info(node("n1", availability="pause")))
    assert not f.check(WEB, info(node("n1", availability="drain")))
    assert f.explain(2) == "2 nodes paused or drained"


def test_constraint_filter() -> None:
    f = ConstraintFilter(parse_constraint("node.labels.zone == eu"))
    assert f.check(WEB, info(node("n1", labels={"zone": "eu"})))
    assert not f.check(WEB, info(node("n1", labels={"zone": "us"})))
    assert not f.check(WEB, info(node("n1")))
    assert f.explain(3) == "constraint node.labels.zone==eu fails on 3 nodes"


def test_resource_filter_memory_and_cpu() -> None:
    t = task(spec("db", memory=3 * GIB, cpus=1.5), 1)
    big = spec("big", memory=6 * GIB, cpus=3.0)
    mem, cpu = ResourceFilter("memory"), ResourceFilter("cpu")
    assert mem.enabled(t) and cpu.enabled(t)
    assert not mem.enabled(WEB) and not cpu.enabled(WEB)
    empty = info(node("n1", memory=8 * GIB, cpus=4))
    full = info(node("n1", memory=8 * GIB, cpus=4), running(big, 1, "n1"))
    assert mem.check(t, empty) and cpu.check(t, empty)
    assert not mem.check(t, full) and not cpu.check(t, full)
    assert mem.explain(1) == "insufficient memory on 1 node"
    assert cpu.explain(2) == "insufficient cpu on 2 nodes"


def test_resource_filter_cpu_is_exact() -> None:
    # 0.1 + 0.2 > 0.3 in floats; nano-cpus make three 0.1 reservations fit 0.3 cores.
    t = task(spec("w", cpus=0.1), 1)
    n = node("n1", cpus=0.3)
    assert ResourceFilter("cpu").check(t, info(n, running(spec("a", cpus=0.2), 1, "n1")))


def test_max_replicas_filter() -> None:
    s = spec("web", max_per_node=2)
    f = MaxReplicasFilter(2)
    assert f.enabled(task(s, 3))
    assert not MaxReplicasFilter(0).enabled(task(s, 3))
    assert f.check(task(s, 3), info(node("n1"), running(s, 1, "n1")))
    assert not f.check(task(s, 3), info(node("n1"), running(s, 1, "n1"), running(s, 2, "n1")))
    assert f.explain(3) == "max_replicas_per_node 2 reached on 3 nodes"


def test_host_port_filter() -> None:
    other = spec("other", host_ports=(8080,))
    f = HostPortFilter((8080, "tcp"))
    assert f.check(WEB, info(node("n1")))
    assert not f.check(WEB, info(node("n1"), running(other, 1, "n1")))
    assert HostPortFilter((8080, "udp")).check(WEB, info(node("n1"), running(other, 1, "n1")))
    assert f.explain(2) == "host port 8080/tcp in use on 2 nodes"


def test_volume_affinity_filter() -> None:
    infos = build_node_infos([node("n1"), node("n3", state="down")], [])
    down = VolumeAffinityFilter("data", "n3", infos)
    assert down.check(WEB, infos["n3"]) and not down.check(WEB, infos["n1"])
    assert down.explain(1) == "volume data lives on node n3, which is down"
    up = VolumeAffinityFilter("data", "n1", infos)
    assert up.explain(1) == "volume data lives on another node"
    gone = VolumeAffinityFilter("data", "n9", infos)
    assert gone.explain(2) == "volume data lives on node n9, which is down"


def test_new_volume_filter_follows_the_planners_claims() -> None:
    infos = build_node_infos([node("n1"), node("n2")], [])
    claims: dict[str, str] = {}
    f = NewVolumeFilter("data", "shop_data", claims)
    assert f.check(WEB, infos["n1"]) and f.check(WEB, infos["n2"])
    claims["shop_data"] = "n2"
    assert f.check(WEB, infos["n2"]) and not f.check(WEB, infos["n1"])
    assert f.explain(1) == "volume data will live on node n2, where a task mounting it went"


def test_pipeline_enables_only_what_the_spec_asks_for() -> None:
    infos = build_node_infos([node("n1")], [])
    plain = Pipeline.for_task(WEB, infos, {})
    assert [f.name for f in plain.filters] == ["ready", "engine", "availability"]
    rich = task(
        spec(
            "db",
            constraints=("node.role==worker",),
            memory=GIB,
            max_per_node=1,
            host_ports=(5432,),
            volumes=("data",),
        ),
        1,
    )
    vols = {"shop_data": volume("data", "n1")}
    names = [f.name for f in Pipeline.for_task(rich, infos, vols).filters]
    assert names == [
        "ready",
        "engine",
        "availability",
        "constraint",
        "resources",
        "max_replicas_per_node",
        "host_port",
        "volume",
    ]


@pytest.mark.parametrize(
    ("expr", "labels", "expected"),
    [
        ("node.labels.zone==eu", {"zone": "eu"}, True),
        ("  node.labels.zone   ==   eu ", {"zone": "eu"}, True),
        ("node.labels.zone==EU", {"zone": "eu"}, True),
        ("node.labels.zone!=eu", {"zone": "eu"}, False),
        ("node.labels.zone!=eu", {}, True),
        ("node.labels.zone==eu", {}, False),
        ("engine.labels.disk==ssd", {"disk": "ssd"}, True),
        ("node.role==worker", {}, True),
        ("node.role!=manager", {}, True),
        ("node.role==manager", {}, False),
        ("node.id==n1", {}, True),
        ("node.hostname==host-n1", {}, True),
        ("node.hostname!=host-n1", {}, False),
        ("node.platform.os==linux", {}, True),
        ("node.platform.arch==amd64", {}, True),
        ("node.platform.arch==x86_64", {}, True),
        ("node.platform.arch==aarch64", {}, False),
    ],
)
def test_constraint_matching(expr: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_constraint(expr).matches(node("n1", labels=labels)) is expected


def test_constraint_canonical_text() -> None:
    assert parse_constraint(" node.labels.zone != eu ").text == "node.labels.zone!=eu"


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("node.labels.zone=eu", "expected KEY==VALUE"),
        ("node.labels.zone", "expected KEY==VALUE"),
        ("node.labels.zone==", "empty value"),
        ("node.labels.==eu", "empty label name"),
        ("node.colour==red", "unknown key 'node.colour'"),
        ("==eu", "unknown key ''"),
        ("node.labels.zone==eu==us", "more than one operator"),
        ("node.labels.my zone==eu", "whitespace"),
    ],
)
def test_malformed_constraint_raises_spec_error(expr: str, why: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_constraint(expr)
    assert repr(expr) in str(err.value)
    assert why in str(err.value)


def test_preference_parsing() -> None:
    assert parse_preference("spread=node.labels.zone") == "zone"
    assert parse_preference("spread = node.labels.rack") == "rack"
    assert parse_preference("node.labels.zone") == "zone"
    for bad in ("binpack=node.labels.zone", "spread=node.hostname", "zone"):
        with pytest.raises(SpecError, match="invalid placement preference"):
            parse_preference(bad)
