"""A session's heartbeat knows how long it has gone unwritten (a small fake etcd)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from swarmlite.manager.liveness import Heartbeat


@dataclass
class Refreshed:
    TTL: int


class FakeLease:
    def __init__(self, etcd: FakeEtcd, ttl: int) -> None:
        self._etcd, self._ttl = etcd, ttl

    async def refresh(self) -> Refreshed:
        self._etcd.answer()
        return Refreshed(self._ttl)


class FakeEtcd:
    """Leases and puts; while ``reachable`` is False every call fails, as they do on a
    manager cut off from the other members."""

    def __init__(self) -> None:
        self.reachable = True
        self.puts = 0

    def answer(self) -> None:
        if not self.reachable:
            raise ConnectionError("etcd unreachable")

    async def lease(self, ttl: int) -> FakeLease:
        self.answer()
        return FakeLease(self, ttl)

    async def put(self, key: bytes, value: bytes, *, lease: FakeLease) -> None:
        self.answer()
        self.puts += 1


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
