"""The routing mesh of one node: listeners for every published port and service VIP.

``MeshProxy.apply(snapshot)`` diffs the listeners in: new ones are bound, removed
ones closed (their open connections run on), kept ones get their backends swapped in
place. A bind that fails is logged with service and port, listed by
``listener_errors()`` and retried on the next ``apply``; it never raises.

VIP sockets are bound with ``IP_FREEBIND``, so they can open before the agent has put
the VIP on the bridge. Linux refuses ``VIP:P`` next to a wildcard ``0.0.0.0:P``
listener, so when a published port and a VIP port share a number the wildcard socket
serves both, choosing the route by each connection's local address.

Stopping a task without failing requests: once a snapshot without the task is applied,
no new connection or request goes to it and idle pooled HTTP connections to it are
closed; ``drained(task_id, timeout)`` then waits for what is still in flight to it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass

from swarmlite.proxy.context import (
    CLIENT_IDLE_TIMEOUT,
    RESPONSE_TIMEOUT,
    TICK,
    ProxyContext,
)
from swarmlite.proxy.http import HttpProxyConnection
from swarmlite.proxy.http_upstream import UpstreamPool
from swarmlite.proxy.table import ListenerKey, ListenerRoute, RoutingTable
from swarmlite.proxy.tcp import TcpProxyConnection
from swarmlite.spec.routes import RoutesSnapshot

log = logging.getLogger("swarmlite.proxy")

_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


@dataclass(frozen=True, slots=True)
class ListenerError:
    service: str
    host: str
    port: int
    error: str


class MeshProxy:
    def __init__(
        self,
        local_node_id: str,
        bind_host: str = "0.0.0.0",
        *,
        connect_timeout: float = 1.0,
        tick: float = TICK,
        response_timeout: float = RESPONSE_TIMEOUT,
        client_idle_timeout: float = CLIENT_IDLE_TIMEOUT,
        backlog: int = 1024,
        max_idle_per_backend: int = 128,
        idle_sweep: float = 30.0,
    ) -> None:
        self.local_node_id = local_node_id
        self.bind_host = bind_host
        self.table = RoutingTable(bind_host, local_node_id)
        self._ctx = ProxyContext(
            local_node_id,
            connect_timeout,
            tick=tick,
            response_timeout=response_timeout,
            client_idle_timeout=client_idle_timeout,
        )
        self._ticker: asyncio.TimerHandle | None = None
        self._pool = UpstreamPool(max_idle_per_backend)
        self._backlog = backlog
        self._idle_sweep = idle_sweep
        self._sweeper: asyncio.TimerHandle | None = None
        self._servers: dict[ListenerKey, tuple[asyncio.Server, ListenerRoute]] = {}
        self._errors: dict[ListenerKey, ListenerError] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._stopped = False

    async def start(self) -> None:
        """Ready to serve; listeners open with the first ``apply``."""
        self._started = True
        self._stopped = False
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._idle_sweep, self._sweep)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(self._ctx.tick, self._tick)

    def _tick(self) -> None:
        """Timeouts, coarse: every connection counts a quiet tick, any byte resets it."""
        for conn in list(self._ctx.connections):
            conn.tick()
        self._ticker = asyncio.get_running_loop().call_later(self._ctx.tick, self._tick)

    def _sweep(self) -> None:
        """Close upstream keep-alive connections idle for one to two sweep periods."""
        self._pool.sweep()
        self._sweeper = asyncio.get_running_loop().call_later(self._idle_sweep, self._sweep)

    async def apply(self, snapshot: RoutesSnapshot) -> str:
        """Bring the listeners in line with ``snapshot``; returns what was decided."""
        async with self._lock:
            if self._stopped:
                return f"revision={snapshot.revision} ignored: mesh stopped"
            change = self.table.apply(snapshot)
            self._pool.retain({t.task_id for r in self.table.routes() for t in r.picker.targets})
            self._errors = {}
            for c in change.conflicts:
                self._errors[(c.host, c.port)] = ListenerError(
                    c.service, c.host, c.port, f"port already published by service {c.holder}"
                )
                log.warning(
                    "listener conflict service=%s host=%s port=%d holder=%s",
                    c.service,
                    c.host,
                    c.port,
                    c.holder,
                )
            opened, closed = await self._converge()
            decision = (
                f"revision={snapshot.revision} listeners={len(self._servers)} "
                f"opened={opened} closed={closed} updated={change.updated} "
                f"errors={len(self._errors)}"
            )
            if opened or closed or change.updated or self._errors:
                log.info("mesh applied %s", decision)
            return decision

    async def _converge(self) -> tuple[int, int]:
        # Every listener has its own SO_REUSEPORT socket: the kernel hands a connection
        # to VIP:port before 0.0.0.0:port, so shared port numbers need no special case.
        desired = {r.listener.key: r for r in self.table.routes()}
        opened = closed = 0
        for key in list(self._servers):
            server, route = self._servers[key]
            if desired.get(key) is not route:
                server.close()
                del self._servers[key]
                closed += 1
                log.info(
                    "listener closed service=%s host=%s port=%d",
                    route.listener.service,
                    key[0],
                    key[1],
                )
        for key, route in desired.items():
            if key not in self._servers and await self._bind(route):
                opened += 1
        return opened, closed

    def _make(self, route: ListenerRoute) -> asyncio.Protocol:
        if route.listener.mode == "http":
            return HttpProxyConnection(route, self._ctx, self._pool)
        return TcpProxyConnection(route, self._ctx)

    async def _bind(self, route: ListenerRoute) -> bool:
        lst = route.listener
        port = lst.port
        make = self._make

        def factory() -> asyncio.Protocol:
            return make(route)

        family = socket.AF_INET6 if ":" in lst.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Lets a VIP:port listener and a 0.0.0.0:port listener coexist (the kernel
            # sends each connection to the most specific match), even across processes.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if lst.kind == "vip" and family == socket.AF_INET:
                sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
            sock.bind((lst.host, port))
            sock.setblocking(False)
            server = await asyncio.get_running_loop().create_server(
                factory, sock=sock, backlog=self._backlog
            )
        except OSError as err:
            sock.close()
            self._errors[lst.key] = ListenerError(lst.service, lst.host, port, str(err))
            log.warning(
                "listener failed service=%s host=%s port=%d error=%s",
                lst.service,
                lst.host,
                port,
                err,
            )
            return False
        self._servers[lst.key] = (server, route)
        log.info(
            "listening service=%s host=%s port=%d mode=%s kind=%s",
            lst.service,
            lst.host,
            port,
            lst.mode,
            lst.kind,
        )
        return True

    def listener_errors(self) -> list[ListenerError]:
        return sorted(self._errors.values(), key=lambda e: (e.port, e.host))

    def listening(self) -> list[tuple[str, int, str]]:
        """``(host, port, service)`` of every listener being served."""
        return sorted((k[0], k[1], r.listener.service) for k, (_, r) in self._servers.items())

    def in_flight(self, task_id: str) -> int:
        """Connections (TCP) and requests (HTTP) now in flight to the task."""
        return self._ctx.in_flight(task_id)

    async def drained(self, task_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s for nothing to be in flight to the task; False if not."""
        return await self._ctx.drained(task_id, timeout)

    @property
    def connections(self) -> int:
        return len(self._ctx.connections)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let connections finish for up to ``grace`` s, then cut them."""
        async with self._lock:
            self._stopped = True
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
            for server, _ in self._servers.values():
                server.close()
            self._servers.clear()
            aborted = await self._ctx.drain(grace)
            self._pool.close()
            log.info("mesh stopped node=%s aborted=%d", self.local_node_id, aborted)
