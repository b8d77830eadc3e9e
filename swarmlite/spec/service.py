"""What a user asks for: the typed, frozen service spec a compose file is parsed into.

Durations are float seconds, sizes are bytes, CPUs are float cores. Names inside a
spec are stack-local (``web``, ``default``); ``ServiceSpec.full_name`` is the cluster name.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

import msgspec

Protocol = Literal["tcp", "udp"]
AppProtocol = Literal["http"]
RestartCondition = Literal["none", "on-failure", "any"]
ServiceMode = Literal["replicated", "global"]
MountType = Literal["volume", "bind", "tmpfs"]
DependsCondition = Literal["service_started", "service_healthy", "service_completed_successfully"]
FailureAction = Literal["pause", "continue", "rollback"]
UpdateOrder = Literal["stop-first", "start-first"]

# Names the compose loader accepts, and the manager checks again for other API clients.
STACK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


class Frozen(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every model: immutable, keyword-only, strict on decode."""


class PortSpec(Frozen, frozen=True):
    target: int
    published: int | None = None
    protocol: Protocol = "tcp"
    app_protocol: AppProtocol | None = None
    # "ingress": every node's mesh publishes it; "host": only nodes running a replica.
    mode: Literal["ingress", "host"] = "ingress"


class RestartPolicy(Frozen, frozen=True):
    condition: RestartCondition = "any"
    delay: float = 5.0
    max_attempts: int | None = None  # None: unlimited
    window: float = 0.0


class ResourceAmounts(Frozen, frozen=True):
    cpus: float | None = None
    memory: int | None = None


class Resources(Frozen, frozen=True):
    limits: ResourceAmounts = ResourceAmounts()
    reservations: ResourceAmounts = ResourceAmounts()


class HealthCheck(Frozen, frozen=True):
    # Docker's form: ("CMD", arg, ...), ("CMD-SHELL", "line") or ("NONE",); () keeps
    # the image's test (Compose's healthcheck without test), and then a time or a
    # retry count of 0 keeps the image's too.
    test: tuple[str, ...]
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0

    @property
    def disabled(self) -> bool:
        return self.test[:1] == ("NONE",)

    @property
    def inherits(self) -> bool:
        """The image's own test runs (with these times where they are not 0)."""
        return not self.test


class Mount(Frozen, frozen=True):
    type: MountType
    target: str
    # volume: the stack-local volume name, or the volume's own name when ``external``
    # ("" for an anonymous volume); bind: an absolute host path; tmpfs: "".
    source: str = ""
    read_only: bool = False
    tmpfs_size: int | None = None
    external: bool = False

    def volume_name(self, stack: str) -> str:
        """The Docker volume this mount uses; "" when none is named (not a volume, or
        an anonymous one: Docker makes a fresh volume for each container)."""
        if self.type != "volume" or not self.source:
            return ""
        return self.source if self.external else f"{stack}_{self.source}"


class VolumeSpec(Frozen, frozen=True):
    """A top-level named volume of a stack."""

    name: str  # stack-local name
    driver: str = "local"
    driver_opts: dict[str, str] = {}
    labels: dict[str, str] = {}
    external: bool = False
    external_name: str | None = None


class NetworkSpec(Frozen, frozen=True):
    """A top-level network of a stack; ``default`` exists when no service declares any."""

    name: str  # stack-local name
    labels: dict[str, str] = {}
    internal: bool = False


class Dependency(Frozen, frozen=True):
    service: str
    condition: DependsCondition = "service_started"
    required: bool = True
    restart: bool = False


class UpdateConfig(Frozen, frozen=True):
    parallelism: int = 1  # 0: all at once
    delay: float = 0.0
    failure_action: FailureAction = "pause"
    monitor: float = 5.0
    max_failure_ratio: float = 0.0
    order: UpdateOrder = "stop-first"


class Placement(Frozen, frozen=True):
    constraints: tuple[str, ...] = ()
    preferences: tuple[str, ...] = ()  # each "node.labels.KEY" to spread over
    max_replicas_per_node: int | None = None


class FileRef(Frozen, frozen=True):
    """A service's use of a secret or config: which one, where, and as whom.

    ``name`` is the stored (cluster) name; ``digest`` its content digest, filled in
    at deploy: a changed secret changes the task hash, so its tasks are replaced.
    """

    source: str  # the name as the compose file writes it
    name: str
    target: str  # absolute path in the container
    uid: str = "0"
    gid: str = "0"
    # World-readable, as Swarm and the Compose spec: the file is visible only inside this
    # task's own container, whose process may not run as root (``user: 1000``).
    mode: int = 0o444
    digest: str = ""


class FilePayload(Frozen, frozen=True):
    """A secret's or config's content as read by the CLI; sent to the API over mTLS."""

    name: str  # stored (cluster) name
    data: str  # base64
    labels: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"FilePayload(name={self.name!r}, data=<{len(self.data)} base64 chars>)"


class ServiceSpec(Frozen, frozen=True):
    name: str
    stack: str
    image: str
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: dict[str, str] = {}
    working_dir: str | None = None
    user: str | None = None
    labels: dict[str, str] = {}  # container labels
    deploy_labels: dict[str, str] = {}  # service labels
    mode: ServiceMode = "replicated"
    replicas: int = 1
    restart_policy: RestartPolicy = RestartPolicy()
    resources: Resources = Resources()
    healthcheck: HealthCheck | None = None
    stop_grace_period: float = 10.0
    stop_signal: str | None = None
    # Bumped by 'service update --force': changes the task hash, so every task is redone.
    force_update: int = 0
    ports: tuple[PortSpec, ...] = ()
    expose: tuple[int, ...] = ()
    mounts: tuple[Mount, ...] = ()
    networks: tuple[str, ...] = ("default",)
    depends_on: tuple[Dependency, ...] = ()
    placement: Placement = Placement()
    update_config: UpdateConfig = UpdateConfig()
    rollback_config: UpdateConfig = UpdateConfig(parallelism=1, failure_action="pause")
    secrets: tuple[FileRef, ...] = ()
    configs: tuple[FileRef, ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.stack}_{self.name}"

    @property
    def has_healthcheck(self) -> bool:
        """A test of the service's own (the image's, if any, shows in the container)."""
        hc = self.healthcheck
        return hc is not None and not hc.disabled and not hc.inherits

    def listen_ports(self) -> tuple[int, ...]:
        """Every TCP port the service listens on: port targets and ``expose``."""
        seen = {p.target for p in self.ports if p.protocol == "tcp"} | set(self.expose)
        return tuple(sorted(seen))

    def task_hash(self) -> str:
        """Hash of everything that shapes a container: equal hash, nothing to redo.

        Replica count and update/rollback settings do not change a running task.
        """
        shaping = msgspec.structs.replace(
            self,
            replicas=0,
            update_config=UpdateConfig(),
            rollback_config=UpdateConfig(),
            deploy_labels={},
        )
        raw = msgspec.json.encode(shaping, order="sorted")
        return hashlib.sha256(raw).hexdigest()[:16]


class StackSpec(Frozen, frozen=True):
    """One deploy: a stack's services with the networks and volumes they name."""

    name: str
    services: tuple[ServiceSpec, ...]
    networks: tuple[NetworkSpec, ...] = ()
    volumes: tuple[VolumeSpec, ...] = ()
    warnings: tuple[str, ...] = ()
    # Contents of the stack's own (non-external) secrets and configs.
    secrets: tuple[FilePayload, ...] = ()
    configs: tuple[FilePayload, ...] = ()
