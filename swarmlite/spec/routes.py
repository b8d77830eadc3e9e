"""The mesh's view of the cluster: what every node's proxy and name server serve.

Managers derive a ``RoutesSnapshot`` from services and tasks and push it to every
node; the proxy and the DNS server only read it. Only routable tasks appear as backends;
the other live replicas are listed apart, so the name server still knows who asks.
"""

from __future__ import annotations

from swarmlite.spec.objects import Network
from swarmlite.spec.service import Frozen, PortSpec


class Backend(Frozen, frozen=True):
    task_id: str
    node_id: str
    # Network full name -> container address there; the proxy dials one of them.
    addresses: dict[str, str]
    # Listen port -> "host:port" for meshes on other nodes (the node publishes it).
    remote_ports: dict[int, str] = {}


class ServiceRoute(Frozen, frozen=True):
    service_id: str
    name: str  # full name, "stack_service"
    short_name: str  # "service"
    stack: str
    networks: tuple[str, ...]  # full network names the service is attached to
    endpoints: dict[str, str]  # network full name -> virtual IP of the service there
    ports: tuple[PortSpec, ...]  # published ports (mesh listeners on every node)
    listen_ports: tuple[int, ...]  # ports served on each endpoint VIP
    backends: tuple[Backend, ...]  # routable replicas, anywhere in the cluster
    # Replicas whose container is up but gets no traffic (starting, waiting for its
    # healthcheck, stopping): no route leads to them, yet when they ask the name
    # server a name, it must know them by address, on every network they are on.
    unrouted: tuple[Backend, ...] = ()


class RoutesSnapshot(Frozen, frozen=True):
    revision: int
    services: tuple[ServiceRoute, ...] = ()
    networks: tuple[Network, ...] = ()
