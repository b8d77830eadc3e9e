"""Small builders of real Node/Task/Volume objects for the scheduler tests (no tests here)."""

from __future__ import annotations

from typing import Any

import msgspec

from swarmlite.spec.objects import (
    Availability,
    Node,
    NodeResources,
    NodeRole,
    NodeState,
    NodeStatus,
    Platform,
    Task,
    TaskState,
    TaskStatus,
    Volume,
)
from swarmlite.spec.service import (
    Mount,
    Placement,
    PortSpec,
    ResourceAmounts,
    Resources,
    ServiceSpec,
)

GIB = 1024**3


def node(
    node_id: str,
    *,
    state: NodeState = "ready",
    availability: Availability = "active",
    role: NodeRole = "worker",
    labels: dict[str, str] | None = None,
    cpus: float = 4.0,
    memory: int = 8 * GIB,
    os: str = "linux",
    arch: str = "x86_64",
    hostname: str | None = None,
    engine: str = "",
) -> Node:
    return Node(
        id=node_id,
        hostname=hostname or f"host-{node_id}",
        addr="10.0.0.1",
        api_port=2377,
        role=role,
        availability=availability,
        labels=labels or {},
        platform=Platform(os=os, arch=arch),
        resources=NodeResources(cpus=cpus, memory=memory),
        status=NodeStatus(state=state, engine=engine),
    )


def spec(
    name: str = "web",
    *,
    constraints: tuple[str, ...] = (),
    preferences: tuple[str, ...] = (),
    max_per_node: int | None = None,
    cpus: float | None = None,
    memory: int | None = None,
    host_ports: tuple[int, ...] = (),
    volumes: tuple[str, ...] = (),
    **extra: Any,
) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        stack="shop",
        image="nginx",
        placement=Placement(
            constraints=constraints,
            preferences=preferences,
            max_replicas_per_node=max_per_node,
        ),
        resources=Resources(reservations=ResourceAmounts(cpus=cpus, memory=memory)),
        ports=tuple(PortSpec(target=80, published=p, mode="host") for p in host_ports),
        mounts=tuple(Mount(type="volume", target=f"/{v}", source=v) for v in volumes),
        **extra,
    )


def task(
    service: ServiceSpec,
    slot: int,
    *,
    node_id: str = "",
    version: int = 1,
    state: TaskState = TaskState.PENDING,
) -> Task:
    return Task(
        id=f"{service.name}.{slot}.v{version}" + (f"@{node_id}" if node_id else ""),
        service_id=f"svc-{service.name}",
        service_name=service.full_name,
        slot=slot,
        spec=service,
        spec_version=version,
        spec_hash=f"hash-{service.name}-{version}",
        node_id=node_id,
        status=TaskStatus(state=state),
    )


def tasks(service: ServiceSpec, count: int, *, start: int = 1) -> list[Task]:
    return [task(service, slot) for slot in range(start, start + count)]


def running(service: ServiceSpec, slot: int, node_id: str) -> Task:
    return task(service, slot, node_id=node_id, state=TaskState.RUNNING)


def stopping(service: ServiceSpec, slot: int, node_id: str) -> Task:
    """A task told to shut down (scaled down, replaced) that its node still runs."""
    t = running(service, slot, node_id)
    return msgspec.structs.replace(t, id=t.id + ".old", desired_state=TaskState.SHUTDOWN)


def volume(name: str, node_id: str = "") -> Volume:
    return Volume(id=f"vol-{name}", name=f"shop_{name}", stack="shop", node_id=node_id)
