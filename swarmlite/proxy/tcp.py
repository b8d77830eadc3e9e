"""Layer-4 proxy: one accepted connection spliced to one backend, on raw protocols.

On accept a backend is picked and dialed; client bytes that arrive meanwhile are held
(up to ``PRECONNECT_LIMIT``, then the client is paused). A refused or timed-out
connect moves on to the next backend, since nothing was sent yet. Once connected,
bytes flow both ways with flow control: when one side's write buffer passes its
high-water mark the other side stops reading until it drains. An EOF from either
side is passed on as a half-close; the connection closes when both directions ended
or either side closed.
"""

from __future__ import annotations

import asyncio
from typing import cast

from swarmlite.proxy.context import (
    PRECONNECT_LIMIT,
    WRITE_HIGH_WATER,
    ProxyContext,
    connect_any,
)
from swarmlite.proxy.table import ListenerRoute, Target


class _TcpUpstream(asyncio.Protocol):
    __slots__ = ("client", "transport")

    def __init__(self, client: TcpProxyConnection) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        return self.client.upstream_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_lost()

    def pause_writing(self) -> None:
        client = self.client.transport
        if client is not None:
            client.pause_reading()

    def resume_writing(self) -> None:
        client = self.client.transport
        if client is not None and not client.is_closing():
            client.resume_reading()


class TcpProxyConnection(asyncio.Protocol):
    """The client side of one proxied TCP connection."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_client_eof",
        "_closed",
        "_connect",
        "_counted",
        "_ctx",
        "_route",
        "_upstream_eof",
        "transport",
        "upstream",
    )

    def __init__(self, route: ListenerRoute, ctx: ProxyContext) -> None:
        self._route = route
        self._ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._client_eof = False
        self._upstream_eof = False
        self._closed = False
        self._connect: asyncio.Task[None] | None = None
        self._counted: str | None = None  # the task id counted in flight for this connection

    # -- client side ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.transport = transport
        self._ctx.opened(self)
        first = self._route.picker.pick()
        if first is None:
            transport.close()
            return
        self._connect = asyncio.get_running_loop().create_task(self._dial(first))

    def data_received(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.write(data)
            return
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > PRECONNECT_LIMIT and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._client_eof = True
        upstream = self.upstream
        if upstream is not None:
            if self._upstream_eof:
                self._close()
                return False
            if upstream.can_write_eof():
                upstream.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._ctx.closed(self)
        self._closed = True
        if self._counted is not None:
            self._ctx.end(self._counted)
            self._counted = None
        if self._connect is not None and not self._connect.done():
            self._connect.cancel()
        if self.upstream is not None:
            self.upstream.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None and not upstream.is_closing():
            upstream.resume_reading()

    # -- upstream side ---------------------------------------------------------
    async def _dial(self, first: Target) -> None:
        assert self.transport is not None
        got = await connect_any(self._ctx, self._route.picker, first, lambda _: _TcpUpstream(self))
        client = self.transport
        if got is None:
            client.abort()
            return
        upstream, _, target = got
        if self._closed or client.is_closing():
            self._ctx.end(target.task_id)
            upstream.close()
            return
        self._counted = target.task_id  # until the client side closes
        self.upstream = upstream
        if self._buffer:
            upstream.writelines(self._buffer)
            self._buffer = []
            self._buffered = 0
        if self._client_eof:
            if upstream.can_write_eof():
                upstream.write_eof()
        elif upstream.get_write_buffer_size() <= WRITE_HIGH_WATER:
            # Else the write above paused the client, and resume_writing will resume it.
            client.resume_reading()

    def upstream_eof(self) -> bool:
        self._upstream_eof = True
        client = self.transport
        if client is None or self._client_eof:
            self._close()
            return False
        if client.can_write_eof():
            client.write_eof()
        return True

    def upstream_lost(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- lifecycle ---------------------------------------------------------------
    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close()

    def shutdown(self) -> None:
        """A byte stream has no request boundary: let it run until the grace ends."""

    def tick(self) -> None:
        """A TCP stream may idle as long as its ends like (a database connection)."""

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        if self.upstream is not None:
            self.upstream.abort()
