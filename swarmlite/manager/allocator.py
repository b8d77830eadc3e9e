"""Address allocation for stack networks and service virtual IPs. Pure.

Each network gets a /24 from the cluster's pool; containers take the lower half
(Docker's ip_range), service VIPs the upper half, so the two never collide.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from swarmlite.errors import SpecError
from swarmlite.spec.objects import Network, Service


def allocate_subnet(pool: str, taken: Iterable[Network]) -> tuple[str, str]:
    """A free /24 of ``pool`` and its gateway (the first address)."""
    used = {n.subnet for n in taken}
    for subnet in ipaddress.ip_network(pool).subnets(new_prefix=24):
        if str(subnet) not in used:
            return str(subnet), str(subnet.network_address + 1)
    raise SpecError(f"address pool {pool} is exhausted: remove unused stacks or widen the pool")


def allocate_vip(network: Network, services: Iterable[Service]) -> str:
    used = {s.endpoints.get(network.name) for s in services}
    subnet = ipaddress.ip_network(network.subnet)
    half = subnet.num_addresses // 2
    for offset in range(half + 1, subnet.num_addresses - 1):
        candidate = str(subnet.network_address + offset)
        if candidate not in used:
            return candidate
    raise SpecError(f"network {network.name} has no free virtual IP left")
