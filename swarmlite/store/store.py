"""Typed cluster state on etcd: frozen objects as JSON, every write a compare-and-swap.

Keys are ``/swarmlite/v1/<kind>/<id>``. A read returns ``Versioned(value, revision)``
where ``revision`` is the key's etcd mod_revision; ``update`` and ``delete`` succeed only
if the key still has that revision, otherwise ``ConflictError`` and the caller re-reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import aetcd
import aetcd.exceptions
import msgspec

from swarmlite.errors import ConflictError, NotFoundError, StoreUnavailableError, TooLargeError
from swarmlite.limits import ETCD_MAX_REQUEST_BYTES, write_too_large
from swarmlite.spec.objects import Cluster, Config, Network, Node, Secret, Service, Task, Volume

log = logging.getLogger("swarmlite.store")

PREFIX = b"/swarmlite/v1/"
HEALTH_KEY = b"/swarmlite/health"

StoredObject = Cluster | Node | Network | Volume | Service | Task | Secret | Config
T = TypeVar("T", Cluster, Node, Network, Volume, Service, Task, Secret, Config)

KIND_NAMES: dict[type[Any], str] = {
    Cluster: "cluster",
    Node: "nodes",
    Network: "networks",
    Volume: "volumes",
    Service: "services",
    Task: "tasks",
    Secret: "secrets",
    Config: "configs",
}
KINDS_BY_NAME: dict[str, type[Any]] = {v: k for k, v in KIND_NAMES.items()}
_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {
    k: msgspec.json.Decoder(k) for k in KIND_NAMES
}
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    value: T
    revision: int


@dataclass(frozen=True, slots=True)
class Change:
    kind: type[Any]
    id: str
    value: StoredObject | None  # None: deleted
    revision: int


def key_of(kind: type[Any], obj_id: str) -> bytes:
    return PREFIX + KIND_NAMES[kind].encode() + b"/" + obj_id.encode()


def parse_key(key: bytes) -> tuple[type[Any], str] | None:
    if not key.startswith(PREFIX):
        return None
    kind_name, _, obj_id = key[len(PREFIX) :].decode().partition("/")
    kind = KINDS_BY_NAME.get(kind_name)
    return (kind, obj_id) if kind else None


def decode(kind: type[T], raw: bytes) -> T:
    return cast(T, _DECODERS[kind].decode(raw))


def _id_of(obj: StoredObject) -> str:
    return obj.id


@dataclass(frozen=True, slots=True)
class Put:
    """One compare-and-swap write inside a batch; ``expect`` 0 means "must not exist"."""

    obj: StoredObject
    expect: int


@dataclass(frozen=True, slots=True)
class Delete:
    kind: type[Any]
    id: str
    expect: int


Fence = tuple[bytes, int]

# How long a quorum answer vouches for the store: etcd's election timeout here, within
# which a leader cut off from its quorum steps down.
QUORUM_FRESH_S = 0.5


class QuorumCheck:
    """When etcd last proved it has a quorum (a quorum read or a commit), and the one
    quorum read in flight: concurrent checks share it instead of each paying a round trip
    to the leader."""

    def __init__(self) -> None:
        self.confirmed_at = -QUORUM_FRESH_S
        self.inflight: asyncio.Future[None] | None = None

    def confirm(self) -> None:
        self.confirmed_at = time.monotonic()

    def fresh(self) -> bool:
        return time.monotonic() - self.confirmed_at < QUORUM_FRESH_S


class Store:
    """``fence``, when given, guards every write: it returns (key, create_revision) that
    must still hold (the leader key this manager created), or None when it must not
    write at all. A deposed leader's writes then fail even before it notices."""

    def __init__(
        self,
        client: aetcd.Client,
        *,
        fence: Callable[[], Fence | None] | None = None,
        quorum: QuorumCheck | None = None,
        max_write_bytes: int = ETCD_MAX_REQUEST_BYTES,
    ) -> None:
        self.client = client
        self._fence = fence
        self._quorum = quorum or QuorumCheck()
        # etcd's --max-request-bytes: a larger transaction is refused here, not sent.
        self.max_write_bytes = max_write_bytes

    def fenced(self, fence: Callable[[], Fence | None]) -> Store:
        return Store(
            self.client, fence=fence, quorum=self._quorum, max_write_bytes=self.max_write_bytes
        )

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except (ConflictError, NotFoundError):
            raise
        except aetcd.exceptions.ClientError as exc:
            if _too_large(exc):
                raise TooLargeError(write_too_large(None)) from exc  # the flag etcd runs with
            raise StoreUnavailableError(_describe(exc)) from exc

    async def get(self, kind: type[T], obj_id: str) -> Versioned[T] | None:
        async with self._guard():
            got = await self.client.get(key_of(kind, obj_id))
        if got is None:
            return None
        return Versioned(decode(kind, got.value), got.mod_revision)

    async def check(self, timeout: float = 2.0) -> None:
        """Raise ``StoreUnavailableError`` unless etcd answers a quorum read in ``timeout``,
        or proved its quorum within the last ``QUORUM_FRESH_S``."""
        if self._quorum.fresh():
            return
        shared = self._quorum.inflight
        if shared is None:
            shared = asyncio.ensure_future(self._quorum_read(timeout))
            self._quorum.inflight = shared
            shared.add_done_callback(self._quorum_read_done)
        await asyncio.shield(shared)

    def _quorum_read_done(self, done: asyncio.Future[None]) -> None:
        if self._quorum.inflight is done:
            self._quorum.inflight = None
        if not done.cancelled():
            done.exception()  # retrieved: a check nobody awaits any more logs nothing

    async def _quorum_read(self, timeout: float) -> None:
        try:
            async with self._guard():
                await asyncio.wait_for(self.client.get(HEALTH_KEY), timeout)
        except TimeoutError:
            raise StoreUnavailableError(await self._why_unavailable(timeout)) from None
        self._quorum.confirm()

    async def _why_unavailable(self, timeout: float) -> str:
        # A member that answers its own status but not a quorum read has lost the others.
        try:
            status = await asyncio.wait_for(self.client.status(), 1.0)
        except Exception:
            return f"cluster store unavailable: etcd did not answer within {timeout:g} s"
        if not getattr(status, "leader", None):
            return (
                "cluster store unavailable: no quorum: this manager's etcd is up but cannot "
                "reach a majority of managers; restart or reconnect the missing managers"
            )
        return f"cluster store unavailable: etcd did not answer within {timeout:g} s"

    async def must_get(self, kind: type[T], obj_id: str) -> Versioned[T]:
        got = await self.get(kind, obj_id)
        if got is None:
            raise NotFoundError(f"{KIND_NAMES[kind].rstrip('s')} {obj_id} not found")
        return got

    async def all(self, kind: type[T]) -> list[Versioned[T]]:
        async with self._guard():
            rng = await self.client.get_prefix(PREFIX + KIND_NAMES[kind].encode() + b"/")
        return [Versioned(decode(kind, kv.value), kv.mod_revision) for kv in rng]

    async def snapshot(self) -> tuple[list[Versioned[Any]], int]:
        """Every object under the prefix and the store revision they were read at."""
        async with self._guard():
            rng = await self.client.get_prefix(PREFIX)
        revision = int(rng.header.revision)
        out: list[Versioned[Any]] = []
        for kv in rng:
            parsed = parse_key(kv.key)
            if parsed:
                out.append(Versioned(decode(parsed[0], kv.value), kv.mod_revision))
        return out, revision

    async def create(self, obj: T) -> Versioned[T]:
        revision = await self.commit([Put(obj, 0)])
        return Versioned(obj, revision)

    async def update(self, old: Versioned[T], new: T) -> Versioned[T]:
        revision = await self.commit([Put(new, old.revision)])
        return Versioned(new, revision)

    async def modify(
        self, kind: type[T], obj_id: str, change: Callable[[T], T | None], attempts: int = 5
    ) -> Versioned[T] | None:
        """Write ``change`` of the stored object, compare-and-swap, re-reading and trying
        again on a conflict. None when the object is absent or ``change`` returns None
        (nothing to write); ConflictError after ``attempts`` conflicts."""
        for _ in range(attempts):
            current = await self.get(kind, obj_id)
            if current is None:
                return None
            new = change(current.value)
            if new is None:
                return None
            try:
                return await self.update(current, new)
            except ConflictError:
                continue
        raise ConflictError(f"{kind.__name__.lower()} {obj_id}: too many concurrent changes")

    async def delete(self, kind: type[Any], obj_id: str, expect: int) -> None:
        await self.commit([Delete(kind, obj_id, expect)])

    async def commit(self, ops: Sequence[Put | Delete]) -> int:
        """Apply all writes atomically if every revision still matches; returns the revision."""
        tx = self.client.transactions
        compare: list[Any] = []
        success: list[Any] = []
        size = 0  # keys (twice: compare and write) and values; etcd adds a little framing
        for op in ops:
            if isinstance(op, Put):
                key = key_of(type(op.obj), _id_of(op.obj))
                value = _ENCODER.encode(op.obj)
                compare.append(tx.mod(key) == op.expect)
                success.append(tx.put(key, value))
                size += 2 * len(key) + len(value)
            else:
                key = key_of(op.kind, op.id)
                compare.append(tx.mod(key) == op.expect)
                success.append(tx.delete(key))
                size += 2 * len(key)
        if not ops:
            return 0
        if size > self.max_write_bytes:
            raise TooLargeError(write_too_large(size, self.max_write_bytes))
        if self._fence is not None:
            fence = self._fence()
            if fence is None:
                raise ConflictError("this manager is not the leader: write refused")
            compare.append(tx.create(fence[0]) == fence[1])
        async with self._guard():
            ok, responses = await self.client.transaction(
                compare=compare, success=success, failure=[]
            )
        self._quorum.confirm()  # answered, so committed or compared on a quorum
        if not ok:
            raise ConflictError("the object changed since it was read; re-read and retry")
        return _txn_revision(responses)

    async def watch(self, start_revision: int) -> AsyncIterator[Change]:
        """Changes under the prefix from ``start_revision`` (inclusive), in order."""
        async with self._guard():
            watch = await self.client.watch_prefix(PREFIX, start_revision=start_revision)
            try:
                async for event in watch:
                    parsed = parse_key(event.kv.key)
                    if parsed is None:
                        continue
                    kind, obj_id = parsed
                    value = None if event.kind == "DELETE" else decode(kind, event.kv.value)
                    yield Change(kind, obj_id, value, event.kv.mod_revision)
            finally:
                with contextlib.suppress(Exception):
                    await watch.cancel()


def _txn_revision(responses: list[Any]) -> int:
    for resp in responses:
        inner = getattr(resp, resp.WhichOneof("response"), None)
        header = getattr(inner, "header", None)
        if header is not None:
            return int(header.revision)
    return 0


def _too_large(exc: Exception) -> bool:
    """etcd's own refusal, or its gRPC server's (over the limit + 512 KiB)."""
    text = str(exc)
    return "request is too large" in text or "received message larger than max" in text


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    low = text.lower()
    if "no leader" in low or "timeout" in low or "timed out" in low or "deadline" in low:
        return "cluster store unavailable: no quorum (etcd has no leader or does not answer)"
    return f"cluster store unavailable: {text.splitlines()[0][:200]}"


async def commit_chunked(store: Store, ops: Sequence[Put | Delete], size: int = 100) -> int:
    """Commit independent writes in chunks (etcd limits ops per txn).

    Returns the store revision of the last successful write (0: none), so the caller
    can wait until its view includes its own writes before deciding again."""
    revision = 0
    for i in range(0, len(ops), size):
        try:
            revision = max(revision, await store.commit(ops[i : i + size]))
        except (ConflictError, TooLargeError):
            # Level-triggered callers re-read and redo; one-by-one keeps the others,
            # and writes too large for one etcd request together go one at a time.
            for op in ops[i : i + size]:
                with contextlib.suppress(ConflictError):
                    revision = max(revision, await store.commit([op]))
    return revision
