"""A small asyncio HTTP/1.1 client for the CLI: one kept-alive connection, TLS optional.

The CLI makes a handful of requests per command, so a full client library is mostly
start-up cost (aiohttp's import alone took 0.24 s of a 0.28 s CLI start here).
Responses are parsed with ``httptools``; the node API frames every answer with a
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


class Http11Client:
    def __init__(self, base_url: str, ssl_context: ssl.SSLContext | None) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._host_header = parts.netloc.encode()
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn[1].close()
            with contextlib.suppress(OSError):  # ssl.SSLError is an OSError
                await conn[1].wait_closed()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Answer:
        """Send one request and read its whole answer."""
        chunks: list[bytes] = []
        status = 0
        async for got, chunk in self.stream(method, path, params=params, body=body,
                                            content_type=content_type):  # fmt: skip
            status = got
            chunks.append(chunk)
        return Answer(status, b"".join(chunks))

    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> AsyncGenerator[tuple[int, bytes], None]:
        """Send one request; yield ``(status, body chunk)`` as the answer arrives.

        The first item may carry an empty chunk (the head came before any body)."""
        target = path + ("?" + urlencode(dict(params)) if params else "")
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: " + self._host_header]
        if body is not None:
            head += [f"Content-Type: {content_type}".encode(), b"Content-Length: %d" % len(body)]
        elif method in ("POST", "PUT", "PATCH"):
            head.append(b"Content-Length: 0")
        message = b"\r\n".join([*head, b"", b""]) + (body or b"")

        reused = self._conn is not None
        reader, writer = await self._connection()
        parsed = _Parsed()
        received = False
        try:
            writer.write(message)
            await writer.drain()
            while not parsed.complete:
                data = await reader.read(READ_CHUNK)
                if not data:
                    if reused and not received:
                        # The kept-alive connection had been closed by the server.
                        await self.close()
                        async for item in self.stream(method, path, params=params, body=body,
                                                      content_type=content_type):  # fmt: skip
                            yield item
                        return
                    # The node API always frames its answers (length or chunked).
                    raise IncompleteAnswer("the server closed the connection mid-answer")
                received = True
                parsed.parser.feed_data(data)
                if parsed.headers_done and (parsed.chunks or parsed.complete):
                    yield parsed.status, parsed.take()
            if not parsed.keep_alive:
                await self.close()
        except (httptools.HttpParserError, BaseException) as exc:
            await self.close()
            if isinstance(exc, httptools.HttpParserError):
                raise IncompleteAnswer(f"malformed answer from the server: {exc}") from None
            raise

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None:
            self._conn = await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl is not None else None,
                limit=READ_CHUNK,
            )
        return self._conn
