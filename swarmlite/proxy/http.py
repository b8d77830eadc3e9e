"""Layer-7 proxy for ``app_protocol: http`` ports: one backend pick per request.

Requests are parsed with ``httptools``; each head is rebuilt with ``X-Forwarded-For``
(extended) and ``X-Forwarded-Proto: http`` and sent to the next backend over a
kept-alive upstream connection from ``UpstreamPool`` (or a new one; a refused or
timed-out connect moves on to the next backend). Bodies stream: a Content-Length body
is passed as is, a chunked body is re-chunked as it is decoded. Responses are passed
through byte for byte (only a head with hop-by-hop headers is rewritten, see
``http_upstream``) while a response parser watches for the message end, so upstream
framing and trailers reach the client unchanged.

Requests are handled one at a time per client connection; a pipelined request waits
(with the client paused) until the response before it is complete. No backend gives
``503``, no backend accepting the connection ``502``; an upstream that dies
mid-response closes the client. An upgrade request (websocket, CONNECT) is sent on a
fresh connection, after which both sides are tunnelled as raw bytes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import cast

import httptools

from swarmlite.proxy.context import PRECONNECT_LIMIT, WRITE_HIGH_WATER, ProxyContext, connect_any
from swarmlite.proxy.http_request import (
    BOUNDARY,
    LOOK,
    MAX_REQUEST_HEAD,
    PLAIN_REQUEST,
    Refused,
    Request,
    error_response,
)
from swarmlite.proxy.http_upstream import P_UPSTREAM, HttpUpstream, UpstreamPool
from swarmlite.proxy.table import ListenerRoute, Target

_P_BUFFER = 2  # too much request body held while no upstream is bound
_P_PIPELINE = 4  # a pipelined request waits behind the active one
_P_REFUSED = 8  # a refused request waits for the answers to those before it


class HttpProxyConnection(asyncio.Protocol):
    """The client side of one HTTP connection through the mesh."""

    def __init__(self, route: ListenerRoute, ctx: ProxyContext, pool: UpstreamPool) -> None:
        self._route = route
        self._ctx = ctx
        self._pool = pool
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self._forwarded_tail = b""  # the added X-Forwarded-For value and what follows it
        self._forwarded_headers = b""  # the same with its name: ends a plain request
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request] = deque()
        self._parsing = BOUNDARY  # the request being parsed; complete between requests
        self._upstream: HttpUpstream | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._counted: str | None = None  # task id of the request counted in flight
        self._paused = 0
        self._write_paused = False
        self._client_eof = False
        self._upstream_eof = False
        self._stopping = False
        self._closed = False
        self._tunnel = False
        self._tunnel_buf: list[bytes] = []
        self._head_bytes = 0  # reads of the head being parsed, past its first one
        self._refusal = ""  # a 400's text, sent once the requests before it are answered
        self.quiet = 0  # ticks without a byte from the client or the bound upstream

    # -- client transport ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        client_ip = str(peer[0]).encode() if peer else b"unknown"
        self._forwarded_tail = client_ip + b"\r\nX-Forwarded-Proto: http\r\n\r\n"
        self._forwarded_headers = b"X-Forwarded-For: " + self._forwarded_tail
        self._ctx.opened(self)

    def data_received(self, data: bytes) -> None:
        self.quiet = 0
        if self._tunnel:
            self._tunnel_write(data)
            return
        if (
            self._parsing.complete
            and not self._queue
            and data[-4:] == b"\r\n\r\n"
            and (plain := PLAIN_REQUEST.fullmatch(data)) is not None
        ):
            # A whole bodiless request at a request boundary: the parser, which never
            # sees it, stays at one too.
            req = self._parsing = Request()
            req.method = plain[1]
            req.complete = True
            req.head = data[:-2] + self._forwarded_headers
            self._queue.append(req)
            self._dispatch(req)
            return
        req = self._parsing
        mid_head = req.head is None and not req.complete
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._tunnel = True
            rest = data[upgrade.args[0] :]
            if rest:
                self._tunnel_write(rest)
        except httptools.HttpParserError as exc:
            refused = exc.__context__  # what a callback raised
            self._refuse(str(refused) if isinstance(refused, Refused) else "malformed request")
        else:
            # A head still unfinished after a whole read of it: httptools holds it all,
            # so it is bounded (nginx: 400 past large_client_header_buffers).
            if mid_head and self._parsing.head is None:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_REQUEST_HEAD:
                    self._fail("431 Request Header Fields Too Large", "request head too large")

    def eof_received(self) -> bool:
        self._client_eof = True
        if self._tunnel:
            return self.tunnel_eof(upstream=False)
        # Keep the write side open only for a response to a fully received request.
        return bool(self._queue) and self._queue[-1].complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._ctx.closed(self)
        self._settle()
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        up = self._upstream
        if up is not None:
            self._upstream = None
            up.owner = None
            up.transport.close()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._upstream is not None:
            self._upstream.resume_reading()

    def pause(self, reason: int) -> None:
        if not self._paused and not self._closed:
            self.transport.pause_reading()
        self._paused |= reason

    def resume(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and not self._closed:
                self.transport.resume_reading()

    # -- request parser callbacks ------------------------------------------------
    def on_message_begin(self) -> None:
        req = self._parsing = Request()
        self._queue.append(req)
        if len(self._queue) > 1:
            self.pause(_P_PIPELINE)

    def on_url(self, url: bytes) -> None:
        self._parsing.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self._parsing
        if (name[0] | 0x20) in LOOK:  # only names the proxy may act on need a look
            req.take_header(name, value)
        else:
            req.headers += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        req = self._parsing
        p = self._parser
        self._head_bytes = 0
        req.method = method = p.get_method()
        req.keep_alive = p.should_keep_alive()
        version = p.get_http_version()
        # Raised, so the parser stops: the client gets a 400 (see _refuse).
        req.check(version)
        upgrade = p.should_upgrade()
        req.head = req.forwarded_head(version, upgrade, self._forwarded_tail)
        if upgrade:
            req.upgrade = self._tunnel = True
            if method == b"CONNECT":  # a forward proxy's verb: no service is one
                self._fail("405 Method Not Allowed", "the routing mesh does not serve CONNECT")
                return
        if req is self._queue[0]:
            self._dispatch(req)

    def on_body(self, body: bytes) -> None:
        req = self._parsing
        if req.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        self._send_body(req, body)

    def on_message_complete(self) -> None:
        req = self._parsing
        req.complete = True
        if req.chunked:
            self._send_body(req, b"0\r\n\r\n")

    def _send_body(self, req: Request, body: bytes) -> None:
        up = self._upstream
        if up is not None and req is self._queue[0]:
            req.body_sent = True
            up.transport.write(body)
            return
        req.chunks.append(body)
        req.buffered += len(body)
        if req.buffered > PRECONNECT_LIMIT:
            self.pause(_P_BUFFER)

    # -- upstream side -------------------------------------------------------------
    def _dispatch(self, req: Request, fresh: bool = False) -> None:
        target = self._route.picker.pick()
        if target is None:
            self._fail(
                "503 Service Unavailable",
                f"no backend available for service {self._route.listener.service}",
            )
            return
        if not (fresh or req.upgrade):
            up = self._pool.acquire(target)
            if up is not None:
                self._ctx.begin(target.task_id)
                self._counted = target.task_id
                self._bind(up, req)
                return
        self._connecting = asyncio.get_running_loop().create_task(self._connect(req, target))

    async def _connect(self, req: Request, first: Target) -> None:
        pool = self._pool
        got = await connect_any(self._ctx, self._route.picker, first, partial(HttpUpstream, pool))
        self._connecting = None
        if got is None:
            self._fail(
                "502 Bad Gateway", f"no backend of service {self._route.listener.service} accepted"
            )
            return
        transport, up, target = got
        self._counted = target.task_id  # connect_any counted it
        if self._closed:
            self._settle()
            transport.close()
            return
        self._bind(up, req)

    def _bind(self, up: HttpUpstream, req: Request) -> None:
        self._upstream = up
        up.start(self, req.method, req.keep_alive)
        if self._write_paused:
            up.pause_reading()
        assert req.head is not None
        if req.chunks:
            req.body_sent = True
            up.transport.writelines([req.head, *req.chunks])
            req.chunks = []
            req.buffered = 0
            self.resume(_P_BUFFER)
        else:
            up.transport.write(req.head)
        # An upgrade request's following bytes wait in _tunnel_buf: they go to the
        # backend only once it has agreed (101, ``tunnel_open``), never as requests.

    def tunnel_open(self, up: HttpUpstream) -> None:
        """The backend switched protocols: from here both directions are raw bytes."""
        if up is not self._upstream or not self._queue or not self._queue[0].upgrade:
            self._close()  # a 101 nobody asked for
            return
        up.tunnel = True
        if self._tunnel_buf:
            up.transport.writelines(self._tunnel_buf)
            self._tunnel_buf = []
        self.resume(_P_BUFFER)

    def response_done(self, up: HttpUpstream) -> None:
        req = self._queue.popleft()
        self._upstream = None
        counted = self._counted  # _settle(), inline: this runs once per request
        if counted is not None:
            self._counted = None
            self._ctx.end(counted)
        up.finish()
        if self._paused:
            self.resume(P_UPSTREAM)  # the response is whole: the client's pause ends
        if not req.complete or self._stopping or req.upgrade:
            # An upgrade refused (not 101): what the client sent after it was meant for
            # a tunnel, not requests; end the connection rather than parse it.
            up.transport.close()
            self._close()
            return
        if up.keep_alive and not up.transport.get_write_buffer_size():
            self._pool.release(up)
        else:
            up.transport.close()
        queue = self._queue
        if not (req.keep_alive and up.client_keep_alive) or (
            self._client_eof and not queue and not self._refusal
        ):
            self._close()
        elif queue or self._paused:
            self._next_request()

    def _next_request(self) -> None:
        queue = self._queue
        if self._paused and len(queue) <= 1:
            self.resume(_P_PIPELINE)
        if queue:
            if queue[0].head is not None:
                self._dispatch(queue[0])
        elif self._refusal:
            self._fail("400 Bad Request", self._refusal)

    def upstream_lost(self, up: HttpUpstream) -> None:
        if up is not self._upstream:
            return
        self._upstream = None
        self._settle()
        up.owner = None
        if self._tunnel or up.got_response:
            self._close()  # ends a read-until-close body, or cuts a broken one
            return
        req = self._queue[0]
        if up.reused and not req.body_sent and not req.retried:
            req.retried = True  # a kept-alive connection closed under us: try a fresh one
            self._dispatch(req, fresh=True)
            return
        self._fail("502 Bad Gateway", "the backend closed the connection before answering")

    # -- tunnel (after an upgrade) ---------------------------------------------------
    def _tunnel_write(self, data: bytes) -> None:
        up = self._upstream
        if up is not None and up.tunnel:
            up.transport.write(data)
            return
        self._tunnel_buf.append(data)
        if sum(map(len, self._tunnel_buf)) > PRECONNECT_LIMIT:
            self.pause(_P_BUFFER)

    def tunnel_eof(self, upstream: bool) -> bool:
        """Pass a half-close on; close when both directions have ended."""
        other: asyncio.Transport | None
        if upstream:
            self._upstream_eof = True
            other = self.transport
        else:
            other = self._upstream.transport if self._upstream is not None else None
        if other is None or other.is_closing() or (self._client_eof and self._upstream_eof):
            self._close()
            return False
        if other.can_write_eof():
            other.write_eof()
        return True

    # -- endings -------------------------------------------------------------------
    def _refuse(self, text: str) -> None:
        """The parser stopped at a request it refused: answer ``400`` and close, after
        the answers to the requests before it (a pipelining client reads in order)."""
        queue = self._queue
        req = self._parsing
        if queue and queue[-1] is req and not req.complete:
            if req.head is not None and req is queue[0]:
                # Its head went out and its body broke: only a close tells the backend.
                if self._upstream is None and not self._closed:
                    self.transport.write(error_response("400 Bad Request", text))
                self._close()
                return
            queue.pop()  # never sent on
        if not queue:
            self._fail("400 Bad Request", text)
            return
        self._refusal = text
        self.pause(_P_REFUSED)  # the parser stopped: nothing more is read

    def _fail(self, status: str, text: str) -> None:
        if not self._closed:
            self.transport.write(error_response(status, text))
        self._close()

    def _settle(self) -> None:
        """The request counted in flight has ended (answered, failed or cut)."""
        if self._counted is not None:
            self._ctx.end(self._counted)
            self._counted = None

    def _close(self) -> None:
        self._queue.clear()
        self._settle()
        if not self._closed:
            self.transport.close()
        up = self._upstream
        if up is not None:
            self._upstream = None
            up.owner = None
            up.transport.close()

    def tick(self) -> None:
        self.quiet = quiet = self.quiet + 1
        if self._closed or self._tunnel:
            return  # a tunnel (websocket) may idle as long as its ends like
        up = self._upstream
        if up is not None:
            if quiet >= self._ctx.response_ticks:
                self._upstream_timed_out(up)
        elif self._connecting is None and quiet >= self._ctx.idle_ticks:
            self._close()  # kept alive with nothing asked, or a head never finished

    def _upstream_timed_out(self, up: HttpUpstream) -> None:
        self._upstream = None
        up.owner = None
        up.transport.close()
        if up.got_response:
            self._close()  # a response cut short: closing is how the client learns it
            return
        self._fail(
            "504 Gateway Timeout",
            f"service {self._route.listener.service} did not answer within "
            f"{self._ctx.response_timeout:g} s",
        )

    def shutdown(self) -> None:
        self._stopping = True
        if not self._queue and self._connecting is None:
            self._close()

    def abort(self) -> None:
        if not self._closed:
            self.transport.abort()
        if self._upstream is not None:
            self._upstream.transport.abort()
