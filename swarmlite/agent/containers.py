"""Pure translation between swarmlite's models and the Docker Engine's JSON.

Nothing here talks to Docker: ``container_config`` turns a task into the arguments of
one ``create_container`` call, and ``container_info`` / ``container_addresses`` read
what ``inspect`` returned (healthchecks, both ways, are in ``healthchecks.py``).
``runtime.py`` does the I/O.

Labels put on every container (besides the service's own ``labels``)::

    swarmlite.node          node id that owns the container (list/events filter on it)
    swarmlite.stack         stack name
    swarmlite.service       service full name ("stack_web")
    swarmlite.service.id    service id
    swarmlite.task          task id
    swarmlite.slot          replica slot ("0" for global services)
    swarmlite.spec-hash     Task.spec_hash: equal hash, nothing to recreate
    com.docker.stack.namespace  stack name, as Docker's own stacks do

In node networking mode (``NodeNamespace``) a container joins the node container's
network namespace instead, publishes nothing, and carries three more labels, from
which its addresses are read back::

    swarmlite.node-addr      the node's address, which the task shares
    swarmlite.networks       the task's stack networks, comma-separated
    swarmlite.listen-ports   the ports it listens on, comma-separated
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
from docker.types import HostConfig
from docker.types import Mount as DockerMount

from swarmlite.agent.healthchecks import docker_healthcheck, health_of, healthcheck_of
from swarmlite.spec.objects import Network, Task
from swarmlite.spec.service import HealthCheck, Mount

# The oldest Engine API we support (Debian's docker.io 20.10); HostConfig checks it.
API_VERSION = "1.41"

LABEL_NODE = "swarmlite.node"
LABEL_STACK = "swarmlite.stack"
LABEL_SERVICE = "swarmlite.service"
LABEL_SERVICE_ID = "swarmlite.service.id"
LABEL_TASK = "swarmlite.task"
LABEL_SLOT = "swarmlite.slot"
LABEL_SPEC_HASH = "swarmlite.spec-hash"
LABEL_NAMESPACE = "com.docker.stack.namespace"
LABEL_NETWORK_ID = "swarmlite.network.id"
LABEL_NODE_ADDR = "swarmlite.node-addr"
LABEL_NETWORKS = "swarmlite.networks"
LABEL_LISTEN_PORTS = "swarmlite.listen-ports"

BRIDGE_NAME_OPTION = "com.docker.network.bridge.name"

_NS = 1_000_000_000


class ContainerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one ``APIClient.create_container`` call needs, plus the networks.

    ``networks[0]`` is attached at create; Engine API 1.41 takes one network there,
    so the others are connected before start.
    """

    name: str
    image: str
    command: list[str] | None
    entrypoint: list[str] | None
    environment: list[str]
    working_dir: str | None
    user: str | None
    labels: dict[str, str]
    healthcheck: dict[str, Any] | None
    stop_signal: str | None
    stop_timeout: int
    host_config: dict[str, Any]
    networks: tuple[str, ...]
    # TCP ports published on the node's advertise address (ephemeral host ports).
    exposed_ports: tuple[int, ...] = ()
    # ``mode: host`` ports (target, protocol), published on every address of the node.
    host_ports: tuple[tuple[int, str], ...] = ()

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``docker.APIClient.create_container``."""
        first = self.networks[0] if self.networks else None
        return {
            "name": self.name,
            "image": self.image,
            "command": self.command,
            "entrypoint": self.entrypoint,
            "environment": self.environment,
            "working_dir": self.working_dir,
            "user": self.user,
            "labels": self.labels,
            "healthcheck": self.healthcheck,
            "stop_signal": self.stop_signal,
            "stop_timeout": self.stop_timeout,
            "host_config": self.host_config,
            "networking_config": {"EndpointsConfig": {first: {}}} if first else None,
            "ports": [*self.exposed_ports, *self.host_ports] or None,
            "detach": True,
            "use_config_proxy": False,
        }


class NodeNamespace(msgspec.Struct, frozen=True):
    """Node networking mode: tasks run in this container's network namespace."""

    container_id: str
    addr: str  # the node container's address, which every task on the node shares
    started_at: float = 0.0  # the node container's last start (epoch seconds)


def container_name(task: Task) -> str:
    return f"{task.service_name}.{task.slot or 'g'}.{task.id}"


def bridge_name(net: Network) -> str:
    """Linux interface name of a stack network's bridge (at most 15 characters)."""
    return "sl-" + net.id[:11]


def split_subnet(subnet: str) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """(container range, VIP range): the lower and upper halves of ``subnet``."""
    net = ipaddress.IPv4Network(subnet)
    lower, upper = net.subnets(prefixlen_diff=1)
    return lower, upper


def task_labels(task: Task, node_id: str) -> dict[str, str]:
    spec = task.spec
    return {
        **spec.labels,
        LABEL_NODE: node_id,
        LABEL_STACK: spec.stack,
        LABEL_SERVICE: task.service_name,
        LABEL_SERVICE_ID: task.service_id,
        LABEL_TASK: task.id,
        LABEL_SLOT: str(task.slot),
        LABEL_SPEC_HASH: task.spec_hash,
        LABEL_NAMESPACE: spec.stack,
    }


def docker_mount(stack: str, mount: Mount) -> DockerMount:
    if mount.type == "volume":
        return DockerMount(
            mount.target,
            mount.volume_name(stack) or None,
            type="volume",
            read_only=mount.read_only,
        )
    if mount.type == "bind":
        return DockerMount(mount.target, mount.source, type="bind", read_only=mount.read_only)
    return DockerMount(
        mount.target, None, type="tmpfs", read_only=mount.read_only, tmpfs_size=mount.tmpfs_size
    )


def publish_address(advertise_addr: str | None) -> str | None:
    """The host IP to publish listen ports on, or None: only a routable, specific IP.

    Loopback and wildcard addresses are useless to meshes on other nodes.
    """
    if not advertise_addr:
        return None
    try:
        ip = ipaddress.ip_address(advertise_addr)
    except ValueError:
        return None
    if ip.is_loopback or ip.is_unspecified:
        return None
    return str(ip)


def container_config(
    task: Task,
    networks: Sequence[Network],
    node_id: str,
    advertise_addr: str | None = None,
    node_ns: NodeNamespace | None = None,
    extra_mounts: Sequence[DockerMount] = (),
) -> ContainerConfig:
    """The container for ``task`` on ``node_id``, attached to ``networks`` in order.

    With a non-loopback ``advertise_addr`` every listen port is published on it, on a
    host port Docker picks, so meshes on other nodes can reach the task. With
    ``node_ns`` it shares the node container's network namespace instead. A
    ``mode: host`` port is published on the node's every address, as Swarm does.
    """
    spec = task.spec
    labels = task_labels(task, node_id)
    network_mode = networks[0].name if networks else None
    host_ip = publish_address(advertise_addr)
    if node_ns is not None:
        labels[LABEL_NODE_ADDR] = node_ns.addr
        labels[LABEL_NETWORKS] = ",".join(n.name for n in networks)
        labels[LABEL_LISTEN_PORTS] = ",".join(str(p) for p in spec.listen_ports())
        network_mode = f"container:{node_ns.container_id}"
        # Docker refuses dns=, networks and published ports with this network mode.
        networks, host_ip = (), None
    exposed = spec.listen_ports() if host_ip is not None else ()
    bindings: dict[int | str, list[tuple[str | None, int | None]]] = {}
    for number in exposed:
        bindings[f"{number}/tcp"] = [(host_ip, None)]
    host_mode = [p for p in spec.ports if p.mode == "host" and node_ns is None]
    for p in host_mode:
        bindings.setdefault(f"{p.target}/{p.protocol}", []).append(("", p.published))
    limits = spec.resources.limits
    host_config = HostConfig(
        version=API_VERSION,
        # round, not int: 2.01 * 1e9 is 2009999999.9999998
        nano_cpus=round(limits.cpus * _NS) if limits.cpus else None,
        mem_limit=limits.memory or None,
        mem_reservation=spec.resources.reservations.memory or None,
        # extra_mounts: the task's secrets and configs, bind-mounted (agent/secrets.py).
        mounts=[*(docker_mount(spec.stack, m) for m in spec.mounts), *extra_mounts] or None,
        dns=[networks[0].gateway] if networks else None,
        # The orchestrator restarts tasks; Docker never does.
        restart_policy={"Name": "no"},
        init=False,
        network_mode=network_mode,
        port_bindings=bindings or None,
    )
    return ContainerConfig(
        name=container_name(task),
        image=spec.image,
        command=list(spec.command) if spec.command is not None else None,
        entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
        environment=[f"{k}={v}" for k, v in spec.environment.items()],
        working_dir=spec.working_dir,
        user=spec.user,
        labels=labels,
        healthcheck=docker_healthcheck(spec.healthcheck),
        stop_signal=spec.stop_signal,
        stop_timeout=math.ceil(spec.stop_grace_period),
        host_config=dict(host_config),
        networks=tuple(n.name for n in networks),
        exposed_ports=exposed,
        host_ports=tuple((p.target, p.protocol) for p in host_mode),
    )


# ---- reading inspect output -------------------------------------------------------


class ContainerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One container as the agent sees it, read from ``docker inspect``."""

    id: str
    name: str
    task_id: str
    service_id: str
    service_name: str
    slot: int
    node_id: str
    spec_hash: str
    state: str  # created, running, paused, restarting, removing, exited, dead
    exit_code: int | None
    health: str  # none, starting, healthy, unhealthy
    # Its Config.Healthcheck: the service's, or else the image's own HEALTHCHECK.
    healthcheck: HealthCheck | None = None
    addresses: dict[str, str]  # network name -> IPv4 address
    host_ports: dict[int, str] = {}  # container TCP port -> "ip:port" published on the host
    stop_grace: float = 10.0  # its StopTimeout: the task's stop_grace_period (Docker's 10)
    started_at: float
    finished_at: float
    error: str


def container_addresses(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Network name -> IPv4 address, for every network the container has an address on."""
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return {name: ep["IPAddress"] for name, ep in networks.items() if ep and ep.get("IPAddress")}


def container_host_ports(attrs: Mapping[str, Any]) -> dict[int, str]:
    """Container TCP port -> "ip:port" it is published on, from ``NetworkSettings.Ports``.

    Only bindings on a specific host IP count (a wildcard one names no address to
    dial); the first such binding of a port wins. IPv6 hosts are bracketed.
    """
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    out: dict[int, str] = {}
    for key, bindings in ports.items():
        number, _, proto = str(key).partition("/")
        if proto not in ("", "tcp") or not number.isdigit():
            continue
        for b in bindings or ():
            ip = str((b or {}).get("HostIp") or "")
            port = str((b or {}).get("HostPort") or "")
            if ip in ("", "0.0.0.0", "::") or not port.isdigit():
                continue
            out[int(number)] = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            break
    return out


def node_mode_addresses(
    labels: Mapping[str, str], running: bool
) -> tuple[dict[str, str], dict[int, str]] | None:
    """(addresses, host ports) of a node-mode container, read off its labels; ``None``
    for a container with addresses of its own. A stopped one has none, as in Docker."""
    addr = labels.get(LABEL_NODE_ADDR)
    if addr is None:
        return None
    if not running or not addr:
        return {}, {}
    nets = [n for n in labels.get(LABEL_NETWORKS, "").split(",") if n]
    ports = [int(p) for p in labels.get(LABEL_LISTEN_PORTS, "").split(",") if p.isdigit()]
    return {n: addr for n in nets}, {p: f"{addr}:{p}" for p in ports}


def outside_node_namespace(info: ContainerInfo, node_ns: NodeNamespace) -> ContainerInfo:
    """A task still running from before the node container's last start lives on in
    the old namespace, which lost its network: seen as exited, so the task fails and
    is replaced (and the runner removes it without a stop)."""
    if info.state != "running" or not node_ns.started_at or info.started_at >= node_ns.started_at:
        return info
    return msgspec.structs.replace(
        info,
        state="exited",
        addresses={},
        host_ports={},
        error="task: its node container restarted; the network namespace it ran in is gone",
    )


_DOCKER_TIME = re.compile(r"^([^.Z+]+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def parse_docker_time(value: str | None) -> float:
    """Docker's RFC 3339 nanosecond timestamps as epoch seconds; zero time is 0.0."""
    if not value or value.startswith("0001-01-01"):
        return 0.0
    m = _DOCKER_TIME.match(value)
    if m is None:
        return 0.0
    head, frac, tz = m.groups()
    offset = "+00:00" if tz in (None, "Z") else tz
    base = datetime.fromisoformat(head + offset).timestamp()
    return base + (float("0." + frac) if frac else 0.0)


def container_info(attrs: Mapping[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    status = str(state.get("Status") or "unknown")
    exit_code = state.get("ExitCode")
    try:
        slot = int(labels.get(LABEL_SLOT, "0"))
    except ValueError:
        slot = 0
    addresses, host_ports = node_mode_addresses(labels, status == "running") or (
        container_addresses(attrs),
        container_host_ports(attrs),
    )
    return ContainerInfo(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name", "")).lstrip("/"),
        task_id=labels.get(LABEL_TASK, ""),
        service_id=labels.get(LABEL_SERVICE_ID, ""),
        service_name=labels.get(LABEL_SERVICE, ""),
        slot=slot,
        node_id=labels.get(LABEL_NODE, ""),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        state=status,
        exit_code=int(exit_code)
        if status in ("exited", "dead") and exit_code is not None
        else None,
        health=health_of(attrs),
        healthcheck=healthcheck_of(attrs),
        addresses=addresses,
        host_ports=host_ports,
        stop_grace=float(10 if config.get("StopTimeout") is None else config["StopTimeout"]),
        started_at=parse_docker_time(state.get("StartedAt")),
        finished_at=parse_docker_time(state.get("FinishedAt")),
        error=str(state.get("Error") or ""),
    )
