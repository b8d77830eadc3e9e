"""The dispatcher: agents' sessions, their assignments, their status reports.

Each session gets the node's complete task set and the routing view whenever either
changes. Status reports are applied with compare-and-swap and only ever move a task's
observed state forward.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import aetcd
import msgspec
from aiohttp import WSMsgType, web

from swarmlite.api.agent_protocol import (
    Assignments,
    EngineReport,
    FileData,
    Hello,
    StatusReport,
    TaskUpdate,
    Unknown,
    decode_agent_message,
    encoder,
)
from swarmlite.errors import AuthError, ConflictError, SwarmliteError
from swarmlite.manager.liveness import DEFAULT_TTL, Heartbeat
from swarmlite.manager.routes import build_routes
from swarmlite.security.keeper import SecretKeeper
from swarmlite.spec.objects import Node, NodeStatus, Secret, Task, TaskState
from swarmlite.spec.routes import RoutesSnapshot
from swarmlite.store.cache import ClusterState, StateCache
from swarmlite.store.store import Store

log = logging.getLogger("swarmlite.dispatcher")


def assignments_for(
    node_id: str,
    state: ClusterState,
    routes: RoutesSnapshot,
    open_secret: Callable[[Secret], bytes] | None = None,
) -> Assignments:
    """The tasks an agent must act on: placed there, and meant to run or not yet stopped; and the
    contents of the secrets and configs that those meant to run use."""
    tasks = tuple(
        sorted(
            (
                v.value
                for v in state.tasks.values()
                if v.value.node_id == node_id
                # Placed by the scheduler: a global service's task names its node from
                # the start, but may not run there until the filters have passed it.
                and v.value.status.state >= TaskState.ASSIGNED
                and (
                    v.value.desired_state <= TaskState.RUNNING or not v.value.status.state.terminal
                )
            ),
            key=lambda t: t.id,
        )
    )
    volume_names = {m.volume_name(t.spec.stack) for t in tasks for m in t.spec.mounts}
    volumes = tuple(v.value for v in state.volumes.values() if v.value.name in volume_names)
    manager_nodes = [v.value for v in state.nodes.values() if v.value.role == "manager"]
    managers = tuple(sorted(f"{n.addr}:{n.api_port}" for n in manager_nodes))
    node = state.nodes.get(node_id)
    secrets, configs = task_files(tasks, state, open_secret)
    return Assignments(
        revision=state.revision,
        tasks=tasks,
        routes=routes,
        volumes=volumes,
        managers=managers,
        node_role=node.value.role if node else "",
        manager_ids=tuple(sorted(n.id for n in manager_nodes)),
        secrets=secrets,
        configs=configs,
    )


def task_files(
    tasks: Sequence[Task], state: ClusterState, open_secret: Callable[[Secret], bytes] | None
) -> tuple[tuple[FileData, ...], tuple[FileData, ...]]:
    """Secrets and configs referenced by ``tasks`` meant to run; a secret that does not
    open (no key, tampered) is left out, and that task then fails with a message."""
    live = [t for t in tasks if t.desired_state <= TaskState.RUNNING]
    secret_names = {r.name for t in live for r in t.spec.secrets}
    config_names = {r.name for t in live for r in t.spec.configs}
    secrets: list[FileData] = []
    for v in state.secrets.values():
        if v.value.name in secret_names and open_secret is not None:
            try:
                data = base64.b64encode(open_secret(v.value)).decode()
            except SwarmliteError as exc:
                log.error("secret=%s cannot be opened: %s", v.value.name, exc)
                continue
            secrets.append(FileData(name=v.value.name, digest=v.value.digest, data=data))
    configs = [
        FileData(name=v.value.name, digest=v.value.digest, data=v.value.data)
        for v in state.configs.values()
        if v.value.name in config_names
    ]
    return tuple(sorted(secrets, key=lambda f: f.name)), tuple(
        sorted(configs, key=lambda f: f.name)
    )


class Dispatcher:
    def __init__(
        self,
        store: Store,
        cache: StateCache,
        *,
        client: aetcd.Client,
        manager_id: str,
        heartbeat_ttl: int = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        keeper: SecretKeeper | None = None,
    ) -> None:
        self._store = store
        self._keeper = keeper
        self._opened: dict[tuple[str, str], bytes] = {}  # (secret id, digest) -> plaintext
        self._cache = cache
        self._client = client
        self._manager_id = manager_id
        self._heartbeat_ttl = heartbeat_ttl
        self._clock = clock
        self._routes: tuple[int, RoutesSnapshot] | None = None

    def _open_secret(self, secret: Secret) -> bytes:
        """Open (and remember, in memory only) a secret's current content."""
        if self._keeper is None:
            raise AuthError("this manager has no cluster key to open secrets with")
        key = (secret.id, secret.digest)
        if key not in self._opened:
            if len(self._opened) > 1000:
                self._opened.clear()
            self._opened[key] = self._keeper.open(secret)
        return self._opened[key]

    def routes(self, state: ClusterState) -> RoutesSnapshot:
        # One snapshot per store revision, shared by every session.
        if self._routes is None or self._routes[0] != state.revision:
            self._routes = (state.revision, build_routes(state))
        return self._routes[1]

    async def handle_session(self, request: web.Request, node_id: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=2.0, max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        first = await ws.receive(timeout=10)
        if first.type != WSMsgType.TEXT:
            await ws.close(message=b"expected hello")
            return ws
        try:
            hello = decode_agent_message(first.data)
        except msgspec.DecodeError as exc:
            log.warning("session refused node=%s: malformed hello: %s", node_id[:12], exc)
            await ws.close(message=b"malformed hello")
            return ws
        if not isinstance(hello, Hello) or hello.node_id != node_id:
            await ws.close(message=b"hello does not match the certificate's node id")
            return ws
        if not await self._register(hello):
            log.warning("session refused node=%s: not a member (removed?)", node_id[:12])
            await ws.close(message=b"this node is not part of the cluster: join it again")
            return ws
        heartbeat = Heartbeat(self._client, node_id, self._manager_id, self._heartbeat_ttl)
        await heartbeat.start()
        log.info("session open node=%s hostname=%s", node_id[:12], hello.hostname)
        sender = asyncio.create_task(self._send_loop(ws, node_id, heartbeat))
        skipped: set[str] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    report = decode_agent_message(msg.data)
                except msgspec.DecodeError as exc:
                    log.warning("closing session node=%s: malformed message: %s", node_id[:12], exc)
                    await ws.close(message=b"malformed message")
                    break
                if isinstance(report, StatusReport):
                    await self.apply_status(node_id, report.updates)
                elif isinstance(report, EngineReport):
                    await self.set_engine(node_id, report.problem)
                elif isinstance(report, Unknown) and report.type not in skipped:
                    skipped.add(report.type)
                    log.warning(
                        "node=%s sent message type %r, unknown to this manager (a newer "
                        "swarmlite?): skipped",
                        node_id[:12],
                        report.type,
                    )
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            await heartbeat.stop()
            log.info("session closed node=%s", node_id[:12])
        return ws

    async def _send_loop(
        self, ws: web.WebSocketResponse, node_id: str, heartbeat: Heartbeat
    ) -> None:
        last = b""
        lost_since: float | None = None
        while not ws.closed:
            if heartbeat.silent_for() > self._heartbeat_ttl:
                # The node's heartbeat key has expired: the leader counts the node down
                # and moves its tasks. Its agent should go to a manager that can write
                # (this one may sit in a minority whose watch just went quiet).
                log.warning(
                    "closing session node=%s: its heartbeat could not be kept for %.1fs",
                    node_id[:12],
                    heartbeat.silent_for(),
                )
                await ws.close(message=b"manager cannot keep the node's heartbeat")
                return
            if not self._cache.connected:
                # This manager lost its store: let the agent move to another manager.
                # A duration, so the monotonic clock: a step of the wall clock (NTP)
                # must not close every session at once, nor keep them open for good.
                if lost_since is None:
                    lost_since = time.monotonic()
                if time.monotonic() - lost_since > self._heartbeat_ttl:
                    log.warning(
                        "closing session node=%s: this manager lost its store", node_id[:12]
                    )
                    await ws.close(message=b"manager lost its store")
                    return
                await asyncio.sleep(0.5)
                continue
            lost_since = None
            seen = self._cache.version
            state = self._cache.view()
            if node_id not in state.nodes:
                log.warning("closing session node=%s: removed from the cluster", node_id[:12])
                await ws.close(message=b"this node is not part of the cluster: join it again")
                return
            message = assignments_for(node_id, state, self.routes(state), self._open_secret)
            # The revision moves on every write anywhere; send only when content changed.
            body = encoder.encode(
                (
                    message.tasks,
                    message.routes.services,
                    message.routes.networks,
                    message.volumes,
                    message.managers,
                    message.node_role,
                    message.manager_ids,
                    message.secrets,
                    message.configs,
                )
            )
            if body != last:
                await ws.send_str(encoder.encode(message).decode())
                last = body
            await self._cache.wait_changed(seen, timeout=1.0)

    async def _register(self, hello: Hello) -> bool:
        """Mark a known node ready with what it reports; False for a node the cluster
        does not know (removed with ``node rm``): it must join again."""
        status = NodeStatus(state="ready", message="session open", changed_at=self._clock())

        def change(node: Node) -> Node:
            return msgspec.structs.replace(
                node,
                hostname=hello.hostname,
                addr=hello.addr,
                api_port=hello.api_port,
                platform=hello.platform,
                resources=hello.resources,
                status=status,
            )

        return await self._store.modify(Node, hello.node_id, change, attempts=10) is not None

    async def set_engine(self, node_id: str, problem: str) -> None:
        """Record what the node's agent says of its Docker engine ("" = it answers)."""

        def change(node: Node) -> Node | None:
            if node.status.engine == problem:
                return None
            return msgspec.structs.replace(
                node, status=msgspec.structs.replace(node.status, engine=problem)
            )

        try:
            written = await self._store.modify(Node, node_id, change)
        except ConflictError as exc:
            log.warning("could not record node=%s engine report: %s", node_id[:12], exc)
            return
        if written is None:
            return
        if problem:
            log.warning("node=%s %s", node_id[:12], problem)
        else:
            log.info("node=%s docker engine answers again", node_id[:12])

    async def apply_status(self, node_id: str, updates: Sequence[TaskUpdate]) -> int:
        applied = 0
        for update in updates:
            current = self._cache.view().tasks.get(update.task_id)
            if current is None or current.value.node_id != node_id:
                # This manager's view may not have the task (or its placement) yet: the
                # agent had it from another manager. The agent does not send it again,
                # so ask the store before dropping the report.
                current = await self._store.get(Task, update.task_id)
            for _ in range(5):
                if current is None or current.value.node_id != node_id:
                    break
                if not current.value.status.advanced(update.status):
                    break
                try:
                    await self._store.update(current, current.value.reported(update.status))
                    applied += 1
                    break
                except ConflictError:
                    current = await self._store.get(Task, update.task_id)
        return applied
