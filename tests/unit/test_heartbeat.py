"""A session's heartbeat knows how long it has gone unwritten (a small fake etcd)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from swarmlite.manager.liveness import Heartbeat


@dataclass
class Refreshed:
    TTL: int


class FakeLease:
    def __init__(self, etcd: FakeEtcd, ttl: int) -> None:
        self._etcd, self._ttl = etcd, ttl
        self.deadline = time.monotonic() + ttl

    @property
    def alive(self) -> bool:
        return time.monotonic() < self.deadline

    async def refresh(self) -> Refreshed:
        self._etcd.answer()
        if not self.alive:
            return Refreshed(0)  # etcd's answer for a lease that has expired
        self.deadline = time.monotonic() + self._ttl
        return Refreshed(self._ttl)


class Keys:
    """The key space several managers' clients share: key -> (value, lease); a key
    goes when its lease expires."""

    def __init__(self) -> None:
        self.held: dict[bytes, tuple[bytes, FakeLease]] = {}

    def live(self) -> dict[bytes, bytes]:
        self.held = {k: v for k, v in self.held.items() if v[1].alive}
        return {k: v[0] for k, v in self.held.items()}


class Transactions:
    def create(self, key: bytes) -> Create:
        return Create(key)

    def put(self, key: bytes, value: bytes, *, lease: FakeLease) -> tuple[bytes, bytes, FakeLease]:
        return (key, value, lease)


@dataclass
class Create:
    key: bytes

    def __eq__(self, revision: object) -> Any:
        return ("missing", self.key) if revision == 0 else NotImplemented


class FakeEtcd:
    """One manager's client: leases, puts and put-if-missing transactions; while
    ``reachable`` is False every call fails, as they do on a manager cut off from the
    other members."""

    def __init__(self, keys: Keys | None = None) -> None:
        self.reachable = True
        self.puts = 0
        self.keys = keys or Keys()
        self.transactions = Transactions()

    def answer(self) -> None:
        if not self.reachable:
            raise ConnectionError("etcd unreachable")

    async def lease(self, ttl: int) -> FakeLease:
        self.answer()
        return FakeLease(self, ttl)

    async def put(self, key: bytes, value: bytes, *, lease: FakeLease) -> None:
        self.answer()
        self.puts += 1
        self.keys.held[key] = (value, lease)

    async def transaction(
        self, *, compare: list[Any], success: list[Any], failure: list[Any]
    ) -> tuple[bool, list[Any]]:
        self.answer()
        live = self.keys.live()
        if any(key in live for _, key in compare):
            return False, []
        for key, value, lease in success:
            await self.put(key, value, lease=lease)
        return True, []


async def test_silent_for_grows_only_while_the_key_cannot_be_kept() -> None:
    etcd = FakeEtcd()
    beat = Heartbeat(etcd, "node1", "manager1", ttl=1)  # type: ignore[arg-type]
    await beat.start()
    try:
        await asyncio.sleep(1.2)
        assert etcd.puts == 1 and beat.silent_for() < 0.5
        etcd.reachable = False
        await asyncio.sleep(1.5)
        assert beat.silent_for() > 1.0  # the dispatcher closes such a session
        etcd.reachable = True
        await asyncio.sleep(0.8)
        assert etcd.puts == 2 and beat.silent_for() < 0.5
    finally:
        await beat.stop()


async def test_a_stale_session_does_not_take_the_key_from_the_nodes_newer_session() -> None:
    # The node's session on m1 is cut off from etcd; the agent moves to m2, whose
    # session writes the key under its own lease. m1's heartbeat then gets through
    # again before its session closes: the key stays m2's, so when m1's lease runs out
    # after that session ends, the node's key is still there.
    keys = Keys()
    cut_off, serving = FakeEtcd(keys), FakeEtcd(keys)
    stale = Heartbeat(cut_off, "node1", "m1", ttl=1)
    newer = Heartbeat(serving, "node1", "m2", ttl=1)
    await stale.start()
    try:
        await asyncio.sleep(0.1)
        cut_off.reachable = False
        await newer.start()
        await asyncio.sleep(1.5)  # m1's lease expires meanwhile
        assert keys.live() == {b"/swarmlite/heartbeat/node1": b"m2"}
        cut_off.reachable = True
        await asyncio.sleep(0.8)
        await stale.stop()  # the stale session ends; its lease is left to expire
        await asyncio.sleep(1.3)
        assert keys.live() == {b"/swarmlite/heartbeat/node1": b"m2"}
        assert newer.silent_for() < 0.5
    finally:
        await stale.stop()
        await newer.stop()
