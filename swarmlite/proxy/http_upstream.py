"""The upstream side of the HTTP proxy: kept-alive backend connections and their pool.

``HttpUpstream`` passes response bytes to its current owner (the client connection)
unchanged, except a final response head that needs a rewrite: keep-alive with the
client does not depend on the backend's (busybox httpd, for one, closes after every
response), so a length-delimited response loses the backend's hop-by-hop
``Connection``/``Keep-Alive`` headers and says ``Connection: keep-alive``
(``client_head``). Each read is fed to an ``httptools`` response parser before it is
passed on: a kept-alive HTTP/1.1 response whose head came whole in the read and names
no hop-by-hop option (the usual answer) goes out as it came, with no copy. When a
response is complete the owner releases the connection to ``UpstreamPool`` (if the
backend allows keep-alive) for the next request to that backend.

The client gets the response and nothing after it: bytes a backend sends past a
response's end in the same read (garbage, a second response nobody asked for) are
dropped and the connection is closed, not pooled (as nginx does). The parser gives no
offset at the end, so the proxy follows the framing itself (``body_length``, then a
byte count or the chunk lines, ``_end_in``) once the final head is whole.

A pooled connection is only reused for the target it was dialed for (same backend
task, same address), so a request only ever goes out on a connection to the task it
picked; ``retain`` (called on every routes change) closes idle connections to tasks
that left the routes and refuses to keep theirs later.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

import httptools

from swarmlite.proxy.context import WRITE_HIGH_WATER
from swarmlite.proxy.http_response import (
    CHUNKED,
    PLAIN_RESPONSE,
    UNKNOWN,
    body_length,
    client_head,
    hop_free,
)
from swarmlite.proxy.table import Target

if TYPE_CHECKING:
    from swarmlite.proxy.http import HttpProxyConnection


P_UPSTREAM = 1  # the upstream's write buffer is full: pause the client
MAX_HEAD = 64 * 1024  # a longer response head is passed on as is


class UpstreamPool:
    """Idle kept-alive upstream connections, up to ``max_idle_per_backend`` per address.

    The cap should cover the client concurrency a backend sees, or connections churn.
    ``sweep()`` (called every ~30 s by the mesh) closes those idle since the last sweep.
    """

    def __init__(self, max_idle_per_backend: int = 128) -> None:
        self.max_idle = max_idle_per_backend
        self._idle: dict[str, list[HttpUpstream]] = {}  # by task id: a str hashes in C
        self._live: set[str] | None = None  # task ids still routed; None: not told yet

    def acquire(self, target: Target) -> HttpUpstream | None:
        idle = self._idle.get(target.task_id)
        while idle:
            up = idle.pop()
            up.idle = up.swept = False
            if up.closed:
                continue
            if up.target is target or up.target == target:
                return up
            up.transport.close()  # the task is dialed elsewhere now
        return None

    def release(self, up: HttpUpstream) -> None:
        task_id = up.target.task_id
        if up.closed or (self._live is not None and task_id not in self._live):
            up.transport.close()
            return
        idle = self._idle.get(task_id)
        if idle is None:
            idle = self._idle[task_id] = []
        if len(idle) >= self.max_idle:
            up.transport.close()
            return
        up.idle = True
        idle.append(up)

    def forget(self, up: HttpUpstream) -> None:
        idle = self._idle.get(up.target.task_id)
        if idle and up in idle:
            idle.remove(up)

    def retain(self, task_ids: set[str]) -> int:
        """Only tasks in ``task_ids`` are routed now: close idle connections to others."""
        self._live = set(task_ids)
        closed = 0
        for key in [k for k in self._idle if k not in self._live]:
            for up in self._idle.pop(key):
                up.idle = False
                up.transport.close()
                closed += 1
        return closed

    def sweep(self) -> int:
        """Close connections that stayed idle since the previous sweep; returns how many."""
        closed = 0
        for key, idle in list(self._idle.items()):
            keep = []
            for up in idle:
                if up.swept or up.closed:
                    up.idle = False
                    up.transport.close()
                    closed += 1
                else:
                    up.swept = True
                    keep.append(up)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return closed

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        for idle in self._idle.values():
            for up in idle:
                up.transport.close()
        self._idle.clear()


class HttpUpstream(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, target: Target) -> None:
        self.pool = pool
        self.target = target  # the backend this connection goes to
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.owner: HttpProxyConnection | None = None
        self.idle = False
        self.swept = False
        self.closed = False
        self.reused = False
        self.tunnel = False
        self.head_only = False
        self.closing = False  # the client did not ask to keep alive
        self._passable = False  # a plain response may pass unparsed (not HEAD, not closing)
        self.got_response = False
        self.done = False
        self.keep_alive = False
        self.client_keep_alive = False  # set with the final head; see ``client_head``
        self.read_paused = False
        self._head: bytes | None = None  # head bytes held until the final head is whole
        self._fresh = False  # this read starts an HTTP/1.1 response
        self._plain = False  # this read's final head passes unchanged
        self._left = UNKNOWN  # body bytes still to come, or CHUNKED/UNKNOWN
        self._skip = 0  # chunked: bytes of chunk data and CRLF still to come
        self._line = b""  # chunked: a chunk-size or trailer line split across reads
        self._trailers = False  # chunked: the last chunk went by
        self._more = False  # this read has bytes past a whole response that are not CR/LF

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.transport = transport

    def start(self, owner: HttpProxyConnection, method: bytes, keep_alive: bool = True) -> None:
        self.owner = owner
        self.head_only = method == b"HEAD"
        self.closing = not keep_alive
        self._passable = keep_alive and not self.head_only
        self.got_response = False
        self.done = False
        self.client_keep_alive = False
        self._head = b""
        self._left = UNKNOWN

    def finish(self) -> None:
        self.owner = None
        self.reused = True
        if self.head_only:  # the parser may still expect the body HEAD never sends
            self.parser = httptools.HttpResponseParser(self)
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_reading(self) -> None:
        self.read_paused = True
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:  # bytes with no request asked: not a healthy keep-alive
            self.transport.close()
            return
        owner.quiet = 0
        if self.tunnel:
            owner.transport.write(data)
            return
        if (
            self._head == b""  # a response starts: the parser is between messages
            and self._passable
            and (plain := PLAIN_RESPONSE.match(data)) is not None
            and len(data) - plain.end() == int(plain[1])
        ):
            # Whole and plain: no parse (the parser stays between messages), no rewrite.
            self._head = None
            self.got_response = self.done = self.keep_alive = self.client_keep_alive = True
            owner.transport.write(data)
            owner.response_done(self)
            return
        # Parsed before it is passed on, so a kept-alive response's head is known to
        # need no rewrite (``_plain``) and goes out as it came.
        self._fresh = self._head == b"" and data.startswith(b"HTTP/1.1 ")
        self._plain = False  # set by on_headers_complete during the parse
        self._more = False  # set by on_message_begin after the response's end
        self.got_response = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # 101 Switching Protocols
            owner.transport.write(self._pass_head(data)[0] if self._head is not None else data)
            owner.tunnel_open(self)
            return
        except httptools.HttpParserError:
            if not self.done:  # a malformed response: what came goes on, both ends close
                owner.transport.write(self._pass_head(data)[0] if self._head is not None else data)
                self.transport.close()
                owner.upstream_lost(self)
                return
            self._more = True  # what follows a whole response starts none: cut off below
        out = data
        body = 0  # where this read's body bytes start; -1: the final head is not whole
        if self._head is not None:
            if self._plain and (body := hop_free(data)):
                self._head = None
                self._left = body_length(data[:body], head_only=self.head_only)
                if self._left == CHUNKED:
                    self._chunked()
            else:
                out, body = self._pass_head(data)
        end = self._end_in(data, body) if body >= 0 and self._left != UNKNOWN else -1
        if self.done:
            if end < len(data):  # bytes past the end, or an end not followed (-1)
                self.keep_alive = False  # so response_done closes this connection
                if end >= 0:
                    out = out[: len(out) - len(data) + end]
            owner.transport.write(out)
            owner.response_done(self)
            return
        owner.transport.write(out)

    def _pass_head(self, data: bytes) -> tuple[bytes, int]:
        """Hold bytes until the final (non-1xx) head is whole; return what may go out and
        where the body starts in ``data`` (-1: no final head known yet)."""
        assert self._head is not None
        whole = held = self._head + data
        out = b""
        while True:
            end = held.find(b"\r\n\r\n")
            if end < 0:
                if len(held) > MAX_HEAD:
                    self._head = None
                    return out + held, -1
                self._head = held
                return out, -1
            head, held = held[: end + 4], held[end + 4 :]
            code = head[9:12]  # "HTTP/1.1 200 OK": the status code's digits
            if code == b"101":  # switching protocols: a tunnel follows, pass it all on
                self._head = None
                return out + head + held, -1
            if code[:1] == b"1":  # an interim response: the final head follows
                out += head
                continue
            rewritten, self.client_keep_alive = client_head(
                head, head_only=self.head_only, closing=self.closing
            )
            self._head = None
            self._left = body_length(head, head_only=self.head_only)
            if self._left == CHUNKED:
                self._chunked()
            body = len(data) - len(held)
            if rewritten is head and not out:
                return whole, body  # one final head, unchanged
            return out + rewritten + held, body

    def _chunked(self) -> None:
        self._skip = 0
        self._line = b""
        self._trailers = False

    def _end_in(self, data: bytes, at: int) -> int:
        """Where the response ends in ``data``, whose body bytes start at ``at``; -1 if
        it does not (what is left of it is counted for the next read)."""
        left = self._left
        if left == CHUNKED:
            return self._chunks_end(data, at)
        if left > len(data) - at:
            self._left = left - len(data) + at
            return -1
        self._left = UNKNOWN
        return at + left

    def _chunks_end(self, data: bytes, at: int) -> int:
        """``_end_in`` for a chunked body: follows its chunk-size lines (and trailer
        lines after the last chunk) through ``data`` from ``at``. llhttp has accepted
        them: what it refuses never gets here."""
        if self.done and not self._more and data[-4:] == b"\r\n\r\n" and data[-5:-4] not in b"\r\n":
            # The usual last read, told without a walk: past the end llhttp skips only
            # CR and LF (else a message begins, or an error), and a chunked message ends
            # with CRLFCRLF after another byte, so only the read's end can be its end.
            return len(data)
        at += self._skip
        find = data.find
        while at <= len(data):
            eol = find(b"\n", at)
            if eol < 0:
                self._skip = 0
                self._line += data[at:]
                return -1
            line = data[at:eol]
            if self._line:
                line = self._line + line
                self._line = b""
            at = eol + 1
            if self._trailers:
                if not line.strip():  # the empty line that ends the message
                    self._left = UNKNOWN
                    return at
                continue
            try:
                size = int(line, 16)  # int() drops the CR
            except ValueError:  # a chunk extension
                size = int(line.split(b";", 1)[0], 16)
            if size:
                at += size + 2  # the chunk's data and its CRLF
            elif data[at : at + 2] == b"\r\n":  # the last chunk, no trailers: the end
                self._left = UNKNOWN
                return at + 2
            else:
                self._trailers = True  # trailer lines, then an empty one
        self._skip = at - len(data)
        return -1

    def on_headers_complete(self) -> None:
        p = self.parser
        if p.get_status_code() < 200:
            self._fresh = False  # an interim head went by: the final one is not first
            return
        self.keep_alive = keep = p.should_keep_alive()
        if self.head_only:
            self.done = True
        # A kept-alive HTTP/1.1 response is delimited, so the client can keep alive too;
        # its head passes unchanged unless it names hop-by-hop options (rare).
        if self._fresh and keep and not self.closing:
            self._plain = self.client_keep_alive = True

    def on_message_begin(self) -> None:
        if self.done:  # a second response, in the read that completed the first
            self._more = True

    def on_message_complete(self) -> None:
        if self.done or self.parser.get_status_code() < 200:
            return
        self.done = True

    def eof_received(self) -> bool:
        owner = self.owner
        if self.tunnel and owner is not None:
            return owner.tunnel_eof(upstream=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.idle:
            self.pool.forget(self)
        elif self.owner is not None:
            self.owner.upstream_lost(self)

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.pause(P_UPSTREAM)

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.resume(P_UPSTREAM)
