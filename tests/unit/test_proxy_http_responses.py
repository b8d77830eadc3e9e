"""How backend responses reach the client through the L7 mesh, byte by byte.

A scripted backend answers each request with fixed bytes, written in the pieces the
test chooses, so the response parser sees heads split across reads, interim heads,
hop-by-hop headers and malformed answers.
"""

from __future__ import annotations

import asyncio

import pytest

from swarmlite.proxy.http_response import PLAIN_RESPONSE, hop_free
from swarmlite.proxy.mesh import MeshProxy
from tests.unit.test_proxy_support import BACKEND_IPS, backend, free_port, route, snapshot

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class ScriptedBackend:
    """Answers every request with ``pieces`` (written with a pause between them)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.requests = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await r.readuntil(b"\r\n\r\n")
                self.requests += 1
                for piece in self.pieces:
                    w.write(piece)
                    await w.drain()
                    await asyncio.sleep(0.02)  # the proxy reads each piece on its own
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()


async def _through(mesh: MeshProxy, pieces: list[bytes]) -> tuple[ScriptedBackend, int]:
    script = ScriptedBackend(pieces)
    script.server = await asyncio.start_server(script.serve, BACKEND_IPS[0], 0)
    port = script.server.sockets[0].getsockname()[1]
    listen = free_port()
    svc = route(
        "web", published=listen, target=port, http=True, backends=(backend("s", BACKEND_IPS[0]),)
    )
    await mesh.apply(snapshot(svc))
    return script, listen


async def _exchange(listen: int, times: int) -> bytes:
    """``times`` requests, one after the other, on one client connection."""
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    got = b""
    try:
        for _ in range(times):
            w.write(REQUEST)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            while head.startswith(b"HTTP/1.1 1"):  # an interim head: the final one follows
                got += head
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            got += head + await asyncio.wait_for(r.readexactly(length), 5)
    finally:
        w.close()
    return got


async def test_a_kept_alive_answer_passes_unchanged_over_one_upstream(mesh: MeshProxy) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    script, listen = await _through(mesh, [answer])
    assert await _exchange(listen, 3) == answer * 3
    assert (script.requests, script.connections) == (3, 1)


async def test_hop_by_hop_headers_of_a_kept_alive_backend_are_dropped(mesh: MeshProxy) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 2\r\n"
        b"Connection: Keep-Alive, X-Hop\r\n\r\nok"
    )
    script, listen = await _through(mesh, [answer])
    got = await _exchange(listen, 2)
    assert got == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok" * 2
    assert script.connections == 1


async def test_a_head_split_across_reads_and_its_body_arrive_whole(mesh: MeshProxy) -> None:
    pieces = [b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\n\r\nab", b"cde"]
    script, listen = await _through(mesh, pieces)
    got = await _exchange(listen, 2)
    assert got == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nabcde" * 2
    assert script.connections == 1


async def test_an_interim_head_in_the_same_read_goes_before_the_final_one(
    mesh: MeshProxy,
) -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    )
    script, listen = await _through(mesh, [answer])
    assert await _exchange(listen, 2) == answer * 2
    assert script.connections == 1


async def test_a_closing_backend_still_leaves_the_client_kept_alive(mesh: MeshProxy) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    script, listen = await _through(mesh, [answer])
    got = await _exchange(listen, 2)
    assert got == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok" * 2
    assert script.connections == 2  # the mesh does not reuse what the backend closes


async def test_a_malformed_answer_cuts_the_client_and_is_not_retried(mesh: MeshProxy) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    script, listen = await _through(mesh, [answer])
    assert await _exchange(listen, 1) == answer  # the upstream is now pooled, reused next
    script.pieces = [b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    w.write(REQUEST)
    data = await asyncio.wait_for(r.read(), 5)  # EOF: the mesh closed the client
    w.close()
    assert b"502" not in data
    assert script.requests == 2  # a reused upstream that answered is not asked again


def test_hop_free_heads() -> None:
    assert hop_free(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert hop_free(b"HTTP/1.1 200 OK\r\nconnection:  keep-alive \r\n\r\nConnection: x")
    assert not hop_free(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x\r\n\r\n")
    assert not hop_free(b"HTTP/1.1 200 OK\r\nKEEP-ALIVE: timeout=5\r\n\r\n")
    assert not hop_free(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    assert not hop_free(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")  # no end of head


@pytest.mark.parametrize(
    ("data", "length"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 2),
        (b"HTTP/1.1 404 Not Found\r\nServer: x\r\ncontent-length:0\r\nDate: d\r\n\r\n", 0),
        (b"HTTP/1.1 200 OK\r\nCONNECTION: Keep-Alive\r\nContent-Length: 3\r\n\r\nabc", 3),
        (b"HTTP/1.1 500 \r\nContent-Length: 1\r\nTe-Thing: x\r\n\r\nx", 1),
    ],
)
def test_plain_responses_pass_without_a_parse(data: bytes, length: int) -> None:
    found = PLAIN_RESPONSE.match(data)
    assert found is not None and int(found[1]) == length
    assert len(data) - found.end() == length


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",  # another version
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok",
        b"HTTP/1.1 205 \r\nProxy-Connection: close\r\ncontent-length: 5\r\n\r\nxxxxx",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, x\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",  # space before the colon
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\nok",  # bare LF
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 2\r\n\r\nok",  # folding
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nok",  # read until close
    ],
)
def test_responses_the_parser_must_see_do_not_match(data: bytes) -> None:
    assert PLAIN_RESPONSE.match(data) is None


async def test_a_client_asking_to_close_is_told_close_not_keep_alive(mesh: MeshProxy) -> None:
    # RFC 9112 9.6: the answer to "Connection: close" should say close; the mesh
    # rewrote the backend's close to keep-alive, then closed the connection anyway.
    for answer in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ):
        script, listen = await _through(mesh, [answer])
        for request in (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        ):
            r, w = await asyncio.open_connection("127.0.0.1", listen)
            w.write(request)
            got = await asyncio.wait_for(r.read(), 5)  # until the mesh closes
            w.close()
            assert got == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        assert script.server is not None
        script.server.close()


async def _answers(listen: int, request: bytes, size: int, times: int) -> list[bytes]:
    """``times`` requests on one client connection, each answer read as ``size`` bytes,
    then all the mesh sends after the client's half-close (nothing, if it kept to the
    answers: one byte more shifts the next answer)."""
    r, w = await asyncio.open_connection("127.0.0.1", listen)
    got = []
    try:
        for _ in range(times):
            w.write(request)
            got.append(await asyncio.wait_for(r.readexactly(size), 5))
        w.write_eof()
        got.append(await asyncio.wait_for(r.read(), 5))
    finally:
        w.close()
    return got


CL_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
CHUNKED_ANSWER = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("pieces", "answer"),
    [
        ([CL_ANSWER + b"garbage"], CL_ANSWER),
        ([CL_ANSWER + CL_ANSWER], CL_ANSWER),  # a second response nobody asked for
        ([CL_ANSWER + b"\r\n"], CL_ANSWER),  # the parser skips it: the mesh must not
        ([CL_ANSWER[:-2], b"o", b"kgarbage"], CL_ANSWER),  # the body over three reads
        ([CHUNKED_ANSWER + b"HTTP/1.1 200 OK\r\n\r\n"], CHUNKED_ANSWER),
        ([CHUNKED_ANSWER + b"\r\n\r\n"], CHUNKED_ANSWER),
        (
            [CHUNKED_ANSWER[:-11], b"\r\no", b"k\r\n0\r", b"\n\r", b"\nx"],
            CHUNKED_ANSWER,  # chunk lines, data and the end split across reads
        ),
        (
            [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nab\n\r\n0\r\n"
                b"T: 1\r\n\r\nHTTP/1.1 200 OK"
            ],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nab\n\r\n0\r\n"
            b"T: 1\r\n\r\n",  # a chunk extension, a LF in the data, a trailer
        ),
        (
            [b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\nstray body"],
            b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n",
        ),
        (
            [b"HTTP/1.1 100 Continue\r\n\r\n" + CL_ANSWER + b"x"],
            b"HTTP/1.1 100 Continue\r\n\r\n" + CL_ANSWER,
        ),
    ],
)
async def test_bytes_after_a_response_are_dropped_and_its_upstream_closed(
    mesh: MeshProxy, pieces: list[bytes], answer: bytes
) -> None:
    # nginx: "upstream sent more data than specified"; the client must not take the
    # extra bytes for the answer to its next request, nor may the next request's
    # upstream still hold them. The client stays kept alive.
    script, listen = await _through(mesh, pieces)
    assert await _answers(listen, REQUEST, len(answer), 3) == [answer] * 3 + [b""]
    assert (script.requests, script.connections) == (3, 3)  # none pooled


async def test_a_body_sent_to_head_is_dropped_and_its_upstream_closed(mesh: MeshProxy) -> None:
    script, listen = await _through(mesh, [CL_ANSWER])
    head = CL_ANSWER[:-2]
    got = await _answers(listen, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", len(head), 2)
    assert got == [head, head, b""]
    assert script.connections == 2


async def test_a_response_that_ends_its_read_keeps_its_upstream(mesh: MeshProxy) -> None:
    # The counterpart: the end follows, so whole answers still reuse the upstream.
    for pieces, answer in (
        ([CL_ANSWER[:-1], CL_ANSWER[-1:]], CL_ANSWER),
        ([CHUNKED_ANSWER[:-3], CHUNKED_ANSWER[-3:]], CHUNKED_ANSWER),
        ([CHUNKED_ANSWER], CHUNKED_ANSWER),
    ):
        script, listen = await _through(mesh, pieces)
        assert await _answers(listen, REQUEST, len(answer), 3) == [answer] * 3 + [b""]
        assert (script.requests, script.connections) == (3, 1)
        assert script.server is not None
        script.server.close()
