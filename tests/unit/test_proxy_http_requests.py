"""How requests reach the backend through the L7 mesh: the plain-request fast path
(``PLAIN_REQUEST``, no parser callbacks) and what must stay on the parser's path.

A request taking the fast path is forwarded as it came plus ``X-Forwarded-For`` and
``X-Forwarded-Proto``; anything that could frame differently at the backend (a body,
framing or hop-by-hop headers, malformed bytes) must not match it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from swarmlite.proxy.http import HttpProxyConnection
from swarmlite.proxy.http_request import PLAIN_REQUEST
from swarmlite.proxy.mesh import MeshProxy
from tests.unit.test_proxy_support import BACKEND_IPS, backend, free_port, route, snapshot

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
TAIL = b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
# Host values refused with 400 (nginx: "client sent invalid host header").
_INVALID_HOSTS = (b"", b" ", b" a b", b" a/b", b" a..b", b" ..", b" x:8a", b" [::1", b" a@b")


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /a?b=c&d=%20 HTTP/1.1\r\nHost: x:80\r\nAccept: */*\r\nUser-Agent: t/1\r\n\r\n",
        b"DELETE /x HTTP/1.1\r\nHost: x\r\nCookie: a=b; c=\xc3\xa9\r\nEmpty:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTest: v\r\nTrailer-Thing: v\r\n\r\n",  # te... names
        b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: x\r\n\r\n",  # changes nothing
        b"GET / HTTP/1.1\r\nconnection:Keep-Alive \r\nhost:x\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
)
def test_plain_requests_match(head: bytes) -> None:
    assert PLAIN_REQUEST.fullmatch(head) is not None


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",  # another version: keep-alive differs
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\ncontent-length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",  # space before colon
        b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nKeep-Alive: 5\r\n\r\n",
        b"GET / HTTP/1.1\r\nTE: trailers\r\n\r\n",
        b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
        b"GET / HTTP/1.1\r\nx-forwarded-proto: https\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",  # bare LF
        b"GET / HTTP/1.1\r\nHost: x\r\n y\r\n\r\n",  # obsolete line folding
        b"GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n",  # NUL in a value
        b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",  # not a token
        b"GET / HTTP/1.1\r\nHost x\r\n\r\n",  # no colon
        b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",  # space in the target
        b"GET a HTTP/1.1\r\nHost: x\r\n\r\n",  # not origin-form: the parser judges it
        b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nProxy-Connection: close\r\n\r\n",  # llhttp reads it as Connection
        b"get / HTTP/1.1\r\nHost: x\r\n\r\n",  # methods are case-sensitive
        b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",  # pipelined
        b"GET / HTTP/1.1\r\nHost: x\r\n",  # unfinished
        b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",  # no Host: the parser refuses it
        b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\nhost: y\r\n\r\n",  # two
        b"GET / HTTP/1.1\r\nHostname: x\r\n\r\n",
        *(b"GET / HTTP/1.1\r\nHost:" + v + b"\r\n\r\n" for v in _INVALID_HOSTS),
    ],
)
def test_requests_the_parser_must_see_do_not_match(head: bytes) -> None:
    assert PLAIN_REQUEST.fullmatch(head) is None


class RecordingBackend:
    """Answers each request head with ``ANSWER`` and keeps the heads it got."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                self.heads.append(await r.readuntil(b"\r\n\r\n"))
                w.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


async def _listen(mesh: MeshProxy) -> tuple[RecordingBackend, int, asyncio.Server]:
    rec = RecordingBackend()
    server = await asyncio.start_server(rec.serve, BACKEND_IPS[0], 0)
    port = server.sockets[0].getsockname()[1]
    listen = free_port()
    svc = route(
        "web", published=listen, target=port, http=True, backends=(backend("s", BACKEND_IPS[0]),)
    )
    await mesh.apply(snapshot(svc))
    return rec, listen, server


async def _send(listen: int, data: bytes, answers: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    try:
        w.write(data)
        got = b""
        while answers == 0 or got.count(b"ok") < answers:  # 0: read until closed
            chunk = await asyncio.wait_for(r.read(65536), 5)
            if not chunk:
                break
            got += chunk
        return got
    finally:
        w.close()


async def _exchange(mesh: MeshProxy, data: bytes, answers: int) -> tuple[bytes, list[bytes]]:
    """``data`` sent through the mesh to a ``RecordingBackend``, read as ``_send``
    does: what the client got, and the heads the backend got."""
    rec, listen, server = await _listen(mesh)
    try:
        return await _send(listen, data, answers), rec.heads
    finally:
        server.close()


async def test_a_plain_request_is_forwarded_as_it_came_plus_forwarded_headers(
    mesh: MeshProxy,
) -> None:
    head = b"GET /p?q=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
    got, heads = await _exchange(mesh, head, 1)
    assert got.endswith(b"ok")
    assert heads == [head[:-2] + TAIL]


async def test_a_request_with_forwarded_headers_takes_the_parser_and_extends_them(
    mesh: MeshProxy,
) -> None:
    head = (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n"
        b"X-Forwarded-Proto: https\r\n\r\n"
    )
    got, heads = await _exchange(mesh, head, 1)
    assert got.endswith(b"ok")
    assert heads == [
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        b"X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nX-Forwarded-Proto: http\r\n\r\n"
    ]


async def test_pipelined_plain_requests_are_answered_in_order(mesh: MeshProxy) -> None:
    one = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
    two = b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    got, heads = await _exchange(mesh, one + two, 2)
    assert got.count(b"HTTP/1.1 200 OK") == 2
    assert heads == [one[:-2] + TAIL, two[:-2] + TAIL]


async def test_a_space_before_a_framing_headers_colon_is_refused(mesh: MeshProxy) -> None:
    # Not the fast path, and the parser refuses it: a backend reading it as framing
    # could otherwise take the next request for this one's body.
    got, heads = await _exchange(mesh, b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", 0)
    assert got.startswith(b"HTTP/1.1 400 ")
    assert heads == []


class CountingParser:
    """Wraps a connection's httptools parser to count the reads it was fed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fed = 0

    def feed_data(self, data: bytes) -> None:
        self.fed += 1
        self.inner.feed_data(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_plain_requests_skip_the_parser_from_the_first_one(mesh: MeshProxy) -> None:
    rec, listen, server = await _listen(mesh)
    plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    try:
        for _ in range(50):
            conns = [c for c in mesh._ctx.connections if isinstance(c, HttpProxyConnection)]
            if conns:
                break
            await asyncio.sleep(0.01)
        (conn,) = conns
        counting = conn._parser = CountingParser(conn._parser)  # type: ignore[assignment]
        for head in (
            plain,
            plain,
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
        ):
            w.write(head)
            got = await asyncio.wait_for(r.readuntil(b"ok"), 5)
            assert got.startswith(b"HTTP/1.1 200 OK")
        assert counting.fed == 1  # only the request with a header the proxy acts on
        assert rec.heads[:2] == [plain[:-2] + TAIL] * 2
    finally:
        w.close()
        server.close()


async def test_a_client_paused_by_a_full_upstream_reads_again_after_the_response(
    mesh: MeshProxy,
) -> None:
    # While a request's upstream is over its high-water mark the client is paused
    # (HttpUpstream.pause_writing); the response completing ends that pause, or the
    # kept-alive client's next request would never be read.
    answer_now = asyncio.Event()

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                await r.readuntil(b"\r\n\r\n")
                await answer_now.wait()
                w.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(serve, BACKEND_IPS[0], 0)
    listen = free_port()
    svc = route(
        "web",
        published=listen,
        target=server.sockets[0].getsockname()[1],
        http=True,
        backends=(backend("s", BACKEND_IPS[0]),),
    )
    await mesh.apply(snapshot(svc))
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    try:
        w.write(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
        conn: HttpProxyConnection | None = None
        for _ in range(200):
            found = [c for c in mesh._ctx.connections if isinstance(c, HttpProxyConnection)]
            if found and found[0]._upstream is not None:
                conn = found[0]
                break
            await asyncio.sleep(0.01)
        assert conn is not None and conn._upstream is not None
        conn._upstream.pause_writing()  # what asyncio calls past the high-water mark
        assert not conn.transport.is_reading()
        answer_now.set()
        assert (await asyncio.wait_for(r.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
        assert conn.transport.is_reading()
        w.write(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(r.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
    finally:
        w.close()
        server.close()


async def test_an_http_1_0_request_with_transfer_encoding_is_refused(mesh: MeshProxy) -> None:
    # RFC 9112 6.1: its framing is faulty. A backend may ignore Transfer-Encoding in
    # HTTP/1.0 and read the chunks as the next request on a kept-alive connection.
    got, heads = await _exchange(
        mesh,
        b"POST / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        0,
    )
    assert got.startswith(b"HTTP/1.1 400 ")
    assert heads == []


async def test_an_endless_request_head_is_refused_with_431(mesh: MeshProxy) -> None:
    # httptools holds an unfinished head whole: without a bound, a client streaming
    # header lines grew the proxy's memory until the idle timeout.
    rec, listen, server = await _listen(mesh)
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    try:
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        got = b""
        for _ in range(200):  # 800 KB at most, unless answered
            w.write(line * 4)
            with contextlib.suppress(TimeoutError):
                got = await asyncio.wait_for(r.read(4096), 0.005)
            if got:
                break
        assert got.startswith(b"HTTP/1.1 431 ")
        assert rec.heads == []
    finally:
        w.close()
        server.close()


async def test_hop_by_hop_fields_of_the_client_are_not_forwarded(mesh: MeshProxy) -> None:
    # RFC 9110 7.6.1: Connection, the fields it names, Keep-Alive, TE, Proxy-Connection
    # and an Upgrade not taken belong to the client's connection. A forwarded
    # "Connection: close" also closed the kept-alive upstream after every request.
    head = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret, Content-Length\r\n"
        b"X-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
        b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n"
    )
    got, heads = await _exchange(mesh, head, 0)
    assert got.endswith(b"ok")
    assert heads == [b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n" + TAIL]


async def test_an_http_1_0_client_asking_keep_alive_has_the_proxy_ask_it_too(
    mesh: MeshProxy,
) -> None:
    head = b"GET / HTTP/1.0\r\nConnection: Keep-Alive, X-A\r\nX-A: 1\r\nHost: x\r\n\r\n"
    got, heads = await _exchange(mesh, head, 1)
    assert got.endswith(b"ok")
    assert heads == [b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n" + TAIL]


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n",  # even the same host twice
        b"GET / HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",  # parsed for other reasons
        b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        b"GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n",  # two is one too many in 1.0
        b"GET http://x/ HTTP/1.1\r\n\r\n",  # nginx wants Host with an absolute target too
    ],
)
async def test_a_request_without_exactly_one_host_is_refused_with_400(
    mesh: MeshProxy, data: bytes
) -> None:
    # RFC 9112 3.2 and nginx: a backend (or its virtual hosts) would have to guess.
    got, heads = await _exchange(mesh, data, 0)
    assert got.startswith(b"HTTP/1.1 400 ") and b"Host header" in got
    assert b"Connection: close" in got
    assert heads == []


async def test_an_http_1_0_request_without_host_is_forwarded(mesh: MeshProxy) -> None:
    got, heads = await _exchange(mesh, b"GET / HTTP/1.0\r\n\r\n", 0)
    assert got.endswith(b"ok")
    assert heads == [b"GET / HTTP/1.0\r\n" + TAIL]


async def test_a_pipelined_request_without_host_is_refused_after_the_answer_before_it(
    mesh: MeshProxy,
) -> None:
    # The client reads answers in order: the 400 must not take the first one's place.
    one = b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
    got, heads = await _exchange(mesh, one + b"GET /2 HTTP/1.1\r\n\r\n" + one, 0)
    assert got.startswith(ANSWER + b"HTTP/1.1 400 ")
    assert got.endswith(b"request without a Host header\n")  # nothing after it
    assert heads == [one[:-2] + TAIL]


@pytest.mark.parametrize("value", _INVALID_HOSTS)
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
async def test_a_request_with_an_invalid_host_is_refused_with_400(
    mesh: MeshProxy, value: bytes, version: bytes
) -> None:
    data = b"GET / HTTP/" + version + b"\r\nHost:" + value + b"\r\n\r\n"
    got, heads = await _exchange(mesh, data, 0)
    assert got.startswith(b"HTTP/1.1 400 ")
    assert got.endswith(b"a request with an invalid Host header\n")
    assert heads == []


@pytest.mark.parametrize(
    "value", [b"example.com.", b"[::1]:8080", b"10.0.0.1:", b"a-b_c~d.e", b"\tx:80 "]
)
async def test_a_request_with_a_valid_host_is_forwarded_as_it_came(
    mesh: MeshProxy, value: bytes
) -> None:
    head = b"GET / HTTP/1.1\r\nHost:" + value + b"\r\nAccept: */*\r\n\r\n"
    assert PLAIN_REQUEST.fullmatch(head) is not None
    got, heads = await _exchange(mesh, head, 1)
    assert got.endswith(b"ok")
    assert heads == [head[:-2] + TAIL]
