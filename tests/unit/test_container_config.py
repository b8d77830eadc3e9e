"""The pure Docker translations of the agent runtime: no engine needed."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from swarmlite.agent.containers import (
    bridge_name,
    container_addresses,
    container_config,
    container_info,
    split_subnet,
)
from swarmlite.agent.docker_streams import parse_event
from swarmlite.agent.healthchecks import health_of, healthcheck_of
from swarmlite.agent.netlink import parse_host_addresses, plan_vips
from swarmlite.errors import RuntimeFailure
from swarmlite.spec.objects import Network, Task
from swarmlite.spec.service import (
    HealthCheck,
    Mount,
    ResourceAmounts,
    Resources,
    ServiceSpec,
)

NET_A = Network(
    id="abcdef0123456789",
    name="shop_front",
    stack="shop",
    subnet="10.213.4.0/24",
    gateway="10.213.4.1",
)
NET_B = Network(
    id="fedcba9876543210",
    name="shop_back",
    stack="shop",
    subnet="10.213.5.0/24",
    gateway="10.213.5.1",
)


def task(slot: int = 2, **spec: Any) -> Task:
    service = ServiceSpec(name="web", stack="shop", image="swarmlite/demo-web:1", **spec)
    return Task(
        id="t123",
        service_id="s456",
        service_name="shop_web",
        slot=slot,
        spec=service,
        spec_version=3,
        spec_hash="h789",
    )


def test_name_labels_and_defaults() -> None:
    cfg = container_config(task(labels={"team": "a"}), [NET_A, NET_B], "node1")
    assert cfg.name == "shop_web.2.t123"
    assert cfg.labels == {
        "team": "a",
        "swarmlite.node": "node1",
        "swarmlite.stack": "shop",
        "swarmlite.service": "shop_web",
        "swarmlite.service.id": "s456",
        "swarmlite.task": "t123",
        "swarmlite.slot": "2",
        "swarmlite.spec-hash": "h789",
        "com.docker.stack.namespace": "shop",
    }
    hc = cfg.host_config
    assert hc["Dns"] == ["10.213.4.1"]
    assert hc["RestartPolicy"] == {"Name": "no"}
    assert hc["Init"] is False
    assert hc["NetworkMode"] == "shop_front"
    assert "PortBindings" not in hc
    assert cfg.networks == ("shop_front", "shop_back")
    kwargs = cfg.create_kwargs()
    assert kwargs["networking_config"] == {"EndpointsConfig": {"shop_front": {}}}
    assert kwargs["command"] is None and kwargs["entrypoint"] is None  # image defaults
    assert kwargs["healthcheck"] is None
    assert kwargs["stop_timeout"] == 10
    assert "hostname" not in kwargs  # Docker's default: the short container id


def test_global_task_name_and_our_labels_win() -> None:
    cfg = container_config(task(slot=0, labels={"swarmlite.node": "spoof"}), [NET_A], "n1")
    assert cfg.name == "shop_web.g.t123"
    assert cfg.labels["swarmlite.node"] == "n1"
    assert cfg.labels["swarmlite.slot"] == "0"


def test_process_settings() -> None:
    cfg = container_config(
        task(
            command=("httpd", "-f"),
            entrypoint=("/bin/busybox",),
            environment={"A": "1"},
            working_dir="/www",
            user="nobody",
            stop_signal="SIGQUIT",
            stop_grace_period=2.5,
        ),
        [NET_A],
        "n1",
    )
    assert (cfg.command, cfg.entrypoint) == (["httpd", "-f"], ["/bin/busybox"])
    assert cfg.environment == ["A=1"]
    assert (cfg.working_dir, cfg.user, cfg.stop_signal, cfg.stop_timeout) == (
        "/www",
        "nobody",
        "SIGQUIT",
        3,
    )


def test_healthcheck_in_nanoseconds_and_none() -> None:
    hc = HealthCheck(
        test=("CMD", "nc", "-z", "127.0.0.1", "80"),
        interval=0.5,
        timeout=2,
        retries=4,
        start_period=1.25,
    )
    cfg = container_config(task(healthcheck=hc), [NET_A], "n1")
    assert cfg.healthcheck == {
        "test": ["CMD", "nc", "-z", "127.0.0.1", "80"],
        "interval": 500_000_000,
        "timeout": 2_000_000_000,
        "retries": 4,
        "start_period": 1_250_000_000,
    }
    image_own = HealthCheck(test=(), interval=5, timeout=0, retries=0)
    cfg = container_config(task(healthcheck=image_own), [NET_A], "n1")
    assert cfg.healthcheck == {  # the engine fills the empty test and each 0 from the image
        "test": [],
        "interval": 5_000_000_000,
        "timeout": 0,
        "retries": 0,
        "start_period": 0,
    }
    off = container_config(task(healthcheck=HealthCheck(test=("NONE",))), [NET_A], "n1")
    assert off.healthcheck == {"test": ["NONE"]}


def test_resources() -> None:
    res = Resources(
        limits=ResourceAmounts(cpus=0.5, memory=64 << 20),
        reservations=ResourceAmounts(memory=32 << 20),
    )
    hc = container_config(task(resources=res), [NET_A], "n1").host_config
    assert (hc["NanoCpus"], hc["Memory"], hc["MemoryReservation"]) == (
        500_000_000,
        64 << 20,
        32 << 20,
    )
    plain = container_config(task(), [NET_A], "n1").host_config
    assert not {"NanoCpus", "Memory", "MemoryReservation"} & set(plain)


def test_mounts() -> None:
    mounts = (
        Mount(type="volume", source="data", target="/data"),
        Mount(type="bind", source="/srv/conf", target="/conf", read_only=True),
        Mount(type="tmpfs", target="/scratch", tmpfs_size=1 << 20),
    )
    got = container_config(task(mounts=mounts), [NET_A], "n1").host_config["Mounts"]
    assert got[0] == {"Target": "/data", "Source": "shop_data", "Type": "volume", "ReadOnly": False}
    assert got[1] == {"Target": "/conf", "Source": "/srv/conf", "Type": "bind", "ReadOnly": True}
    assert got[2]["Type"] == "tmpfs" and got[2]["TmpfsOptions"] == {"SizeBytes": 1 << 20}


def test_no_networks() -> None:
    cfg = container_config(task(), [], "n1")
    assert cfg.create_kwargs()["networking_config"] is None
    assert "Dns" not in cfg.host_config


def test_bridge_name_and_halves() -> None:
    assert bridge_name(NET_A) == "sl-abcdef01234"
    assert len(bridge_name(NET_A)) <= 15
    lower, upper = split_subnet("10.213.4.0/24")
    assert (str(lower), str(upper)) == ("10.213.4.0/25", "10.213.4.128/25")


INSPECT: dict[str, Any] = {
    "Id": "c" * 64,
    "Name": "/shop_web.2.t123",
    "State": {
        "Status": "exited",
        "Running": False,
        "ExitCode": 137,
        "Error": "",
        "StartedAt": "2026-11-21T10:00:00.5Z",
        "FinishedAt": "2026-11-21T10:00:03.25Z",
        "Health": {"Status": "unhealthy", "FailingStreak": 3},
    },
    "Config": {
        "Labels": {
            "swarmlite.task": "t123",
            "swarmlite.service.id": "s456",
            "swarmlite.service": "shop_web",
            "swarmlite.slot": "2",
            "swarmlite.node": "n1",
            "swarmlite.spec-hash": "h789",
        },
        "StopTimeout": 45,
    },
    "NetworkSettings": {
        "Networks": {"shop_front": {"IPAddress": "10.213.4.7"}, "shop_back": {"IPAddress": ""}}
    },
}


def test_container_info_from_inspect() -> None:
    info = container_info(INSPECT)
    assert (info.name, info.task_id, info.service_id, info.slot, info.node_id) == (
        "shop_web.2.t123",
        "t123",
        "s456",
        2,
        "n1",
    )
    assert (info.state, info.exit_code, info.health, info.spec_hash) == (
        "exited",
        137,
        "unhealthy",
        "h789",
    )
    assert info.addresses == {"shop_front": "10.213.4.7"}
    assert info.stop_grace == 45.0  # the task's stop_grace_period, for a stop without it
    assert info.finished_at - info.started_at == pytest.approx(2.75)


def test_running_container_has_no_exit_code_and_no_health() -> None:
    attrs = {
        **INSPECT,
        "State": {
            "Status": "running",
            "ExitCode": 0,
            "StartedAt": "2026-11-21T10:00:00Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
        },
    }
    info = container_info(attrs)
    assert (info.exit_code, info.health, info.finished_at) == (None, "none", 0.0)
    no_timeout = {**attrs, "Config": {"Labels": {}}}
    assert container_info(no_timeout).stop_grace == 10.0  # Docker's default
    assert health_of({}) == "none"
    assert container_addresses({}) == {}


def test_parse_event() -> None:
    base = {
        "Type": "container",
        "id": "c1",
        "timeNano": 1_700_000_000_500_000_000,
        "Actor": {"ID": "c1", "Attributes": {"swarmlite.task": "t1", "exitCode": "3"}},
    }
    die = parse_event({**base, "Action": "die"})
    assert die is not None
    assert (die.container_id, die.task_id, die.exit_code, die.time) == (
        "c1",
        "t1",
        3,
        1_700_000_000.5,
    )
    health = parse_event({**base, "Action": "health_status: healthy"})
    assert health is not None and (health.action, health.health) == ("health_status", "healthy")
    assert parse_event({**base, "Action": "exec_start: sh -c true"}) is None
    assert parse_event({**base, "Type": "network", "Action": "connect"}) is None
    start = parse_event({**base, "Action": "start"})
    assert start is not None and (start.exit_code, start.health) == (None, None)


def test_vip_plan_touches_only_the_upper_half() -> None:
    out = (
        "7: sl-abc    inet 10.213.4.1/24 brd 10.213.4.255 scope global sl-abc\\\n"
        "7: sl-abc    inet 10.213.4.200/32 scope global sl-abc\\\n"
        "7: sl-abc    inet 10.213.4.20/32 scope global sl-abc\\\n"
    )
    current = parse_host_addresses(out)
    assert current == {"10.213.4.200", "10.213.4.20"}
    upper = ipaddress.IPv4Network("10.213.4.128/25")
    assert plan_vips(current, ["10.213.4.130"], upper) == (["10.213.4.130"], ["10.213.4.200"])
    with pytest.raises(RuntimeFailure, match="outside the VIP range"):
        plan_vips(current, ["10.213.4.5"], upper)


def test_the_containers_healthcheck_is_read_with_dockers_defaults() -> None:
    # Config.Healthcheck is the merged one: the image's own HEALTHCHECK when the
    # service sets none. Unset times are Docker's defaults (30 s interval and timeout).
    image = {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10_000_000_000}
    check = healthcheck_of({"Config": {"Healthcheck": {**image, "StartPeriod": 5_000_000_000}}})
    assert check == HealthCheck(
        test=("CMD-SHELL", "curl -f localhost"), interval=10, timeout=30, start_period=5
    )
    assert container_info({**INSPECT, "Config": {"Healthcheck": image}}).healthcheck == (
        HealthCheck(test=("CMD-SHELL", "curl -f localhost"), interval=10)
    )
    nones: list[dict[str, Any]] = [
        {},
        {"Config": {}},
        {"Config": {"Healthcheck": {"Test": ["NONE"]}}},
    ]
    for none in nones:
        assert healthcheck_of(none) is None
    assert container_info(INSPECT).healthcheck is None
