"""Node networking mode: a node that is itself a container, and tasks that share its network.

Used where each "host" is a container on a private Docker network (``tests/cluster``):
the node's daemon talks to the host's engine through the mounted Docker socket and
starts every task with ``network_mode=container:<node container>``, so a task has the
node's address, and ``docker network disconnect`` of the node cuts off its tasks too.

What changes against bridge mode:

- No Docker networks, no bridges, no VIPs. A task's address on each of its stack
  networks is the node's address; other nodes dial it at ``<node addr>:<port>``.
- No service VIPs: a VIP listener ``VIP:port`` in the node's namespace would collide
  with a co-located replica listening on ``0.0.0.0:port`` (Linux refuses the second
  bind unless both sockets set ``SO_REUSEPORT``, and workloads do not). So the mesh
  and the name server get ``node_local_routes``: one network ``node`` with no
  endpoints, and a service name resolves to its replicas' node addresses (like
  Swarm's ``endpoint_mode: dnsrr``). Published ports still go through the mesh.
- The name server binds ``NODE_DNS_ADDR`` (127.0.0.53:53) in the node's namespace.
  Tasks share the node's ``/etc/resolv.conf`` (Docker gives a ``container:`` network
  the other container's file and refuses ``--dns`` with it), so whoever starts the
  node points that file at ``NODE_DNS_ADDR``; the name server forwards other names to
  Docker's embedded DNS (``DOCKER_EMBEDDED_DNS``), which resolves container names and
  forwards to the host's resolvers. (``docker run --dns 127.0.0.53`` also reaches the
  name server, through the embedded DNS, but then forwarding back to it loops.)

Limits: two tasks listening on the same port cannot share a node (use
``deploy.placement.max_replicas_per_node: 1``), and a published port must differ from
the listen ports of tasks on the node; stack networks do not isolate anything.
"""

from __future__ import annotations

import os
import socket

import msgspec

from swarmlite.spec.objects import Network
from swarmlite.spec.routes import RoutesSnapshot

NODE_NETWORK = "node"
NODE_DNS_ADDR = "127.0.0.53"
DOCKER_EMBEDDED_DNS = "127.0.0.11"
NODE_CONTAINER_ENV = "SWARMLITE_NODE_CONTAINER"


def own_container_ref() -> str:
    """Name or id of the container this process runs in: ``$SWARMLITE_NODE_CONTAINER``,
    else the hostname (Docker's default hostname is the container's short id)."""
    return os.environ.get(NODE_CONTAINER_ENV) or socket.gethostname()


def node_local_routes(snapshot: RoutesSnapshot) -> RoutesSnapshot:
    """The snapshot as the mesh and name server of a node-mode node see it: every
    service on the one network ``node`` without a VIP, each replica at its node's
    address, and the name server's address as that network's gateway."""
    services = []
    for route in snapshot.services:
        backends = []
        for b in route.backends:
            addrs = [a for a in (b.addresses.get(n) for n in route.networks) if a]
            addrs += [a for _, a in sorted(b.addresses.items()) if a]
            backends.append(
                msgspec.structs.replace(b, addresses={NODE_NETWORK: addrs[0]} if addrs else {})
            )
        services.append(
            msgspec.structs.replace(
                route,
                networks=(NODE_NETWORK,),
                endpoints={},
                backends=tuple(backends),
                # Every container asks from its node's address: none is told apart.
                unrouted=(),
            )
        )
    network = Network(
        id=NODE_NETWORK,
        name=NODE_NETWORK,
        stack="",
        subnet=f"{NODE_DNS_ADDR}/32",
        gateway=NODE_DNS_ADDR,
    )
    return RoutesSnapshot(revision=snapshot.revision, services=tuple(services), networks=(network,))
