"""``StateCache.sync``: a new leader's view holds every write made before its election,
however far behind the watch is, and the late watch never brings back what is gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from swarmlite.spec.objects import Volume
from swarmlite.store.cache import StateCache
from swarmlite.store.store import Change, Store, Versioned


class LaggingStore(Store):
    """Reads answer at once; the watch delivers only what the test releases."""

    def __init__(self) -> None:
        self.objects: list[Versioned[Any]] = []
        self.revision = 10
        self.released: asyncio.Queue[Change] = asyncio.Queue()

    async def snapshot(self) -> tuple[list[Versioned[Any]], int]:
        return list(self.objects), self.revision

    async def watch(self, start_revision: int) -> AsyncIterator[Change]:
        while True:
            yield await self.released.get()


def vol(name: str) -> Volume:
    return Volume(id=name, name=f"st_{name}", stack="st")


async def settle(cache: StateCache) -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.fixture
async def lagging() -> AsyncIterator[tuple[LaggingStore, StateCache]]:
    """A started cache over a ``LaggingStore``, stopped after the test."""
    store = LaggingStore()
    cache = StateCache(store)
    await cache.start()
    try:
        yield store, cache
    finally:
        await cache.stop()


async def test_sync_reads_what_the_watch_has_not_delivered(
    lagging: tuple[LaggingStore, StateCache],
) -> None:
    store, cache = lagging
    # The old leader made "kept" and made then deleted "gone"; the watch lags.
    kept = vol("kept")
    store.objects = [Versioned(kept, 11)]
    store.revision = 12
    assert cache.view().volumes == {}

    await cache.sync()

    assert set(cache.view().volumes) == {"kept"}
    assert cache.view().revision == 12
    assert await cache.caught_up(12, timeout=0.1)


async def test_the_late_watch_does_not_bring_back_a_deleted_object(
    lagging: tuple[LaggingStore, StateCache],
) -> None:
    store, cache = lagging
    kept, gone, later = vol("kept"), vol("gone"), vol("later")
    store.objects = [Versioned(kept, 11)]
    store.revision = 12
    await cache.sync()

    # Now the watch catches up: the puts at 11 (one of them deleted at 12, which
    # the snapshot already reflects), then the delete, then a new write at 13.
    store.released.put_nowait(Change(Volume, "gone", gone, 11))
    store.released.put_nowait(Change(Volume, "kept", kept, 11))
    await settle(cache)
    assert set(cache.view().volumes) == {"kept"}
    assert cache.view().volumes["kept"].revision == 11
    store.released.put_nowait(Change(Volume, "gone", None, 12))
    await settle(cache)
    assert set(cache.view().volumes) == {"kept"}
    assert cache.view().revision == 12

    store.released.put_nowait(Change(Volume, "later", later, 13))
    await settle(cache)
    assert set(cache.view().volumes) == {"kept", "later"}
    assert cache.view().revision == 13


async def test_sync_keeps_a_view_the_watch_already_took_further(
    lagging: tuple[LaggingStore, StateCache],
) -> None:
    store, cache = lagging
    newer = vol("newer")
    store.released.put_nowait(Change(Volume, "newer", newer, 15))
    await settle(cache)
    store.objects, store.revision = [], 14  # a read that lagged behind the watch

    await cache.sync()

    assert set(cache.view().volumes) == {"newer"}
    assert cache.view().revision == 15
