"""``client_head``: client keep-alive does not follow a backend that closes."""

from __future__ import annotations

from swarmlite.proxy.http_response import client_head


def test_length_delimited_response_from_a_closing_backend_keeps_the_client() -> None:
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n"
    out, keep = client_head(head, head_only=False)
    assert keep
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n"


def test_chunked_and_bodiless_responses_keep_the_client() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n"
    assert client_head(chunked, head_only=False) == (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
        True,
    )
    assert client_head(b"HTTP/1.1 304 Not Modified\r\n\r\n", head_only=False)[1]
    assert client_head(b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n", head_only=True)[1]


def test_a_body_ended_by_close_is_passed_on_unchanged() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    assert client_head(head, head_only=False) == (head, False)


def test_a_kept_alive_length_delimited_head_is_passed_on_as_is() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n"
    )
    out, keep = client_head(head, head_only=False)
    assert keep
    assert out is head  # nothing to rewrite: no copy


def test_a_head_without_connection_header_gets_keep_alive() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    assert client_head(head, head_only=False) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nConnection: keep-alive\r\n\r\n",
        True,
    )


def test_other_connection_options_of_the_backend_are_dropped() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, x-hop\r\n\r\n"
    assert client_head(head, head_only=False) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
        True,
    )
