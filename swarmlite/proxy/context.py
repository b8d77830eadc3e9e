"""What every proxied connection shares: how to dial a target, and the live-connection set.

``ProxyContext.address`` turns a picked ``Target`` into the address to connect to: a
backend on this node is dialed at its container address; one on another node at the
host port its node published for it (``Target.remote``). A target with neither is
unreachable from here: ``connect_any`` skips it without dialing.

It also counts what is in flight to each backend (by task id): a TCP connection from
its dial until it closes, an HTTP request from its dial (or pooled send) until its
response ended. ``drained(task_id, timeout)`` waits for that count to reach zero; the
agent awaits it, after the task left the routes, before it stops the container.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from functools import partial
from typing import Protocol, TypeVar

from swarmlite.proxy.table import BackendPicker, Target

# Client bytes held while the upstream connects, before the client is paused.
PRECONNECT_LIMIT = 256 * 1024
# Transport write buffer high-water mark: past it, the other side stops reading.
WRITE_HIGH_WATER = 256 * 1024
# Every TICK seconds each connection counts one more quiet tick (``tick``); any byte
# resets it. No per-request timer: the hot path only stores a zero.
TICK = 5.0
RESPONSE_TIMEOUT = 60.0  # an upstream silent this long gets a 504 (nginx: proxy_read_timeout)
CLIENT_IDLE_TIMEOUT = 75.0  # an HTTP client idle (or mid-head) this long is closed

_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class ProxiedConnection(Protocol):
    def shutdown(self) -> None:
        """Finish what is in flight, then close (graceful stop)."""

    def abort(self) -> None:
        """Close now."""

    def tick(self) -> None:
        """One more quiet ``TICK``: end what has waited past its timeout."""


class ProxyContext:
    def __init__(
        self,
        local_node_id: str,
        connect_timeout: float = 1.0,
        *,
        tick: float = TICK,
        response_timeout: float = RESPONSE_TIMEOUT,
        client_idle_timeout: float = CLIENT_IDLE_TIMEOUT,
    ) -> None:
        self.local_node_id = local_node_id
        self.connect_timeout = connect_timeout
        self.tick = tick
        self.response_timeout = response_timeout
        self.response_ticks = max(1, round(response_timeout / tick))
        self.idle_ticks = max(1, round(client_idle_timeout / tick))
        self.connections: set[ProxiedConnection] = set()
        self._drained: asyncio.Event | None = None
        self._inflight: dict[str, int] = {}  # task id -> connections/requests in flight
        self._quiet: dict[str, asyncio.Event] = {}  # task id -> set when it reaches zero

    def address(self, target: Target) -> tuple[str, int] | None:
        """Where this node dials ``target``; None when it cannot reach it."""
        if target.node_id == self.local_node_id:
            return (target.host, target.port) if target.host else None
        return target.remote

    def opened(self, conn: ProxiedConnection) -> None:
        self.connections.add(conn)

    def closed(self, conn: ProxiedConnection) -> None:
        self.connections.discard(conn)
        if not self.connections and self._drained is not None:
            self._drained.set()

    def begin(self, task_id: str) -> None:
        """One more connection (TCP) or request (HTTP) in flight to ``task_id``."""
        self._inflight[task_id] = self._inflight.get(task_id, 0) + 1

    def end(self, task_id: str) -> None:
        """The end of something ``begin`` counted; wakes ``drained`` at zero."""
        left = self._inflight.get(task_id, 0) - 1
        if left > 0:
            self._inflight[task_id] = left
            return
        self._inflight.pop(task_id, None)
        quiet = self._quiet.pop(task_id, None)
        if quiet is not None:
            quiet.set()

    def in_flight(self, task_id: str) -> int:
        return self._inflight.get(task_id, 0)

    async def drained(self, task_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s until nothing is in flight to ``task_id``.

        True when it drained, False when the time ran out first.
        """
        if not self._inflight.get(task_id):
            return True
        quiet = self._quiet.setdefault(task_id, asyncio.Event())
        try:
            await asyncio.wait_for(quiet.wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        return True

    async def drain(self, grace: float) -> int:
        """Ask every connection to finish, wait up to ``grace`` s, abort the rest.

        Returns how many connections had to be aborted.
        """
        self._drained = asyncio.Event()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), grace)
        left = list(self.connections)
        for conn in left:
            conn.abort()
        return len(left)


async def connect_any(
    ctx: ProxyContext,
    picker: BackendPicker,
    first: Target,
    factory: Callable[[Target], _P],
) -> tuple[asyncio.Transport, _P, Target] | None:
    """Connect to ``first``, or on refusal/timeout to the next targets, each at most once.

    ``factory(target)`` makes the protocol for a connection to ``target``. Targets this
    node cannot reach (``ProxyContext.address`` is None) are skipped.

    Nothing was sent yet when a connect fails, so moving on is always safe; the
    picker then skips the failed target for a while (``table.FAIL_TIMEOUT``, or
    ``REFUSED_TIMEOUT`` for a refusal).
    Returns ``None`` when every target failed. Each dial counts as in flight to its
    target (``ProxyContext.begin``); the returned target stays counted and the
    caller calls ``ctx.end(target.task_id)`` when its connection or request ends.
    """
    loop = asyncio.get_running_loop()
    tried: set[Target] = set()
    target: Target | None = first
    for _ in range(max(len(picker), 1)):
        if target is None or target in tried:
            break
        tried.add(target)
        addr = ctx.address(target)
        if addr is None:
            target = _next_untried(picker, tried)
            continue
        host, port = addr
        ctx.begin(target.task_id)
        try:
            transport, proto = await asyncio.wait_for(
                loop.create_connection(partial(factory, target), host, port),
                ctx.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            ctx.end(target.task_id)
            picker.failed(target, refused=isinstance(exc, ConnectionRefusedError))
            target = _next_untried(picker, tried)
            continue
        except BaseException:
            ctx.end(target.task_id)  # cancelled: the client went away meanwhile
            raise
        return transport, proto, target
    return None


def _next_untried(picker: BackendPicker, tried: set[Target]) -> Target | None:
    for _ in range(len(picker)):
        t = picker.pick()
        if t is not None and t not in tried:
            return t
    return None
