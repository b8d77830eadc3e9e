"""The CLI's HTTP/1.1 client against raw asyncio servers on 127.0.0.1 that script
their answers byte by byte: reuse, a closed kept-alive connection, cut answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from swarmlite.api.client import ApiClient
from swarmlite.api.http11 import Http11Client, IncompleteAnswer
from swarmlite.errors import DaemonError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            head += await reader.readexactly(int(line.split(b":")[1]))
    return head


class Server:
    """Counts connections and requests; ``handler`` serves each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Server:
        srv = Server(handler)
        server = await asyncio.start_server(srv._serve, "127.0.0.1", 0)
        srv.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return srv

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_requests_reuse_one_kept_alive_connection(serve: Callable[..., Any]) -> None:
    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            srv.requests.append(await _read_request(reader))
            writer.write(OK)

    srv = await serve(keep_alive)
    client = Http11Client(f"http://127.0.0.1:{srv.port}", None)
    try:
        for _ in range(3):
            answer = await client.request("GET", "/v1/info", params={"a": "b c"})
            assert (answer.status, answer.body) == (200, b"{}")
        posted = await client.request("POST", "/v1/x", body=b'{"n":1}')
        assert posted.status == 200
    finally:
        await client.close()
    assert srv.connections == 1
    assert srv.requests[0].startswith(b"GET /v1/info?a=b+c HTTP/1.1\r\nHost: 127.0.0.1:")
    assert srv.requests[3].endswith(b'Content-Length: 7\r\n\r\n{"n":1}')


async def test_concurrent_requests_each_get_a_connection(serve: Callable[..., Any]) -> None:
    async def slow_keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            srv.requests.append(await _read_request(reader))
            await asyncio.sleep(0.05)  # overlapping requests must not share a connection
            writer.write(OK)

    srv = await serve(slow_keep_alive)
    client = Http11Client(f"http://127.0.0.1:{srv.port}", None)
    try:
        answers = await asyncio.gather(*(client.request("GET", f"/{i}") for i in range(12)))
        assert [a.body for a in answers] == [b"{}"] * 12
        assert srv.connections == 12
        await client.request("GET", "/again")  # an idle one is reused
        assert srv.connections == 12
    finally:
        await client.close()


async def test_a_kept_alive_connection_the_server_closed_is_replaced(
    serve: Callable[..., Any],
) -> None:
    async def one_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        srv.requests.append(await _read_request(reader))
        writer.write(OK)  # says nothing of closing, then closes: an idle timeout
        await writer.drain()

    srv = await serve(one_then_close)
    client = Http11Client(f"http://127.0.0.1:{srv.port}", None)
    try:
        assert (await client.request("GET", "/a")).status == 200
        await asyncio.sleep(0.05)  # the server's close reaches us
        assert (await client.request("GET", "/b")).status == 200
    finally:
        await client.close()
    assert srv.connections == 2
    assert [r.split(b" ")[1] for r in srv.requests] == [b"/a", b"/b"]


async def test_an_answer_cut_short_is_a_daemon_error(serve: Callable[..., Any]) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
        await writer.drain()

    srv = await serve(cut)
    client = Http11Client(f"http://127.0.0.1:{srv.port}", None)
    with pytest.raises(IncompleteAnswer):
        await client.request("GET", "/v1/info")
    async with ApiClient(f"http://127.0.0.1:{srv.port}", None, timeout=5) as api:
        with pytest.raises(DaemonError, match="closed the connection"):
            await api.info()


async def test_a_silent_server_times_out_as_a_daemon_error(serve: Callable[..., Any]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    srv = await serve(silent)
    async with ApiClient(f"http://127.0.0.1:{srv.port}", None, timeout=0.3) as api:
        with pytest.raises(DaemonError, match=r"did not answer within 0.3 s"):
            await api.info()


async def test_followed_logs_arrive_before_the_stream_ends(serve: Callable[..., Any]) -> None:
    release = asyncio.Event()

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"6\r\nweb.1 \r\n")
        writer.write(b"5\r\n| hi\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"4\r\nbye\n\r\n0\r\n\r\n")
        await writer.drain()

    srv = await serve(chunked)
    async with ApiClient(f"http://127.0.0.1:{srv.port}", None, timeout=0.5) as api:
        lines = api.service_logs("web", follow=True)
        assert await anext(lines) == "web.1 | hi"
        await asyncio.sleep(0.7)  # longer than the timeout: a followed stream has none
        release.set()
        assert [line async for line in lines] == ["bye"]
