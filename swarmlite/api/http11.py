"""A small asyncio HTTP/1.1 client for the CLI: one kept-alive connection, TLS optional.

The CLI makes a handful of requests per command, so a full client library is mostly
start-up cost (aiohttp's import alone took 0.24 s of a 0.28 s CLI start here).
Concurrent requests each take a connection of their own. Responses are parsed with
``httptools``; the node API frames every answer with a
Content-Length or chunked encoding, so an answer that ends with the connection is
incomplete. A request on a reused connection that the server had already closed, before
any byte of the answer came back, is sent once more on a new connection.

Transport failures are raised as the standard exceptions (``OSError`` and
subclasses, ``ssl.SSLError``, ``TimeoutError``); ``IncompleteAnswer`` is a
``ConnectionError`` for an answer cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import httptools

READ_CHUNK = 64 * 1024


class IncompleteAnswer(ConnectionError):
    """The server closed the connection before its answer was complete."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class _Parsed:
    """httptools callbacks: the status, body chunks not yet taken, and the message end."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: list[bytes] = []

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        # Asked here: after the message end the parser no longer knows.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def take(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks = []
        return out


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
MAX_IDLE = 8  # kept-alive connections kept for reuse


class Http11Client:
    """Safe for concurrent requests: each takes an idle kept-alive connection or opens
    one, and gives it back when its answer is complete."""

    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._host_header = parts.netloc.encode()
        self._idle: list[Conn] = []

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close(conn)

    async def request(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> Answer:  # fmt: skip
        """Send one request and read its whole answer."""
        chunks: list[bytes] = []
        status = 0
        async for got, chunk in self.stream(method, path, params=params, body=body):
            status = got
            chunks.append(chunk)
        return Answer(status, b"".join(chunks))

    async def stream(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> AsyncGenerator[tuple[int, bytes], None]:  # fmt: skip
        """Send one request; yield ``(status, body chunk)`` as the answer arrives.

        The first item may carry an empty chunk (the head came before any body)."""
        target = path + ("?" + urlencode(dict(params)) if params else "")
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: " + self._host_header]
        if body is not None:
            head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
        elif method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: 0")
        message = b"\r\n".join([*head, b"", b""]) + (body or b"")
        while True:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._open()
            parsed = _Parsed()
            head_given = False
            try:
                got_any = await self._send(conn, message, parsed)
                if not got_any and reused:
                    await _close(conn)  # the server had closed it while idle: send again
                    continue
                while True:
                    # The head is given at once, so a stream whose body is slow to
                    # start (``logs -f`` of a quiet service) is answered, not timed out.
                    if parsed.headers_done and (parsed.chunks or parsed.complete or not head_given):
                        head_given = True
                        yield parsed.status, parsed.take()
                    if parsed.complete:
                        break
                    await self._receive(conn, parsed)
            except BaseException:
                await _close(conn)
                raise
            if parsed.keep_alive and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
            else:
                await _close(conn)
            return

    async def _send(self, conn: Conn, message: bytes, parsed: _Parsed) -> bool:
        """Write the request and read the first bytes of the answer; False: none came."""
        reader, writer = conn
        try:
            writer.write(message)
            await writer.drain()
            data = await reader.read(READ_CHUNK)
        except ConnectionError:
            return False
        if not data:
            return False
        _feed(parsed, data)
        return True

    async def _receive(self, conn: Conn, parsed: _Parsed) -> None:
        data = await conn[0].read(READ_CHUNK)
        if not data:  # the node API frames every answer (length or chunked)
            raise IncompleteAnswer("the server closed the connection mid-answer")
        _feed(parsed, data)

    async def _open(self) -> Conn:
        return await asyncio.open_connection(
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host if self._ssl is not None else None,
            limit=READ_CHUNK,
        )


def _feed(parsed: _Parsed, data: bytes) -> None:
    try:
        parsed.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        raise IncompleteAnswer(f"malformed answer from the server: {exc}") from None


async def _close(conn: Conn) -> None:
    conn[1].close()
    with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
        await conn[1].wait_closed()
