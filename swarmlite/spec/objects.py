"""The cluster's stored objects: cluster, nodes, networks, services, tasks, secrets, configs.

Desired state (what managers want) and observed state (what agents report) are kept
apart: ``Task.desired_state`` is written only by managers, ``Task.status`` only moves
forward and is fed by the agent's reports.
"""

from __future__ import annotations

import enum
import time
from typing import Literal

import msgspec

from swarmlite.spec.service import Frozen, HealthCheck, PortSpec, ServiceSpec


class TaskState(enum.IntEnum):
    """Ordered task states; a task's observed state may only move to a greater one."""

    NEW = 0
    PENDING = 1
    ASSIGNED = 2
    PREPARING = 3
    STARTING = 4
    RUNNING = 5
    COMPLETE = 6
    SHUTDOWN = 7
    FAILED = 8
    REJECTED = 9
    REMOVE = 10  # desired state only: stop, then delete the task

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def terminal(self) -> bool:
        return self >= TaskState.COMPLETE


class TaskStatus(Frozen, frozen=True):
    state: TaskState = TaskState.NEW
    message: str = ""  # what happened last, in a few words
    err: str = ""  # why the task ended, when it ended badly
    timestamp: float = 0.0
    container_id: str = ""
    exit_code: int | None = None
    # Network name -> the container's address on that network.
    addresses: dict[str, str] = {}
    # Listen port -> "host:port" where other nodes' meshes reach this task.
    remote_ports: dict[int, str] = {}
    # The container's healthcheck as the agent read it: with none in the compose file,
    # the image's own, which the updater must give time for a first result.
    healthcheck: HealthCheck | None = None

    def advanced(self, new: TaskStatus) -> bool:
        """True when ``new`` is a legal report after this one (never backwards): a later
        state, or news of the same state that is not older (a report an old session's
        manager applies late must not overwrite a newer one's details)."""
        if new.state > self.state:
            return True
        return new.state == self.state and new != self and new.timestamp >= self.timestamp


def task_name(service_name: str, slot: int, node_id: str) -> str:
    """``web.2`` for a replicated task, ``web.<node>`` for a global one."""
    return f"{service_name}.{slot or node_id[:12]}"


class Task(Frozen, frozen=True):
    id: str
    service_id: str
    service_name: str  # full name, "stack_service"
    slot: int  # replicated: 1..N; global: 0 (the node is the slot)
    spec: ServiceSpec
    spec_version: int
    spec_hash: str
    node_id: str = ""
    desired_state: TaskState = TaskState.RUNNING
    status: TaskStatus = TaskStatus()
    created_at: float = 0.0
    # Scheduler's last word on a pending task ("no suitable node: ...").
    pending_reason: str = ""
    # Number of restarts before this task in its slot (for restart_policy.max_attempts).
    attempt: int = 0
    # When the slot's latest restarts happened (this task's creation included, if it is
    # one), at most max_attempts of them, for a restart_policy window. Carried from task
    # to task of a slot, as ``attempt`` is: the pruned history cannot count them.
    restart_times: tuple[float, ...] = ()
    # When the agent first reported the task running (its clock; 0: never): the status
    # moves on when the task ends, and the updater's monitor window counts from here.
    running_at: float = 0.0

    @property
    def name(self) -> str:
        return task_name(self.service_name, self.slot, self.node_id)

    def reported(self, status: TaskStatus) -> Task:
        """This task with an agent's report applied; the first running one stamps
        ``running_at``."""
        running_at = self.running_at
        if status.state == TaskState.RUNNING and not running_at:
            running_at = status.timestamp
        return msgspec.structs.replace(self, status=status, running_at=running_at)

    @property
    def routable(self) -> bool:
        """Running (and healthy, if it has a healthcheck) and meant to keep running."""
        return self.status.state == TaskState.RUNNING and self.desired_state == TaskState.RUNNING


UpdateState = Literal[
    "",
    "updating",
    "paused",
    "completed",
    "rollback_started",
    "rollback_completed",
    "rollback_paused",
]


class UpdateStatus(Frozen, frozen=True):
    state: UpdateState = ""
    message: str = ""
    started_at: float = 0.0
    completed_at: float = 0.0


class Service(Frozen, frozen=True):
    id: str
    spec: ServiceSpec
    version: int = 1  # bumped on every spec change
    previous_spec: ServiceSpec | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    # Network full name -> the virtual address its mesh listeners use there.
    endpoints: dict[str, str] = {}
    update_status: UpdateStatus = UpdateStatus()
    # "TARGET/PROTOCOL" -> the port the cluster chose for an ingress port published
    # without a number (``ports: ["80"]``), kept across deploys, as Swarm's 30000+.
    assigned_ports: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self.spec.full_name

    def published_ports(self) -> tuple[PortSpec, ...]:
        """The spec's ports with each assigned number filled in."""
        if not self.assigned_ports:
            return self.spec.ports
        return tuple(
            msgspec.structs.replace(p, published=self.assigned_ports[key])
            if p.published is None and (key := port_key(p)) in self.assigned_ports
            else p
            for p in self.spec.ports
        )


def port_key(port: PortSpec) -> str:
    return f"{port.target}/{port.protocol}"


class Network(Frozen, frozen=True):
    """A stack network, created as a bridge on every node that runs one of its tasks."""

    id: str
    name: str  # full name, "stack_net"
    stack: str
    subnet: str  # e.g. "10.213.4.0/24"; containers get the lower half, VIPs the upper
    gateway: str
    labels: dict[str, str] = {}
    internal: bool = False


class Volume(Frozen, frozen=True):
    id: str
    name: str  # full name, "stack_vol"
    stack: str
    driver: str = "local"
    driver_opts: dict[str, str] = {}
    labels: dict[str, str] = {}
    external: bool = False
    # Node the volume lives on, once a task created it there (volumes are node-local).
    node_id: str = ""


class Secret(Frozen, frozen=True):
    """A secret: only its AES-GCM sealed form (base64) is ever stored."""

    id: str
    name: str  # cluster name: "stack_name" from a compose file, or global
    digest: str  # keyed digest of the content (never a plain hash of a secret)
    sealed: str
    stack: str = ""
    labels: dict[str, str] = {}
    created_at: float = 0.0
    updated_at: float = 0.0

    def __repr__(self) -> str:
        return f"Secret(id={self.id!r}, name={self.name!r}, digest={self.digest[:12]!r})"


class Config(Frozen, frozen=True):
    """A config: stored in the clear (base64), mounted read-only into containers."""

    id: str
    name: str
    digest: str  # sha256 of the content
    data: str
    stack: str = ""
    labels: dict[str, str] = {}
    created_at: float = 0.0
    updated_at: float = 0.0


NodeRole = Literal["manager", "worker"]
Availability = Literal["active", "pause", "drain"]
NodeState = Literal["unknown", "ready", "down"]


class Platform(Frozen, frozen=True):
    os: str = "linux"
    arch: str = "x86_64"


class NodeResources(Frozen, frozen=True):
    cpus: float = 0.0
    memory: int = 0


class NodeStatus(Frozen, frozen=True):
    state: NodeState = "unknown"
    message: str = ""
    # When the state last changed (a session opened, a heartbeat key appeared or ran
    # out). Liveness itself lives in lease-bound etcd keys, not in this object.
    changed_at: float = 0.0
    # Why the node's Docker engine does not answer, as its agent reports it; "" if it does.
    engine: str = ""


class Node(Frozen, frozen=True):
    id: str
    hostname: str
    addr: str  # advertise address
    api_port: int
    role: NodeRole = "worker"
    availability: Availability = "active"
    labels: dict[str, str] = {}
    platform: Platform = Platform()
    resources: NodeResources = NodeResources()
    status: NodeStatus = NodeStatus()
    created_at: float = 0.0


def node_lost(node: Node | None) -> bool:
    """No agent reports from this node any more: removed (None) or marked down. Its
    tasks keep their last reported status, which says nothing about them now."""
    return node is None or node.status.state == "down"


class Cluster(Frozen, frozen=True):
    id: str
    created_at: float
    ca_cert_pem: str
    # Join secrets as SHA-256 digests: what admits a node, compared in constant time.
    worker_token_digest: str
    manager_token_digest: str
    address_pool: str = "10.213.0.0/16"
    # The join tokens themselves, sealed with the managers' cluster key (so any
    # manager can print them); only the digests above are used to admit a node.
    sealed_tokens: str = ""
    # Lifetime of node certificates in seconds; they renew after two thirds of it.
    node_cert_lifetime: float = 90 * 86400.0
    task_history_limit: int = 5
    # The stack subnet handed out last; the next one is searched from there.
    last_subnet: str = ""


def now_status(state: TaskState, message: str = "", *, err: str = "") -> TaskStatus:
    return TaskStatus(state=state, message=message, err=err, timestamp=time.time())


def encode(obj: msgspec.Struct) -> bytes:
    return msgspec.json.encode(obj)
