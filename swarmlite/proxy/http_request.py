"""A client's request as the L7 mesh holds it, and the plain-request fast path.

``PLAIN_REQUEST`` recognises the usual request (see its comment); anything else is
parsed by ``httptools`` in ``http.HttpProxyConnection``.
"""

from __future__ import annotations

import re

# A request head split over reads is refused (431) once its reads past the first one
# exceed this; one read (at most 256 KiB with uvloop) bounds the rest.
MAX_REQUEST_HEAD = 64 * 1024

# The usual request, whole in one read: an HTTP/1.1 head with exactly one Host, no body
# and no header the proxy acts on (framing, upgrade, X-Forwarded-*; ``Connection:
# keep-alive`` only, which changes nothing), to an origin-form target or ``*``. It goes
# out as it came plus X-Forwarded-For, with no parser callback: they cost more of the
# proxy's CPU than the rest of the request's Python. Anything else (another version, a
# body, no Host or two or an invalid one, a pipelined second request, any malformed
# byte) goes to httptools (and a missing, second or invalid Host is refused there). Possessive and
# atomic: a head is scanned once. Keep every ``*+``/``++`` on a character class or an
# atomic group: 3.11 before 3.11.5 (Debian 12 has 3.11.2) mismatches a possessive
# repeat of anything else (CPython gh-106052).
_OTHER_FIELDS = (
    rb"(?>(?!(?i:host|content-length|transfer-encoding|connection|proxy-connection|upgrade"
    rb"|keep-alive|te|expect|x-forwarded-for|x-forwarded-proto):)"
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[\t -~\x80-\xff]*+\r\n"
    rb"|(?i:connection:[ \t]*keep-alive[ \t]*)\r\n)*+"
)
# A Host value the proxy forwards: uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2),
# a reg-name without ".." (nginx: "client sent invalid host header"; a backend may map
# hosts to paths) or an IP literal. Anything else (empty, a space, "/") gets 400.
_REG_NAME = rb"[A-Za-z0-9\-_~!$&'()*+,;=%]"
_HOST_VALUE = (
    rb"(?>\.?" + _REG_NAME + rb"++(?>(?:\." + _REG_NAME + rb"++)*)\.?"
    rb"|\[[A-Za-z0-9:._~%!$&'()*+,;=\-]++\])(?::[0-9]*+)?"
)
VALID_HOST = re.compile(_HOST_VALUE)
PLAIN_REQUEST = re.compile(
    rb"(GET|HEAD|DELETE|OPTIONS) (?:/[!-~]*+|\*) HTTP/1\.1\r\n"
    + _OTHER_FIELDS
    + rb"(?i:host):[ \t]*+"
    + _HOST_VALUE
    + rb"[ \t]*+\r\n"
    + _OTHER_FIELDS
    + rb"\r\n"
)


# First letters (lower case) of the request fields the proxy acts on: Host, framing,
# X-Forwarded-*, and the hop-by-hop fields it drops (each connection has its own).
LOOK = frozenset(b"chkptux")
_HOP_BY_HOP = frozenset((b"connection", b"proxy-connection", b"keep-alive", b"te", b"upgrade"))
# Never dropped for being named in Connection: what frames the request or routes it.
_NEVER_NAMED = frozenset(
    (b"", b"close", b"keep-alive", b"upgrade", b"content-length", b"transfer-encoding", b"host")
)


class Request:
    """One request of a client connection. The defaults are class attributes, so a
    request without a body costs few stores."""

    method = b""
    head: bytes | None = None  # the head as forwarded, once parsed
    forwarded = b""  # the client's X-Forwarded-For values, each with ", "
    buffered = 0
    chunked = False
    transfer_encoding = False
    hosts = 0  # Host header lines
    bad_host = False  # a Host value that is not uri-host[:port]
    upgrade_to = b""  # the client's Upgrade value, sent on only with an upgrade
    hop: set[bytes] | None = None  # fields named in the client's Connection header
    complete = False
    keep_alive = True
    upgrade = False
    body_sent = False
    retried = False

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[bytes] = []  # the forwarded header lines' pieces
        self.chunks: list[bytes] = []

    def take_header(self, name: bytes, value: bytes) -> None:
        """A field whose name starts with a ``LOOK`` letter: kept, or acted on."""
        low = name.lower()
        if low == b"x-forwarded-for":
            self.forwarded += value + b", "
            return
        if low == b"x-forwarded-proto":
            return
        if low == b"host":
            self.hosts += 1
            if VALID_HOST.fullmatch(value.strip(b" \t")) is None:
                self.bad_host = True
        elif low == b"transfer-encoding":
            self.transfer_encoding = True
            if b"chunked" in value.lower():
                self.chunked = True
        elif low in _HOP_BY_HOP:  # this connection's, not the backend's (RFC 9110 7.6.1)
            if low == b"upgrade":
                self.upgrade_to = value
            elif low != b"keep-alive" and low != b"te":  # (proxy-)connection
                named = {o.strip() for o in value.lower().split(b",")} - _NEVER_NAMED
                if named:
                    self.hop = named if self.hop is None else self.hop | named
            return
        self.headers += (name, b": ", value, b"\r\n")

    def check(self, version: str) -> None:
        """Raise ``Refused`` for a head the proxy must not forward."""
        if self.hosts != 1 and (self.hosts or version > "1.0"):
            # RFC 9112 3.2, as nginx: which host is meant would be the backend's guess.
            raise Refused(
                f"an HTTP/{version} request without a Host header"
                if not self.hosts
                else "a request with more than one Host header"
            )
        if self.bad_host:
            raise Refused("a request with an invalid Host header")
        if self.transfer_encoding and version == "1.0":
            # RFC 9112 6.1: framing an HTTP/1.0 backend may read otherwise (by a
            # Content-Length, or as no body and the chunks as the next request). nginx
            # refuses it too.
            raise Refused("an HTTP/1.0 request with Transfer-Encoding")

    def forwarded_head(self, version: str, upgrade: bool, forwarded_tail: bytes) -> bytes:
        """The head as the backend gets it; ``forwarded_tail`` ends it (the client's
        address for X-Forwarded-For, then X-Forwarded-Proto)."""
        headers = self.headers
        self.headers = []
        if self.hop is not None:  # fields the client's Connection named: hop-by-hop too
            hop = self.hop
            headers = [
                piece
                for i in range(0, len(headers), 4)
                if headers[i].lower() not in hop
                for piece in headers[i : i + 4]
            ]
        # The proxy's own connection options toward the backend: an upgrade it asks
        # for, or keep-alive for HTTP/1.0 (HTTP/1.1 keeps alive without a word).
        if upgrade and self.upgrade_to:
            headers += (b"Upgrade: ", self.upgrade_to, b"\r\nConnection: upgrade\r\n")
        elif version == "1.0" and self.keep_alive:
            headers.append(b"Connection: keep-alive\r\n")
        return b"".join(
            (
                self.method,
                b" ",
                self.url,
                b" HTTP/1.1\r\n" if version == "1.1" else f" HTTP/{version}\r\n".encode(),
                *headers,
                b"X-Forwarded-For: ",
                self.forwarded,
                forwarded_tail,
            )
        )


# What a connection "is parsing" between requests: complete, shared, never written to
# (the parser's first callback of a request puts a new Request in its place).
BOUNDARY = Request()
BOUNDARY.complete = True


class Refused(Exception):
    """Raised by a parser callback: the request is answered ``400`` with this text and
    never forwarded (the parser stops at it)."""


def error_response(status: str, text: str) -> bytes:
    body = text.encode() + b"\n"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
