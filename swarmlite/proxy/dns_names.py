"""Who may resolve which cluster name, over one routes snapshot. Pure.

The asker is known by the query's source address (a replica's address in the
snapshot, routed or still starting, gives its service and networks); an unknown
source is taken to be on the network whose gateway got the query.
"""

from __future__ import annotations

from swarmlite.spec.routes import RoutesSnapshot, ServiceRoute


class NameIndex:
    """Pure lookup over one snapshot: (name, asker address, receiving gateway) -> answer."""

    def __init__(self, snapshot: RoutesSnapshot) -> None:
        self.names: dict[str, list[ServiceRoute]] = {}
        self.askers: dict[str, ServiceRoute] = {}
        self.gateways: dict[str, str] = {n.gateway: n.name for n in snapshot.networks}
        for route in snapshot.services:
            for name in {route.short_name, f"{route.short_name}.{route.stack}", route.name}:
                self.names.setdefault(name.lower(), []).append(route)
            for b in route.backends:
                for addr in b.addresses.values():
                    self.askers[addr] = route
        # A replica still starting (or stopping) asks too, on all its networks.
        for route in snapshot.services:
            for b in route.unrouted:
                for addr in b.addresses.values():
                    self.askers.setdefault(addr, route)

    def lookup(self, qname: str, source: str, gateway: str) -> list[str] | None:
        """Addresses for a cluster name (maybe empty), ``None`` if the cluster does not
        own the name; raises ``LookupError`` for a service the asker cannot see."""
        name = qname.rstrip(".").lower()
        tasks = name.startswith("tasks.")
        routes = self.names.get(name[6:] if tasks else name)
        if not routes:
            return None
        here = self.gateways.get(gateway)
        asker = self.askers.get(source)
        if asker is not None:
            nets = [n for n in (here, *asker.networks) if n in asker.networks]
            routes = sorted(routes, key=lambda r: r.stack != asker.stack)
        else:
            nets = [here] if here else []
        for route in routes:
            for net in nets:
                if net not in route.networks:
                    continue
                vip = route.endpoints.get(net)
                if vip and not tasks:
                    return [vip]
                return [b.addresses[net] for b in route.backends if net in b.addresses]
        raise LookupError(name)
