"""Publishing listen ports for other nodes' meshes, and reading them back. Pure."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from swarmlite.agent.containers import container_config, container_host_ports, container_info
from swarmlite.agent.observe import observed_status
from swarmlite.spec.objects import Network, Task, TaskState
from swarmlite.spec.service import PortSpec, ServiceSpec

NET = Network(
    id="abcdef0123456789",
    name="shop_front",
    stack="shop",
    subnet="10.213.4.0/24",
    gateway="10.213.4.1",
)


def task() -> Task:
    spec = ServiceSpec(
        name="web",
        stack="shop",
        image="img",
        ports=(PortSpec(target=8080, published=80), PortSpec(target=53, protocol="udp")),
        expose=(9000,),
    )
    return Task(
        id="t1",
        service_id="s1",
        service_name="shop_web",
        slot=1,
        spec=spec,
        spec_version=1,
        spec_hash="h",
        node_id="n1",
    )


def test_listen_ports_published_on_the_advertise_address() -> None:
    cfg = container_config(task(), [NET], "n1", advertise_addr="10.0.0.5")
    assert cfg.host_config["PortBindings"] == {
        "8080/tcp": [{"HostIp": "10.0.0.5", "HostPort": ""}],
        "9000/tcp": [{"HostIp": "10.0.0.5", "HostPort": ""}],
    }
    assert cfg.create_kwargs()["ports"] == [8080, 9000]


@pytest.mark.parametrize("addr", [None, "", "127.0.0.1", "127.0.1.1", "::1", "0.0.0.0", "node-a"])
def test_nothing_published_without_a_routable_advertise_address(addr: str | None) -> None:
    cfg = container_config(task(), [NET], "n1", advertise_addr=addr)
    assert "PortBindings" not in cfg.host_config
    assert cfg.create_kwargs()["ports"] is None


def _attrs(ports: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "Id": "c1",
        "Name": "/shop_web.1.t1",
        "State": {"Status": "running"},
        "Config": {"Labels": {"swarmlite.task": "t1"}},
        "NetworkSettings": {
            "Networks": {"shop_front": {"IPAddress": "10.213.4.2"}},
            "Ports": ports,
        },
    }


def test_container_info_parses_published_ports() -> None:
    info = container_info(
        _attrs(
            {
                "8080/tcp": [
                    {"HostIp": "10.0.0.5", "HostPort": "32768"},
                    {"HostIp": "fd00::5", "HostPort": "32768"},
                ],
                "9000/tcp": [{"HostIp": "fd00::5", "HostPort": "32769"}],
                "7000/tcp": None,  # exposed, not published
                "53/udp": [{"HostIp": "10.0.0.5", "HostPort": "32770"}],
                "81/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32771"}],  # no address to dial
            }
        )
    )
    assert info.host_ports == {8080: "10.0.0.5:32768", 9000: "[fd00::5]:32769"}


def test_container_info_without_ports() -> None:
    assert container_info(_attrs(None)).host_ports == {}
    assert container_host_ports({"NetworkSettings": None}) == {}


def test_observed_status_reports_remote_ports() -> None:
    info = container_info(_attrs({"8080/tcp": [{"HostIp": "10.0.0.5", "HostPort": "32768"}]}))
    status = observed_status(task(), info, now=1.0)
    assert status.state == TaskState.RUNNING
    assert status.remote_ports == {8080: "10.0.0.5:32768"}
    assert status.addresses == {"shop_front": "10.213.4.2"}


def test_host_mode_ports_are_published_on_the_node_as_in_swarm() -> None:
    host = (
        PortSpec(target=8080, published=18080, mode="host"),
        PortSpec(target=53, published=5353, protocol="udp", mode="host"),
        PortSpec(target=7000, mode="host"),  # no published port: Docker picks one
    )
    t = task()
    t = msgspec.structs.replace(t, spec=msgspec.structs.replace(t.spec, ports=host))
    cfg = container_config(t, [NET], "n1", advertise_addr="10.0.0.5")
    assert cfg.host_config["PortBindings"] == {
        "8080/tcp": [
            {"HostIp": "10.0.0.5", "HostPort": ""},  # for the meshes of other nodes
            {"HostIp": "", "HostPort": "18080"},
        ],
        "7000/tcp": [
            {"HostIp": "10.0.0.5", "HostPort": ""},
            {"HostIp": "", "HostPort": ""},
        ],
        "9000/tcp": [{"HostIp": "10.0.0.5", "HostPort": ""}],
        "53/udp": [{"HostIp": "", "HostPort": "5353"}],
    }
    # Docker publishes only exposed ports.
    exposed = [7000, 8080, 9000, (8080, "tcp"), (53, "udp"), (7000, "tcp")]
    assert cfg.create_kwargs()["ports"] == exposed
    alone = container_config(t, [NET], "n1")  # no advertise address: still on the node
    assert alone.host_config["PortBindings"]["8080/tcp"] == [{"HostIp": "", "HostPort": "18080"}]
