"""Published ports: refuse a spec publishing a port another service holds. Pure.

Used by deploy (``deploy.py``), ``service rollback`` (``api/update_handlers.py``) and
the updater's automatic rollback (``updater.py``), so all three refuse alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from swarmlite.errors import SpecError
from swarmlite.spec.objects import Service
from swarmlite.spec.service import ServiceSpec


def check_published_ports(specs: Sequence[ServiceSpec], others: Iterable[Service]) -> None:
    """Refuse a published port that one of ``others`` (the services that stay) holds,
    or that two of ``specs`` share. Every node's mesh listens on an ingress port, so a
    second service would take it over, or lose it, silently; a host-mode port is the
    scheduler's to place, but never on a number the mesh holds on every node."""
    ingress: dict[tuple[int, str], str] = {}
    host: dict[tuple[int, str], str] = {}
    for svc in others:
        for port in svc.spec.ports:
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
