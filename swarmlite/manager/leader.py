"""Leader election on an etcd lease, with a fence for the leader's writes.

The leader holds ``/swarmlite/leader`` (value: its node id) under a short lease and
keeps the lease alive. Every write of a leader-only loop carries the compare
"leader key's create_revision is still mine" (``fence()``), so a deposed leader
whose lease expired cannot write even before it notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aetcd
import aetcd.exceptions

from swarmlite.errors import SwarmliteError

log = logging.getLogger("swarmlite.leader")

LEADER_KEY = b"/swarmlite/leader"

Fence = tuple[bytes, int]


class LeaderElection:
    def __init__(
        self,
        client: aetcd.Client,
        node_id: str,
        *,
        ttl: int = 1,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self.node_id = node_id
        self._ttl = ttl
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._fence: Fence | None = None
        self._task: asyncio.Task[None] | None = None
        self.leader_id = ""
        self.changed = asyncio.Event()

    @property
    def is_leader(self) -> bool:
        return self._fence is not None

    def fence(self) -> Fence | None:
        return self._fence

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._step_down("stopping")

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._campaign()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("election round failed: %s", exc)
                await self._step_down(f"store error: {exc}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _campaign(self) -> None:
        lease = await self._client.lease(self._ttl)
        tx = self._client.transactions
        ok, _ = await self._client.transaction(
            compare=[tx.create(LEADER_KEY) == 0],
            success=[tx.put(LEADER_KEY, self.node_id.encode(), lease=lease)],
            failure=[],
        )
        if not ok:
            await self._client.revoke_lease(lease.id)
            await self._follow()
            return
        got = await self._client.get(LEADER_KEY)
        if got is None or got.value != self.node_id.encode():
            return
        self._fence = (LEADER_KEY, int(got.create_revision))
        self._set_leader(self.node_id)
        log.info("elected leader node=%s fence=%d", self.node_id[:12], self._fence[1])
        await self._on_elected()
        try:
            await self._keep_alive(lease)
        finally:
            await self._step_down("lease lost")

    async def _keep_alive(self, lease: Any) -> None:
        # One slow refresh on a busy host is not a lost lease: give up only when a
        # whole TTL has passed without a good one (writes stay fenced meanwhile).
        interval = self._ttl / 3
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                reply = await asyncio.wait_for(lease.refresh(), timeout=self._ttl / 2)
            except (TimeoutError, aetcd.exceptions.ClientError) as exc:
                if time.monotonic() - last_ok >= self._ttl:
                    raise SwarmliteError(f"leader lease not refreshed: {exc}") from None
                continue
            if reply is None or reply.TTL <= 0:
                return  # expired: someone else may already lead
            last_ok = time.monotonic()

    async def _follow(self) -> None:
        """Wait, as a follower, until the leader key is gone."""
        got = await self._client.get(LEADER_KEY)
        if got is None:
            return
        self._set_leader(got.value.decode())
        # From the read's revision, not the key's: the key may have been written long
        # ago, and once compaction passes that revision a watch from it fails at once.
        async for event in await self._client.watch(
            LEADER_KEY, start_revision=got.header.revision + 1
        ):
            if event.kind == "DELETE":
                self._set_leader("")
                return
            self._set_leader(event.kv.value.decode())

    def _set_leader(self, node_id: str) -> None:
        if node_id != self.leader_id:
            self.leader_id = node_id
            self.changed.set()
            self.changed = asyncio.Event()

    async def _step_down(self, why: str) -> None:
        if self._fence is None:
            return
        self._fence = None
        self._set_leader("")
        log.warning("stepped down as leader node=%s: %s", self.node_id[:12], why)
        await self._on_deposed()
