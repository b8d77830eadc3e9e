"""The node agent: its session with a manager, and what it does with assignments.

One websocket to a manager (the next one on failure). Every Assignments message is
applied in order: stack networks and service VIPs, then the mesh and name server, then
the task runner (in node networking mode, ``node_network.py``, no stack networks, and
the mesh and name server see ``node_local_routes``). Status changes flow back
batched; after a reconnect the agent resends everything it knows, so the manager
never misses a final state. The Docker engine's health (``engine_watch``) is checked
every few seconds and reported once per session and whenever it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import random
import socket
import ssl
from collections.abc import Callable, Sequence

import aiohttp
import msgspec

from swarmlite.agent.node_network import node_local_routes
from swarmlite.agent.runtime import DockerRuntime
from swarmlite.agent.worker import TaskRunner
from swarmlite.api.agent_protocol import (
    Assignments,
    EngineReport,
    Hello,
    StatusReport,
    TaskUpdate,
    decode_manager_message,
    encoder,
)
from swarmlite.api.membership import KnownManagers
from swarmlite.errors import SwarmliteError
from swarmlite.proxy.dns import ServiceNameServer
from swarmlite.proxy.workers import Mesh
from swarmlite.spec.objects import Network, NodeResources, Platform, TaskStatus
from swarmlite.spec.routes import RoutesSnapshot

log = logging.getLogger("swarmlite.agent")

ENGINE_CHECK_EVERY = 5.0  # seconds between looks at the engine watch


def reconnect_delay(backoff: float, draw: float) -> float:
    """Between half and all of ``backoff`` (``draw`` in [0, 1)): when a manager dies,
    its agents must not all knock on the next one in the same instant."""
    return backoff * (0.5 + draw / 2)


class NodeAgent:
    def __init__(
        self,
        *,
        node_id: str,
        addr: str,
        api_port: int,
        managers: Sequence[str],
        ssl_context: ssl.SSLContext | None,
        runtime: DockerRuntime,
        mesh: Mesh,
        names: ServiceNameServer | None,
        node_network: bool = False,
        on_cluster_change: Callable[[tuple[str, ...], str], None] | None = None,
        known_managers: KnownManagers | None = None,
    ) -> None:
        self.node_id = node_id
        self._addr = addr
        self._api_port = api_port
        self._managers = list(managers)
        self._ssl = ssl_context
        self.runtime = runtime
        self.mesh = mesh
        self.names = names
        self._node_network = node_network
        # Told the managers' addresses and this node's recorded role when they change.
        self._on_cluster_change = on_cluster_change
        self._seen_cluster: tuple[tuple[str, ...], str] = ((), "")
        # A worker's API serves its manager-only paths to these managers only.
        self._known_managers = known_managers
        self.runner = TaskRunner(runtime, node_id, self._queue_report, drained=mesh.drained)
        self._outbox: dict[str, TaskStatus] = {}
        self._outbox_ready = asyncio.Event()
        self._networks: dict[str, tuple[Network, frozenset[str]]] = {}
        self._unremoved: set[str] = set()  # networks to remove once no container uses them
        self._retrier: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._engine = ""  # the engine's problem as last seen; "" while it answers
        self._engine_sent: str | None = None  # as last told this session's manager
        self.connected = asyncio.Event()
        self.last_routes: RoutesSnapshot | None = None

    async def start(self) -> None:
        await self.runtime.ping()
        await self.mesh.start()
        if self.names is not None:
            await self.names.start()
        await self.runner.start()
        self._task = asyncio.create_task(self._session_loop(), name="agent-session")
        self._watcher = asyncio.create_task(self._watch_engine(), name="engine-watch")

    async def stop(self) -> None:
        for task in (self._task, self._watcher, self._retrier):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.runner.stop()

    def _queue_report(self, task_id: str, status: TaskStatus) -> None:
        self._outbox[task_id] = status
        self._outbox_ready.set()

    async def _watch_engine(self) -> None:
        while True:
            await asyncio.sleep(ENGINE_CHECK_EVERY)
            problem = self.runtime.engine_watch.problem()
            if problem == self._engine:
                continue
            if problem:
                log.error("node=%s %s", self.node_id[:12], problem)
            else:
                log.info("node=%s docker engine answers again", self.node_id[:12])
            self._engine = problem
            self._outbox_ready.set()

    async def _hello(self) -> Hello:
        cpus, memory, os_name, arch = await self.runtime.info()
        return Hello(
            node_id=self.node_id,
            hostname=socket.gethostname(),
            addr=self._addr,
            api_port=self._api_port,
            platform=Platform(
                os=os_name or platform.system().lower(), arch=arch or platform.machine()
            ),
            resources=NodeResources(cpus=cpus or float(os.cpu_count() or 1), memory=memory),
        )

    async def _session_loop(self) -> None:
        backoff = 0.1
        index = 0
        async with aiohttp.ClientSession() as http:
            while True:
                url = f"https://{self._managers[index % len(self._managers)]}/v1/agent/session"
                try:
                    async with http.ws_connect(
                        url, ssl=self._ssl or False, heartbeat=2.0, max_msg_size=0
                    ) as ws:
                        await ws.send_str(encoder.encode(await self._hello()).decode())
                        # Resend everything known: the manager may have missed reports.
                        for task_id, status in self.runner.statuses().items():
                            self._outbox.setdefault(task_id, status)
                        self._engine_sent = None
                        self._outbox_ready.set()
                        self.connected.set()
                        log.info("session open manager=%s", url)
                        if await self._run_session(ws):
                            backoff = 0.1  # a working session: the next failure is news
                except (aiohttp.ClientError, OSError, TimeoutError, SwarmliteError) as exc:
                    # SwarmliteError: the engine failed the hello's ``docker info``.
                    log.warning("session to %s failed: %s", url, exc)
                except Exception:
                    # Whatever went wrong, the node must not stay without a session.
                    log.exception("session to %s failed unexpectedly", url)
                self.connected.clear()
                index += 1
                await asyncio.sleep(reconnect_delay(backoff, random.random()))
                backoff = min(backoff * 2, 2.0)

    async def _run_session(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Serve one session until it ends; True if the manager sent assignments."""
        assigned = False
        sender = asyncio.create_task(self._send_reports(ws))
        skipped: set[str] = set()
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    try:
                        message = decode_manager_message(msg.data)
                    except msgspec.DecodeError as exc:
                        log.warning("closing session: malformed message from manager: %s", exc)
                        break
                    if isinstance(message, Assignments):
                        assigned = True
                        await self.apply(message)
                    elif message.type not in skipped:
                        skipped.add(message.type)
                        log.warning(
                            "manager sent message type %r, unknown to this node (a newer "
                            "swarmlite?): skipped",
                            message.type,
                        )
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        return assigned

    async def _send_reports(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            if self._engine_sent != self._engine:
                engine = self._engine
                await ws.send_str(encoder.encode(EngineReport(problem=engine)).decode())
                self._engine_sent = engine
            batch, self._outbox = self._outbox, {}
            if not batch:
                continue
            report = StatusReport(
                updates=tuple(TaskUpdate(task_id=k, status=v) for k, v in batch.items())
            )
            try:
                await ws.send_str(encoder.encode(report).decode())
            except Exception:
                # Put them back for the next session; newer reports win.
                for k, v in batch.items():
                    self._outbox.setdefault(k, v)
                raise

    async def apply(self, message: Assignments) -> None:
        if self._known_managers is not None:
            self._known_managers.heard(message.manager_ids)
        if message.managers:
            # Fail over to any manager the cluster knows, not only the ones we started with.
            self._managers = list(dict.fromkeys((*self._managers, *message.managers)))
        seen = (message.managers, message.node_role)
        if seen != self._seen_cluster and self._on_cluster_change is not None:
            self._seen_cluster = seen
            self._on_cluster_change(*seen)
        routes = served = message.routes
        if self._node_network:
            served = node_local_routes(routes)
        else:
            await self._apply_networks(routes)
        await self.mesh.apply(served)
        if self.names is not None:
            await self.names.apply(served)
        self.last_routes = routes
        self.runtime.files.update(message.tasks, message.secrets, message.configs)
        self.runner.apply(message.tasks, routes.networks, message.volumes)

    async def _remove_unused_networks(self) -> None:
        for name in sorted(self._unremoved):
            with contextlib.suppress(Exception):
                if await self.runtime.remove_network(name):
                    self._unremoved.discard(name)

    async def _retry_network_removal(self) -> None:
        for _ in range(120):  # bounded: two minutes, then the next assignments retry
            await asyncio.sleep(1.0)
            await self._remove_unused_networks()
            if not self._unremoved:
                return

    async def _apply_networks(self, routes: RoutesSnapshot) -> None:
        vips: dict[str, set[str]] = {}
        for route in routes.services:
            for net_name, vip in route.endpoints.items():
                vips.setdefault(net_name, set()).add(vip)
        wanted = {n.name: (n, frozenset(vips.get(n.name, ()))) for n in routes.networks}
        # Removals first, so a freed subnet is gone from Docker before a new network
        # takes it; one still used by a container is retried on the next assignments.
        for name in set(self._networks) - set(wanted):
            net, _ = self._networks.pop(name)
            with contextlib.suppress(Exception):
                await self.runtime.set_vips(net, ())
            self._unremoved.add(name)
        self._unremoved -= set(wanted)
        await self._remove_unused_networks()
        if self._unremoved and (self._retrier is None or self._retrier.done()):
            # Their containers are still stopping; no new assignments may come to retry.
            self._retrier = asyncio.create_task(self._retry_network_removal())
        for name, (net, addrs) in wanted.items():
            if self._networks.get(name) == (net, addrs):
                continue
            try:
                await self.runtime.ensure_network(net)
                await self.runtime.set_vips(net, addrs)
                self._networks[name] = (net, addrs)
            except Exception as exc:
                log.error("network=%s could not be prepared: %s", name, exc)
