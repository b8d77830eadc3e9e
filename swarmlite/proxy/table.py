"""The routing table: which listener goes to which backends, derived from a snapshot.

Pure logic, no I/O. A listener is keyed by the address it binds, ``(host, port)``:
published ports bind the node's bind host, service VIPs bind ``(vip, port)``. Each
key keeps one ``BackendPicker`` for its whole life; a new snapshot replaces the
picker's targets in place, so its round-robin position survives, connections already
made keep their upstream, and a removed backend is never picked again.

Backends anywhere in the cluster are targets. A replica on this node is dialed at its
container address; a replica on another node at its ``Backend.remote_ports`` entry
for the target port (``Target.remote``). Which of the two applies is decided by the
``ProxyContext``, which knows the local node; a table told its ``local_node_id``
also drops, at planning time, the targets this node cannot reach.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from swarmlite.spec.routes import Backend, RoutesSnapshot, ServiceRoute

ListenerKey = tuple[str, int]
ListenerMode = Literal["tcp", "http"]


@dataclass(frozen=True, slots=True)
class Target:
    """One backend as a listener dials it.

    ``host``/``port`` are the container address and target port, dialed on the
    backend's own node (``host`` is "" when it has none); ``remote`` is where meshes
    on other nodes dial it (``None`` when the port is not published for them).
    """

    task_id: str
    node_id: str
    host: str
    port: int
    remote: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Listener:
    """One address the mesh binds and what it serves there."""

    host: str
    port: int
    service: str  # full service name, "stack_web"
    mode: ListenerMode
    kind: Literal["published", "vip"]

    @property
    def key(self) -> ListenerKey:
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class ListenerPlan:
    listener: Listener
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A listener address that two services claim; the first one keeps it."""

    host: str
    port: int
    service: str
    holder: str


# A target whose connect failed is skipped for this long (nginx: max_fails=1
# fail_timeout=10s). While quorum is lost the routes cannot drop a dead node's
# replicas, and each request would otherwise wait a connect timeout on them.
FAIL_TIMEOUT = 5.0
# A refused connect costs one round trip, not a timeout, and is what a replica just
# started gives until its process listens: skipping it 5 s kept such replicas out of
# the rotation that long (seen in the kill benchmark: routed 5.7 s after the kill).
REFUSED_TIMEOUT = 0.5


class BackendPicker:
    """Round-robin over a replaceable tuple of targets, skipping recently failed ones.

    When every target has failed recently, it round-robins over all of them."""

    __slots__ = ("_clock", "_failed", "_next", "_targets")

    def __init__(
        self, targets: Iterable[Target] = (), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._targets: tuple[Target, ...] = tuple(targets)
        self._next = 0
        self._failed: dict[Target, float] = {}  # target -> skipped until (clock time)
        self._clock = clock

    def pick(self) -> Target | None:
        targets = self._targets
        if not targets:
            return None
        i = self._next % len(targets)
        if self._failed:
            return self._pick_healthy(i)
        self._next = i + 1
        return targets[i]

    def _pick_healthy(self, i: int) -> Target:
        targets, failed, now = self._targets, self._failed, self._clock()
        for step in range(len(targets)):
            target = targets[(i + step) % len(targets)]
            until = failed.get(target)
            if until is not None and until <= now:
                del failed[target]
                until = None
            if until is None:
                self._next = i + step + 1
                return target
        self._next = i + 1
        return targets[i]

    def failed(self, target: Target, refused: bool = False) -> None:
        """A connect to ``target`` failed: skip it for ``FAIL_TIMEOUT`` seconds, or
        ``REFUSED_TIMEOUT`` if it was refused."""
        if target in self._targets:
            skip = REFUSED_TIMEOUT if refused else FAIL_TIMEOUT
            self._failed[target] = self._clock() + skip

    def replace(self, targets: Iterable[Target]) -> None:
        """Swap the targets atomically; the rotation continues where it was."""
        self._targets = tuple(targets)
        if self._failed:
            self._failed = {t: u for t, u in self._failed.items() if t in self._targets}

    @property
    def targets(self) -> tuple[Target, ...]:
        return self._targets

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, target: object) -> bool:
        return target in self._targets


class ListenerRoute:
    """The live, mutable entry of one listener key; connections hold on to it."""

    __slots__ = ("listener", "picker")

    def __init__(self, listener: Listener, targets: Iterable[Target] = ()) -> None:
        self.listener = listener
        self.picker = BackendPicker(targets)


def _address(backend: Backend, networks: Iterable[str]) -> str | None:
    for net in networks:
        addr = backend.addresses.get(net)
        if addr:
            return addr
    for net in sorted(backend.addresses):
        if backend.addresses[net]:
            return backend.addresses[net]
    return None


def parse_host_port(value: str) -> tuple[str, int] | None:
    """``"10.0.0.5:32768"`` or ``"[fd00::5]:32768"`` as ``(host, port)``; None if malformed."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _targets(
    route: ServiceRoute, networks: tuple[str, ...], port: int, local_node_id: str | None
) -> tuple[Target, ...]:
    out: list[Target] = []
    for b in route.backends:
        addr = _address(b, networks) or ""
        published = b.remote_ports.get(port)
        remote = parse_host_port(published) if published else None
        if local_node_id is None:
            reachable = bool(addr) or remote is not None
        elif b.node_id == local_node_id:
            reachable = bool(addr)
        else:
            reachable = remote is not None
        if reachable:
            out.append(Target(b.task_id, b.node_id, addr, port, remote))
    return tuple(out)


def plan_listeners(
    snapshot: RoutesSnapshot, bind_host: str, local_node_id: str | None = None
) -> tuple[dict[ListenerKey, ListenerPlan], list[Conflict]]:
    """Every listener the snapshot asks for, with its targets, and the address conflicts.

    Published ``ingress`` TCP ports bind ``bind_host`` (HTTP mode when the port says
    ``app_protocol: http``); ``host``-mode and UDP ports are not the mesh's. Each VIP
    binds every ``listen_ports`` entry in plain TCP mode and dials backends on the
    VIP's own network first.

    With ``local_node_id`` a target is kept only when this node can reach it: a local
    backend needs a container address, a remote one a ``remote_ports`` entry for the
    target port. Without it, a backend with either is kept (the dialer decides).
    """
    plans: dict[ListenerKey, ListenerPlan] = {}
    conflicts: list[Conflict] = []

    def add(listener: Listener, targets: tuple[Target, ...]) -> None:
        held = plans.get(listener.key)
        if held is not None:
            if held.listener.service != listener.service:
                conflicts.append(
                    Conflict(listener.host, listener.port, listener.service, held.listener.service)
                )
            return
        plans[listener.key] = ListenerPlan(listener, targets)

    for route in sorted(snapshot.services, key=lambda r: r.name):
        for p in route.ports:
            if p.protocol != "tcp" or p.mode != "ingress" or p.published is None:
                continue
            mode: ListenerMode = "http" if p.app_protocol == "http" else "tcp"
            add(
                Listener(bind_host, p.published, route.name, mode, "published"),
                _targets(route, route.networks, p.target, local_node_id),
            )
        for net in sorted(route.endpoints):
            vip = route.endpoints[net]
            prefer = (net, *route.networks)
            for port in route.listen_ports:
                add(
                    Listener(vip, port, route.name, "tcp", "vip"),
                    _targets(route, prefer, port, local_node_id),
                )
    return plans, conflicts


@dataclass(frozen=True, slots=True)
class TableChange:
    added: tuple[ListenerRoute, ...]
    removed: tuple[ListenerRoute, ...]
    updated: int  # kept listeners whose targets or mode were refreshed
    conflicts: tuple[Conflict, ...]


class RoutingTable:
    """Listener key -> live ``ListenerRoute``; ``apply`` diffs a new snapshot in."""

    def __init__(self, bind_host: str = "0.0.0.0", local_node_id: str | None = None) -> None:
        self.bind_host = bind_host
        self.local_node_id = local_node_id
        self.revision = -1
        self._routes: dict[ListenerKey, ListenerRoute] = {}

    @classmethod
    def from_snapshot(
        cls, snapshot: RoutesSnapshot, bind_host: str = "0.0.0.0", local_node_id: str | None = None
    ) -> RoutingTable:
        table = cls(bind_host, local_node_id)
        table.apply(snapshot)
        return table

    def apply(self, snapshot: RoutesSnapshot) -> TableChange:
        plans, conflicts = plan_listeners(snapshot, self.bind_host, self.local_node_id)
        added: list[ListenerRoute] = []
        removed: list[ListenerRoute] = []
        updated = 0
        for key in list(self._routes):
            if key not in plans:
                gone = self._routes.pop(key)
                # Kept-alive clients of the closed listener still hold the route: their
                # next request gets 503 and a close, never a task that is gone.
                gone.picker.replace(())
                removed.append(gone)
        for key, plan in plans.items():
            live = self._routes.get(key)
            if live is None:
                live = ListenerRoute(plan.listener, plan.targets)
                self._routes[key] = live
                added.append(live)
                continue
            if live.listener != plan.listener or live.picker.targets != plan.targets:
                live.listener = plan.listener
                live.picker.replace(plan.targets)
                updated += 1
        self.revision = snapshot.revision
        return TableChange(tuple(added), tuple(removed), updated, tuple(conflicts))

    def route(self, key: ListenerKey) -> ListenerRoute | None:
        return self._routes.get(key)

    def picker(self, key: ListenerKey) -> BackendPicker | None:
        live = self._routes.get(key)
        return None if live is None else live.picker

    def routes(self) -> list[ListenerRoute]:
        return list(self._routes.values())

    def __len__(self) -> int:
        return len(self._routes)
