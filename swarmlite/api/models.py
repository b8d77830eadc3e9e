"""Request and response bodies of the HTTP/JSON API (msgspec, decoded strictly).

Endpoints (all under HTTPS with mutual TLS; see api/server.py):

    GET    /v1/info                          -> ClusterInfo
    GET    /v1/ca                            -> text/plain CA PEM (no client cert needed)
    POST   /v1/stacks/{stack}/deploy?prune=1 StackSpec -> DeployResult
    GET    /v1/stacks                        -> list[StackSummary]
    DELETE /v1/stacks/{stack}                -> RemoveResult
    GET    /v1/services[?stack=S]            -> list[ServiceSummary]
    GET    /v1/services/{name}               -> Service   (name, full name or id prefix)
    DELETE /v1/services/{name}               -> RemoveResult
    POST   /v1/services/{name}/scale         ScaleRequest -> Service
    POST   /v1/services/{name}/update        ServiceUpdateRequest -> Service
    POST   /v1/services/{name}/rollback      -> Service (its previous spec, rolling back)
    GET    /v1/services/{name}/logs?follow=1&tail=N -> text lines "task | line"
    GET    /v1/tasks[?service=S&stack=S&node=N] -> list[Task]
    GET    /v1/nodes                         -> list[Node]
    GET    /v1/nodes/{id}                    -> Node      (id, id prefix or hostname)
    POST   /v1/nodes/{id}/update             NodeUpdateRequest -> Node
    DELETE /v1/nodes/{id}?force=1            -> NodeActionResult
    POST   /v1/nodes/{id}/demote             -> NodeActionResult
    POST   /v1/nodes/{id}/promote            -> NodeActionResult
    GET    /v1/agent/session                 websocket: the agent's session (agent/session.py)

Errors answer ``{"error": "..."}`` with the status of the SwarmliteError subclass.
"""

from __future__ import annotations

from swarmlite.spec.objects import Availability
from swarmlite.spec.service import Frozen


class ErrorBody(Frozen, frozen=True):
    error: str


class ClusterInfo(Frozen, frozen=True):
    cluster_id: str
    node_id: str
    node_role: str
    leader: bool
    store: str  # "ok" or what is wrong
    version: str
    leader_id: str = ""  # the manager that leads now, "" if none is known


class DeployResult(Frozen, frozen=True):
    stack: str
    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


class RemoveResult(Frozen, frozen=True):
    removed: tuple[str, ...] = ()
    # What was not removed, and why (stack rm: a secret another stack's service uses).
    errors: tuple[str, ...] = ()


class ScaleRequest(Frozen, frozen=True):
    replicas: int


class ServiceUpdateRequest(Frozen, frozen=True):
    """Only the fields given change; environment is added first, then removed."""

    image: str | None = None
    env_add: dict[str, str] = {}
    env_rm: tuple[str, ...] = ()
    replicas: int | None = None
    force: bool = False  # redo every task even if nothing else changed


class StackSummary(Frozen, frozen=True):
    name: str
    services: int


class ServiceSummary(Frozen, frozen=True):
    id: str
    name: str
    stack: str
    mode: str
    desired: int  # replicas wanted (global: eligible nodes)
    running: int  # tasks running (and healthy, if checked)
    image: str
    ports: tuple[str, ...]  # "*:8080->8080/tcp" like docker service ls
    update_state: str = ""
    update_message: str = ""
    spec_version: int = 0  # the service's current spec version (0: an older daemon's)


class NodeUpdateRequest(Frozen, frozen=True):
    """Only the fields given change; labels are added first, then removed."""

    availability: Availability | None = None
    label_add: dict[str, str] = {}
    label_rm: tuple[str, ...] = ()


class NodeActionResult(Frozen, frozen=True):
    node_id: str
    hostname: str
    message: str  # one line for the user: what was done, or that nothing needed doing


class JoinRequest(Frozen, frozen=True):
    secret: str
    csr_pem: str
    hostname: str
    advertise_addr: str
    api_port: int

    def __repr__(self) -> str:  # never the token's secret, should it be logged
        return (
            f"JoinRequest(hostname={self.hostname!r}, advertise_addr={self.advertise_addr!r}, "
            f"api_port={self.api_port}, secret=<hidden>)"
        )


class JoinResponse(Frozen, frozen=True):
    node_id: str
    cluster_id: str
    role: str
    cert_pem: str
    ca_pem: str
    managers: tuple[str, ...]
    # Managers only: what a manager needs to sign joins and run an etcd member.
    ca_key_pem: str = ""
    cluster_key: str = ""  # base64
    etcd_initial_cluster: dict[str, str] = {}
    address_pool: str = ""

    def __repr__(self) -> str:  # never the CA key or the cluster key
        keys = "<hidden>" if self.ca_key_pem or self.cluster_key else "<none>"
        return (
            f"JoinResponse(node_id={self.node_id!r}, cluster_id={self.cluster_id!r}, "
            f"role={self.role!r}, managers={self.managers!r}, keys={keys})"
        )


class JoinTokens(Frozen, frozen=True):
    worker: str
    manager: str

    def __repr__(self) -> str:
        return "JoinTokens(worker=<hidden>, manager=<hidden>)"
