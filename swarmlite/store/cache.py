"""An in-memory mirror of the store, fed by one etcd watch.

Readers take ``view()``: an immutable ``ClusterState`` of the last applied revision.
Loops wait on ``wait_changed`` and re-read the whole view (level-triggered), so a
missed or coalesced event can never leave them behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from swarmlite.errors import StoreUnavailableError
from swarmlite.spec.objects import (
    Cluster,
    Config,
    Network,
    Node,
    Secret,
    Service,
    Task,
    Volume,
    node_lost,
)
from swarmlite.store.store import KIND_NAMES, Change, Store, Versioned

log = logging.getLogger("swarmlite.store")


def _empty() -> Mapping[str, Versioned[Any]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class ClusterState:
    """One consistent read of every object, keyed by kind then id."""

    revision: int = 0
    clusters: Mapping[str, Versioned[Cluster]] = field(default_factory=_empty)
    nodes: Mapping[str, Versioned[Node]] = field(default_factory=_empty)
    networks: Mapping[str, Versioned[Network]] = field(default_factory=_empty)
    volumes: Mapping[str, Versioned[Volume]] = field(default_factory=_empty)
    services: Mapping[str, Versioned[Service]] = field(default_factory=_empty)
    tasks: Mapping[str, Versioned[Task]] = field(default_factory=_empty)
    secrets: Mapping[str, Versioned[Secret]] = field(default_factory=_empty)
    configs: Mapping[str, Versioned[Config]] = field(default_factory=_empty)

    def tasks_of(self, service_id: str) -> list[Task]:
        return [v.value for v in self.tasks.values() if v.value.service_id == service_id]

    def on_lost_node(self, task: Task) -> bool:
        """``task`` was placed on a node now down or removed (``node_lost``): its
        reported status is stale. A task on no node yet is on no lost node."""
        if not task.node_id:
            return False
        entry = self.nodes.get(task.node_id)
        return node_lost(entry.value if entry is not None else None)

    @property
    def cluster_entry(self) -> Versioned[Cluster] | None:
        """The cluster object with its revision, for a compare-and-swap on it."""
        return next(iter(self.clusters.values()), None)

    @property
    def cluster(self) -> Cluster | None:
        entry = self.cluster_entry
        return entry.value if entry is not None else None


_FIELD_OF = {kind: name if name != "cluster" else "clusters" for kind, name in KIND_NAMES.items()}


class StateCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._state = ClusterState()
        self._version = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        # Changes at or below this revision are in the view already (a ``sync`` read):
        # the watch delivering them late must not bring back what was since deleted.
        self._floor = 0
        self.ready = asyncio.Event()
        self.connected = False

    def view(self) -> ClusterState:
        return self._state

    @property
    def version(self) -> int:
        return self._version

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="state-cache")
        await self.ready.wait()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def caught_up(self, revision: int, timeout: float = 5.0) -> bool:
        """Wait until the view includes the store's ``revision`` (a write of our own)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._state.revision < revision:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await self.wait_changed(self._version, timeout=left)
        return True

    async def sync(self) -> None:
        """Return once the view holds every write committed before the call.

        A new leader's first decisions must not rest on a view that lacks the old
        leader's last writes (a task it made would be made twice). The watch carries no
        news of writes outside the prefix (the election itself), so ``caught_up`` cannot
        tell; a fresh read of the prefix can. Raises ``StoreUnavailableError``.
        """
        objects, revision = await self._store.snapshot()
        if self._state.revision >= revision:
            return  # the watch got there first: it delivers in order, so nothing is missing
        self._floor = revision
        await self._publish(_build(objects, revision))

    async def wait_changed(self, seen: int, timeout: float | None = None) -> int:
        """Return once the view is newer than version ``seen`` (or on timeout)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._version != seen), timeout
                )
            return self._version

    async def _publish(self, state: ClusterState) -> None:
        self._state = state
        async with self._changed:
            self._version += 1
            self._changed.notify_all()

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                objects, revision = await self._store.snapshot()
                self._floor = revision
                await self._publish(_build(objects, revision))
                self.connected = True
                self.ready.set()
                backoff = 0.2
                await self._follow(revision + 1)
            except StoreUnavailableError as exc:
                if self.connected:
                    log.error("store watch lost: %s; retrying", exc)
                self.connected = False
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store watch failed; re-reading the store")
                self.connected = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 3.0)

    async def _follow(self, start: int) -> None:
        queue: asyncio.Queue[Change | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for change in self._store.watch(start):
                    queue.put_nowait(change)
            finally:
                queue.put_nowait(None)

        pumper = asyncio.create_task(pump())
        try:
            ended = False
            while not ended:
                first = await queue.get()
                if first is None:
                    break
                batch = [first]
                # Coalesce everything already delivered into one published view.
                while not queue.empty():
                    item = queue.get_nowait()
                    if item is None:
                        ended = True
                        break
                    batch.append(item)
                await self._publish(_apply(self._state, batch, self._floor))
        finally:
            pumper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumper
        if not pumper.cancelled() and (exc := pumper.exception()) is not None:
            raise exc
        raise StoreUnavailableError("store watch ended")


def _build(objects: list[Versioned[Any]], revision: int) -> ClusterState:
    buckets: dict[str, dict[str, Versioned[Any]]] = {f: {} for f in _FIELD_OF.values()}
    for v in objects:
        buckets[_FIELD_OF[type(v.value)]][v.value.id] = v
    return ClusterState(revision=revision, **{k: MappingProxyType(b) for k, b in buckets.items()})


def _apply(state: ClusterState, batch: list[Change], floor: int = 0) -> ClusterState:
    """``state`` with ``batch`` applied; changes at or below ``floor`` are already in it."""
    touched: dict[str, dict[str, Versioned[Any]]] = {}
    revision = state.revision
    for change in batch:
        if change.revision <= floor:
            continue
        name = _FIELD_OF[change.kind]
        if name not in touched:
            touched[name] = dict(getattr(state, name))
        if change.value is None:
            touched[name].pop(change.id, None)
        else:
            touched[name][change.id] = Versioned(change.value, change.revision)
        revision = max(revision, change.revision)
    fields: dict[str, Any] = {k: MappingProxyType(v) for k, v in touched.items()}
    return ClusterState(
        revision=revision,
        **{f: fields.get(f, getattr(state, f)) for f in _FIELD_OF.values()},
    )
