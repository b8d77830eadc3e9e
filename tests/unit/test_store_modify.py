"""Store.modify's read, change, compare-and-swap and retry, over an in-memory store
that keeps etcd's one rule here: a write names the revision it read, or it conflicts."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from swarmlite.errors import ConflictError
from swarmlite.spec.objects import Volume
from swarmlite.store.store import Store, Versioned


class MemoryStore(Store):
    def __init__(self) -> None:
        self.objects: dict[str, Versioned[Any]] = {}
        self.revision = 0
        self.writes = 0

    def put(self, vol: Volume) -> None:
        """Another writer's write, between our read and our write."""
        self.revision += 1
        self.objects[vol.id] = Versioned(vol, self.revision)

    async def get(self, kind: type[Any], obj_id: str) -> Versioned[Any] | None:
        return self.objects.get(obj_id)

    async def update(self, old: Versioned[Any], new: Any) -> Versioned[Any]:
        if self.objects[new.id].revision != old.revision:
            raise ConflictError(f"{new.id} changed since revision {old.revision}")
        self.writes += 1
        self.put(new)
        return self.objects[new.id]


VOL = Volume(id="v1", name="t_v1", stack="t")


async def test_absent_or_unchanged_writes_nothing() -> None:
    store = MemoryStore()
    assert await store.modify(Volume, "v1", lambda v: v) is None
    store.put(VOL)
    assert await store.modify(Volume, "v1", lambda v: None) is None
    assert store.writes == 0


async def test_a_conflict_is_retried_on_a_fresh_read() -> None:
    store = MemoryStore()
    store.put(VOL)
    seen: list[str] = []

    def label(vol: Volume) -> Volume:
        seen.append(vol.node_id)
        if len(seen) == 1:
            store.put(msgspec.structs.replace(vol, node_id="n1"))  # gets in first
        return msgspec.structs.replace(vol, labels={"seen": vol.node_id})

    written = await store.modify(Volume, "v1", label)
    assert seen == ["", "n1"]
    assert written is not None
    assert written.value.node_id == "n1" and written.value.labels == {"seen": "n1"}
    assert store.writes == 1


async def test_conflicts_past_the_attempts_raise() -> None:
    store = MemoryStore()
    store.put(VOL)

    def always_raced(vol: Volume) -> Volume:
        store.put(msgspec.structs.replace(vol, driver=vol.driver + "x"))
        return vol

    with pytest.raises(ConflictError, match="volume v1: too many concurrent changes"):
        await store.modify(Volume, "v1", always_raced, attempts=3)
    assert store.objects["v1"].value.driver == "localxxx"
