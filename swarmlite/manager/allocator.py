"""Address allocation for stack networks and service virtual IPs. Pure.

Each network gets a /24 from the cluster's pool; containers take the lower half
(Docker's ip_range), service VIPs the upper half, so the two never collide.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from swarmlite.errors import SpecError
from swarmlite.spec.objects import Network, Service


def allocate_subnet(pool: str, taken: Iterable[Network], after: str = "") -> tuple[str, str]:
    """A free /24 of ``pool`` and its gateway (the first address).

    The search starts after ``after`` (the subnet handed out last) and wraps around,
    so a subnet freed by a removed stack is the last one given out again: Docker can
    keep a removed network with a phantom endpoint (moby/moby#42119), still holding
    its subnet on that host, and a new network there would fail to be created.
    """
    used = {n.subnet for n in taken}
    net = ipaddress.ip_network(pool)
    if net.prefixlen > 24:
        raise SpecError(f"address pool {pool} is smaller than one /24 network")
    count = 1 << (24 - net.prefixlen)
    base = int(net.network_address)
    start = 0
    if after:
        last = ipaddress.ip_network(after)
        if last.prefixlen == 24 and last.subnet_of(net):  # type: ignore[arg-type]
            start = ((int(last.network_address) - base) >> 8) + 1
    for k in range(count):
        subnet = ipaddress.ip_network(((base + (((start + k) % count) << 8)), 24))
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
