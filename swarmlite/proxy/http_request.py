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
# body, no Host or two, a pipelined second request, any malformed byte) goes to
# httptools (which refuses a missing or second Host, RFC 9112 3.2). Possessive and
# atomic: a head is scanned once. Keep every ``*+``/``++`` on a character class or an
# atomic group: 3.11 before 3.11.5 (Debian 12 has 3.11.2) mismatches a possessive
# repeat of anything else (CPython gh-106052).
_OTHER_FIELDS = (
    rb"(?>(?!(?i:host|content-length|transfer-encoding|connection|proxy-connection|upgrade"
    rb"|keep-alive|te|expect|x-forwarded-for|x-forwarded-proto):)"
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[\t -~\x80-\xff]*+\r\n"
    rb"|(?i:connection:[ \t]*keep-alive[ \t]*)\r\n)*+"
)
PLAIN_REQUEST = re.compile(
    rb"(GET|HEAD|DELETE|OPTIONS) (?:/[!-~]*+|\*) HTTP/1\.1\r\n"
    + _OTHER_FIELDS
    + rb"(?i:host):[\t -~\x80-\xff]*+\r\n"
    + _OTHER_FIELDS
    + rb"\r\n"
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
