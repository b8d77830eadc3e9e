"""Node networking mode: containers in the node's namespace, and the routes it serves. Pure."""

from __future__ import annotations

from swarmlite.agent.containers import (
    NodeNamespace,
    container_config,
    container_info,
    outside_node_namespace,
)
from swarmlite.agent.node_network import NODE_DNS_ADDR, NODE_NETWORK, node_local_routes
from swarmlite.agent.observe import observed_status
from swarmlite.spec.objects import Network, Task, TaskState
from swarmlite.spec.routes import Backend, RoutesSnapshot, ServiceRoute
from swarmlite.spec.service import PortSpec, ServiceSpec

NET = Network(
    id="abc", name="shop_front", stack="shop", subnet="10.213.4.0/24", gateway="10.213.4.1"
)
NS = NodeNamespace(container_id="c0ffee", addr="10.240.7.10")


def task() -> Task:
    spec = ServiceSpec(
        name="web",
        stack="shop",
        image="img",
        ports=(PortSpec(target=8080, published=18080),),
        expose=(9000,),
    )
    return Task(
        id="t1", service_id="s1", service_name="shop_web", slot=1, spec=spec,
        spec_version=1, spec_hash="h", node_id="n1",
    )  # fmt: skip


def test_node_mode_container_joins_the_node_namespace_and_publishes_nothing() -> None:
    cfg = container_config(task(), [NET], "n1", advertise_addr=NS.addr, node_ns=NS)
    assert cfg.host_config["NetworkMode"] == "container:c0ffee"
    assert "Dns" not in cfg.host_config and "PortBindings" not in cfg.host_config
    assert cfg.networks == () and cfg.create_kwargs()["networking_config"] is None
    assert cfg.labels["swarmlite.node-addr"] == NS.addr
    assert cfg.labels["swarmlite.networks"] == "shop_front"
    assert cfg.labels["swarmlite.listen-ports"] == "8080,9000"


def test_bridge_mode_is_unchanged_without_a_node_namespace() -> None:
    cfg = container_config(task(), [NET], "n1")
    assert cfg.host_config["NetworkMode"] == "shop_front"
    assert cfg.host_config["Dns"] == ["10.213.4.1"]
    assert "swarmlite.node-addr" not in cfg.labels


def _attrs(status: str) -> dict[str, object]:
    cfg = container_config(task(), [NET], "n1", node_ns=NS)
    return {
        "Id": "x1",
        "Name": "/shop_web.1.t1",
        "State": {"Status": status, "ExitCode": 0},
        "Config": {"Labels": cfg.labels},
        "NetworkSettings": {"Networks": {}, "Ports": {}},
    }


def test_node_mode_addresses_read_off_the_labels_while_running() -> None:
    info = container_info(_attrs("running"))
    assert info.addresses == {"shop_front": NS.addr}
    assert info.host_ports == {8080: f"{NS.addr}:8080", 9000: f"{NS.addr}:9000"}
    status = observed_status(task(), info)
    assert status.state == TaskState.RUNNING
    assert status.remote_ports == {8080: f"{NS.addr}:8080", 9000: f"{NS.addr}:9000"}
    stopped = container_info(_attrs("exited"))
    assert stopped.addresses == {} and stopped.host_ports == {}


def test_node_local_routes_drop_vips_and_put_everything_on_one_network() -> None:
    route = ServiceRoute(
        service_id="s1", name="shop_web", short_name="web", stack="shop",
        networks=("shop_front",), endpoints={"shop_front": "10.213.4.200"},
        ports=(PortSpec(target=8080, published=18080),), listen_ports=(8080,),
        backends=(
            Backend(task_id="t1", node_id="n1", addresses={"shop_front": "10.240.7.10"},
                    remote_ports={8080: "10.240.7.10:8080"}),
            Backend(task_id="t2", node_id="n2", addresses={}),
        ),
        unrouted=(Backend(task_id="t3", node_id="n3", addresses={"shop_front": "10.240.7.11"}),),
    )  # fmt: skip
    served = node_local_routes(RoutesSnapshot(revision=9, services=(route,), networks=(NET,)))
    assert served.revision == 9
    (net,) = served.networks
    assert (net.name, net.gateway) == (NODE_NETWORK, NODE_DNS_ADDR)
    (r,) = served.services
    assert r.endpoints == {} and r.networks == (NODE_NETWORK,)
    assert [b.addresses for b in r.backends] == [{NODE_NETWORK: "10.240.7.10"}, {}]
    assert r.backends[0].remote_ports == {8080: "10.240.7.10:8080"}
    assert r.ports == route.ports
    # A starting replica's node address is every container's there: not an asker on
    # shop_front, which no service is on any more.
    assert r.unrouted == ()


def test_a_task_from_before_the_node_restarted_is_seen_as_exited() -> None:
    ns = NodeNamespace(container_id="c0ffee", addr=NS.addr, started_at=1.9e9)  # 2030
    attrs = _attrs("running")
    attrs["State"] = {"Status": "running", "StartedAt": "2026-01-01T00:00:00Z"}  # before 2030
    old = outside_node_namespace(container_info(attrs), ns)
    assert old.state == "exited" and old.addresses == {} and "restarted" in old.error
    assert observed_status(task(), old).state == TaskState.FAILED
    fresh = NodeNamespace(container_id="c0ffee", addr=NS.addr, started_at=1.0)
    assert outside_node_namespace(container_info(attrs), fresh).state == "running"
