"""Published ports: refuse a spec publishing a port another service holds, and choose
a number for an ingress port published without one. Pure.

The check is used by deploy (``deploy.py``), ``service rollback``
(``api/update_handlers.py``) and the updater's automatic rollback (``updater.py``), so
all three refuse alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from swarmlite.errors import SpecError
from swarmlite.spec.objects import Service, port_key
from swarmlite.spec.service import ServiceSpec

# Where Swarm chooses a port for ``ports: ["80"]``: its dynamic range.
ASSIGNED_RANGE = range(30000, 32768)


def check_published_ports(specs: Sequence[ServiceSpec], others: Iterable[Service]) -> None:
    """Refuse a published port that one of ``others`` (the services that stay) holds,
    or that two of ``specs`` share. Every node's mesh listens on an ingress port, so a
    second service would take it over, or lose it, silently; a host-mode port is the
    scheduler's to place, but never on a number the mesh holds on every node."""
    ingress: dict[tuple[int, str], str] = {}
    host: dict[tuple[int, str], str] = {}
    for svc in others:
        for port in svc.published_ports():
            if port.published is not None:
                held = ingress if port.mode == "ingress" else host
                held.setdefault((port.published, port.protocol), svc.name)
    for spec in specs:
        mine = [(p.published, p.protocol) for p in spec.ports if p.published is not None]
        for port in spec.ports:
            if port.published is None:
                continue
            key = (port.published, port.protocol)
            holder = ingress.get(key) or (host.get(key) if port.mode == "ingress" else None)
            if holder is not None and holder != spec.full_name:
                raise SpecError(
                    f"service {spec.name}: port {port.published}/{port.protocol} is already "
                    f"published by service {holder}; publish another port or remove {holder}"
                )
            if mine.count(key) > 1:
                raise SpecError(
                    f"service {spec.name}: port {port.published}/{port.protocol} is published twice"
                )
            (ingress if port.mode == "ingress" else host).setdefault(key, spec.full_name)


def ports_in_use(services: Iterable[Service], specs: Iterable[ServiceSpec]) -> set[int]:
    """TCP port numbers ``services`` publish (chosen ones included) or ``specs`` name."""
    used = {p.published for s in services for p in s.published_ports() if p.protocol == "tcp"}
    used |= {p.published for s in specs for p in s.ports if p.protocol == "tcp"}
    used.discard(None)
    return {p for p in used if p is not None}


def assign_ports(spec: ServiceSpec, old: Service | None, used: set[int]) -> dict[str, int]:
    """A number for each ingress TCP port of ``spec`` published without one: the one
    ``old`` (the service this spec replaces) had, else the lowest free one of
    ``ASSIGNED_RANGE``, as Swarm does; chosen numbers are added to ``used``. Numbers
    ``old`` chose for ports of its own spec are kept, so a rollback gets them back,
    unless ``used`` holds them now (this file publishes that number elsewhere)."""
    keep = old.assigned_ports if old is not None else {}
    wanted = [
        port_key(p)
        for p in spec.ports
        if p.published is None and p.mode == "ingress" and p.protocol == "tcp"
    ]
    previous = {port_key(p) for p in old.spec.ports} if old is not None else set()
    out: dict[str, int] = {}
    for key, kept in keep.items():
        if (key in previous or key in wanted) and kept not in used:
            out[key] = kept
            used.add(kept)
    free = (n for n in ASSIGNED_RANGE if n not in used)
    for key in wanted:
        if key not in out:
            number = next(free, None)
            if number is None:
                raise SpecError(
                    f"service {spec.name}: no free port left in {ASSIGNED_RANGE.start}-"
                    f"{ASSIGNED_RANGE.stop - 1} to publish {key}; give it a published port"
                )
            out[key] = number
            used.add(number)
    return out
