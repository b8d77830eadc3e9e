"""Store.check: one quorum read serves concurrent callers, and a recent answer vouches."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aetcd
import pytest

from swarmlite.errors import StoreUnavailableError
from swarmlite.store.store import QUORUM_FRESH_S, QuorumCheck, Store


class SlowEtcd:
    """Answers each quorum read after ``delay``, or never while ``cut_off``."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.cut_off = False
        self.reads = 0

    async def get(self, key: bytes) -> None:
        self.reads += 1
        await asyncio.sleep(3600 if self.cut_off else self.delay)

    async def status(self) -> Any:
        return type("Status", (), {"leader": 0})()


def store(etcd: SlowEtcd) -> tuple[Store, QuorumCheck]:
    quorum = QuorumCheck()
    return Store(cast(aetcd.Client, etcd), quorum=quorum), quorum


async def test_concurrent_checks_share_one_quorum_read() -> None:
    etcd = SlowEtcd()
    s, _ = store(etcd)
    await asyncio.gather(*(s.check() for _ in range(10)))
    assert etcd.reads == 1
    await s.check()  # answered just now: vouches without another round trip
    assert etcd.reads == 1


async def test_an_old_answer_is_asked_again() -> None:
    etcd = SlowEtcd()
    s, quorum = store(etcd)
    await s.check()
    quorum.confirmed_at -= QUORUM_FRESH_S
    await s.check()
    assert etcd.reads == 2


async def test_a_lost_quorum_fails_every_waiter_and_vouches_for_nothing() -> None:
    etcd = SlowEtcd()
    s, quorum = store(etcd)
    etcd.cut_off = True
    got = await asyncio.gather(*(s.check(timeout=0.1) for _ in range(3)), return_exceptions=True)
    assert etcd.reads == 1
    for exc in got:
        assert isinstance(exc, StoreUnavailableError)
        assert "no quorum" in str(exc)
    assert not quorum.fresh()
    etcd.cut_off = False
    await s.check()
    assert etcd.reads == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_read() -> None:
    etcd = SlowEtcd(delay=0.1)
    s, quorum = store(etcd)
    first = asyncio.ensure_future(s.check())
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(s.check())
    await asyncio.sleep(0.01)
    first.cancel()
    await second
    assert etcd.reads == 1 and quorum.fresh()
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_fenced_copies_share_what_the_store_knows() -> None:
    etcd = SlowEtcd()
    s, _ = store(etcd)
    await s.check()
    await s.fenced(lambda: None).check()
    assert etcd.reads == 1
