"""Node liveness on etcd leases.

While an agent's session is open, the manager serving it keeps
``/swarmlite/heartbeat/<node>`` alive under a lease of ``ttl`` seconds. If the node, or
the manager holding its session, dies, the lease expires and etcd deletes the key;
the leader's ``NodeMonitor`` sees the delete and, if the key is still missing half a
second later, marks the node down, which makes the orchestrator replace its tasks. A
reconnect anywhere puts the key back and the node is ready again. A sweep every TTL
compares node states with the keys, so what an event or a failed write missed heals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import aetcd
import msgspec

from swarmlite.background import BackgroundLoop
from swarmlite.errors import SwarmliteError
from swarmlite.spec.objects import Node
from swarmlite.store.store import Store

log = logging.getLogger("swarmlite.liveness")

HEARTBEAT_PREFIX = b"/swarmlite/heartbeat/"
DEFAULT_TTL = 3  # seconds; a dead node is marked down about ttl + 1 s after its last beat
CONFIRM_DELAY = 0.5  # seconds a missing heartbeat must stay missing


class Heartbeat(BackgroundLoop):
    """Keeps one node's heartbeat key alive for the lifetime of its session.

    ``stop`` leaves the lease to expire: a reconnect within the TTL causes no alarm.
    """

    def __init__(self, client: aetcd.Client, node_id: str, manager_id: str, ttl: int) -> None:
        super().__init__()
        self.name = f"heartbeat-{node_id[:12]}"
        self._client = client
        self._node_id = node_id
        self._manager_id = manager_id
        self._ttl = ttl
        self._last_beat = time.monotonic()  # start counts: the first beat may take a while

    def silent_for(self) -> float:
        """Seconds since the key was last written or its lease last refreshed."""
        return time.monotonic() - self._last_beat

    async def _run(self) -> None:
        key = HEARTBEAT_PREFIX + self._node_id.encode()
        # Once this session's key has been written, it is written again only where it is
        # missing: a newer session of the node (through another manager, after this one
        # was cut off) holds it under its own lease, and taking it over would tie it to
        # this lease, which expires when this stale session ends: the key would vanish
        # while the newer session lives, and the node be marked down for good.
        written = False
        while True:
            try:
                lease = await self._client.lease(self._ttl)
                if not written:
                    await self._client.put(key, self._manager_id.encode(), lease=lease)
                    written = True
                elif not await self._put_if_missing(key, lease):
                    log.warning(
                        "heartbeat node=%s: another session holds the node's key; leaving it",
                        self._node_id[:12],
                    )
                    await asyncio.sleep(self._ttl / 3)
                    continue
                self._last_beat = time.monotonic()
                await self._keep(lease)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat node=%s failed: %s", self._node_id[:12], exc)
                await asyncio.sleep(self._ttl / 3)

    async def _keep(self, lease: Any) -> None:
        """Refresh ``lease`` until etcd says it expired. A failed refresh is tried again
        on the same lease: while it lives, the key is still this session's."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                reply = await lease.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat node=%s not refreshed: %s", self._node_id[:12], exc)
                continue
            if reply is None or reply.TTL <= 0:
                return
            self._last_beat = time.monotonic()

    async def _put_if_missing(self, key: bytes, lease: Any) -> bool:
        tx = self._client.transactions
        ok, _ = await self._client.transaction(
            compare=[tx.create(key) == 0],
            success=[tx.put(key, self._manager_id.encode(), lease=lease)],
            failure=[],
        )
        return bool(ok)


class NodeMonitor(BackgroundLoop):
    """Leader-only: turns heartbeat keys appearing and expiring into node status."""

    name = "node-monitor"

    def __init__(
        self,
        client: aetcd.Client,
        store: Store,
        *,
        ttl: int = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self._client = client
        self._store = store
        self._ttl = ttl
        self._clock = clock

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node monitor restarting: %s", exc)
                await asyncio.sleep(0.5)

    async def _watch(self) -> None:
        alive = await self._client.get_prefix(HEARTBEAT_PREFIX)
        revision = int(alive.header.revision)
        # A node that is "ready" without a heartbeat (its lease ran out while there was
        # no leader) gets one TTL to show up before it is marked down.
        grace = asyncio.create_task(self._sweep())
        pending: dict[str, asyncio.Task[None]] = {}
        try:
            watch = await self._client.watch_prefix(HEARTBEAT_PREFIX, start_revision=revision + 1)
            async for event in watch:
                node_id = event.kv.key[len(HEARTBEAT_PREFIX) :].decode()
                if event.kind == "DELETE":
                    if node_id not in pending or pending[node_id].done():
                        pending[node_id] = asyncio.create_task(self._confirm_down(node_id))
                else:
                    await self.set_state(node_id, "ready", "heartbeat")
        finally:
            grace.cancel()
            for task in pending.values():
                task.cancel()

    async def _confirm_down(self, node_id: str) -> None:
        # A node whose daemon restarted puts a fresh heartbeat right after (or just
        # before) its old lease runs out: only a key still missing is a dead node.
        await asyncio.sleep(CONFIRM_DELAY)
        if await self._client.get(HEARTBEAT_PREFIX + node_id.encode()) is None:
            await self.set_state(node_id, "down", "heartbeat failure")

    async def _sweep(self) -> None:
        """Level-triggered, every TTL: node states are brought in line with the heartbeat
        keys, so a missed watch event, a failed write or a session that registered its
        node but died before its first beat heals within two passes."""
        missing: set[str] | None = None
        while True:
            await asyncio.sleep(self._ttl + CONFIRM_DELAY)
            try:
                # Nodes first: a node marked down after this read is not made ready
                # again on the strength of an older heartbeat read.
                nodes = [v.value for v in await self._store.all(Node)]
                alive = await self._client.get_prefix(HEARTBEAT_PREFIX)
                beating = {kv.key[len(HEARTBEAT_PREFIX) :].decode() for kv in alive}
                changes, missing = sweep_decisions(nodes, beating, missing)
                for node_id, state in changes:
                    if state == "ready":
                        await self.set_state(node_id, state, "heartbeat")
                    elif await self._client.get(HEARTBEAT_PREFIX + node_id.encode()) is None:
                        # Still missing now: its session did not just come back.
                        await self.set_state(node_id, state, "heartbeat failure")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("node sweep failed (next in %ss): %s", self._ttl, exc)

    async def set_state(self, node_id: str, state: str, message: str) -> None:
        def change(node: Node) -> Node | None:
            if node.status.state == state:
                return None
            # The agent's engine report stays: only its own session replaces it.
            status = msgspec.structs.replace(
                node.status, state=state, message=message, changed_at=self._clock()
            )
            return msgspec.structs.replace(node, status=status)

        try:
            written = await self._store.modify(Node, node_id, change)
        except SwarmliteError as exc:
            log.warning("could not mark node=%s %s: %s", node_id[:12], state, exc)
            return
        if written is not None:
            log.log(
                logging.WARNING if state == "down" else logging.INFO,
                "node=%s hostname=%s is %s (%s)",
                node_id[:12],
                written.value.hostname,
                state,
                message,
            )


def sweep_decisions(
    nodes: Iterable[Node], beating: set[str], missing: set[str] | None
) -> tuple[list[tuple[str, str]], set[str]]:
    """One sweep: ``(node id, new state)`` changes, and the ready nodes without a
    heartbeat now, for the next sweep.

    A ready node is marked down only when its heartbeat was missing in the sweep before
    too (a session registers its node just before its first beat); ``missing`` None,
    the first sweep after this manager became leader, counts every node as missing
    before: a whole TTL has passed. A down node with a heartbeat is ready again.
    """
    changes: list[tuple[str, str]] = []
    now_missing: set[str] = set()
    for node in nodes:
        if node.status.state == "ready" and node.id not in beating:
            if missing is None or node.id in missing:
                changes.append((node.id, "down"))
            else:
                now_missing.add(node.id)
        elif node.status.state == "down" and node.id in beating:
            changes.append((node.id, "ready"))
    return changes, now_missing
