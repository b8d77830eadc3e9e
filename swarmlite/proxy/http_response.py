"""Response heads as the HTTP mesh reads and rewrites them, and the plain-response fast path.

``client_head`` is the final head as the client gets it (hop-by-hop fields of the
backend's connection dropped, keep-alive said for the client's); ``PLAIN_RESPONSE``
recognises the usual whole response that passes unparsed; ``body_length`` reads a
head's framing, so ``http_upstream`` can find where a response ends.
"""

from __future__ import annotations

import re

_HOP_BY_HOP = (b"connection:", b"keep-alive:")
# ``HttpUpstream._left`` when it is not a count of body bytes still to come:
CHUNKED = -1  # the chunk lines tell where the body ends
UNKNOWN = -2  # no final head yet, a body read until close, or a head passed unparsed


def client_head(head: bytes, *, head_only: bool, closing: bool = False) -> tuple[bytes, bool]:
    """The final response head as the client gets it, and whether it may keep alive.

    Only a response whose end the client can see without a close (Content-Length,
    chunked, 204/304, or the answer to HEAD) can keep the client connection open. A
    client that did not ask to keep alive (``closing``) is told ``Connection: close``.
    """
    if closing:
        return _rewritten_head(head, head_only=head_only, closing=True)
    low = head.lower()
    # The common heads, checked in C: the line-by-line rewrite below was the costliest
    # step of a proxied request.
    if b"\r\ntransfer-encoding:" not in low and b"\r\nkeep-alive:" not in low:
        if not (head_only or b"\r\ncontent-length:" in low or head[9:12] in (b"204", b"304")):
            return head, False
        connection = low.count(b"\r\nconnection:")
        if connection == 0:
            return head[:-2] + b"Connection: keep-alive\r\n\r\n", True
        if connection == 1 and b"\r\nconnection: keep-alive\r\n" in low:
            return head, True
    return _rewritten_head(head, head_only=head_only)


# The first of: the head's end (group 1), a Keep-Alive header, or a Connection header
# that says more than keep-alive. One scan of the head, in C.
_HOP_SCAN = re.compile(
    rb"\r\n(?:(\r\n)|keep-alive[ \t]*:|connection[ \t]*:(?![ \t]*keep-alive[ \t]*\r\n))", re.I
)


# A whole kept-alive HTTP/1.1 response in one read (the usual answer): a final status
# that has a body (not 1xx, 204 or 304), one Content-Length, no Transfer-Encoding, no
# hop-by-hop header but ``Connection: keep-alive``. It goes out as it came without a
# parse (the caller checks that the read holds exactly Content-Length bytes of body).
# Possessive repeats only of classes and atomic groups: see ``http_request.PLAIN_REQUEST``.
_OTHER_FIELD = (
    rb"(?>(?!(?i:content-length|transfer-encoding|connection|proxy-connection|keep-alive):)"
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[\t -~\x80-\xff]*+\r\n"
    rb"|(?i:connection:[ \t]*keep-alive[ \t]*)\r\n)*+"
)
PLAIN_RESPONSE = re.compile(
    rb"HTTP/1\.1 (?!1|204|304)[1-9]\d\d [\t -~\x80-\xff]*+\r\n"
    + _OTHER_FIELD
    + rb"(?i:content-length):[ \t]*+(\d{1,15})[ \t]*+\r\n"
    + _OTHER_FIELD
    + rb"\r\n"
)


def hop_free(data: bytes) -> int:
    """The length of the head ``data`` starts with if it has no hop-by-hop header to
    drop, else 0."""
    found = _HOP_SCAN.search(data)
    return found.end() if found is not None and found.group(1) is not None else 0


def body_length(head: bytes, *, head_only: bool) -> int:
    """The body length a final response head announces, ``CHUNKED`` or ``UNKNOWN``
    (read until close). Read as llhttp frames it: it has accepted this head (one
    Content-Length at most, never with Transfer-Encoding)."""
    if head_only or head[9:12] in (b"204", b"304"):
        return 0
    low = head.lower()
    at = low.rfind(b"\r\ntransfer-encoding:")
    if at >= 0:  # chunked only if it is the last coding
        codings = low[at + 20 : low.find(b"\r\n", at + 20)]
        return CHUNKED if codings.rsplit(b",", 1)[-1].strip() == b"chunked" else UNKNOWN
    at = low.find(b"\r\ncontent-length:")
    if at >= 0:
        return int(low[at + 17 : low.find(b"\r\n", at + 17)])
    return UNKNOWN


def _rewritten_head(head: bytes, *, head_only: bool, closing: bool = False) -> tuple[bytes, bool]:
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    code = int(status[1]) if len(status) > 1 and status[1].isdigit() else 0
    delimited = head_only or code in (204, 304)
    kept: list[bytes] = [lines[0]]
    for line in lines[1:]:
        low = line.lower()
        if low.startswith(b"content-length:") or (
            low.startswith(b"transfer-encoding:") and b"chunked" in low
        ):
            delimited = True
        if not low.startswith(_HOP_BY_HOP):
            kept.append(line)
    if closing:
        return b"\r\n".join([*kept[:-2], b"Connection: close", b"", b""]), False
    if not delimited:
        return head, False
    # kept ends with the two empty lines of the head's final CRLFCRLF
    return b"\r\n".join([*kept[:-2], b"Connection: keep-alive", b"", b""]), True
