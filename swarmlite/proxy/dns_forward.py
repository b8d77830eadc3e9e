"""Questions about names the cluster does not own, asked of the host's resolvers.

A type ``aiodns`` (c-ares) can ask (A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT, NAPTR,
CAA, ANY) is asked through it, which reads the host's resolv.conf, retries and falls
back to TCP; its records are encoded again with ``dnslib``. Any other type (HTTPS,
SVCB, TLSA, URI, DNSKEY, ...) is relayed as asked, as Docker's embedded DNS relays
every outside name: the question goes (under a fresh random ID) to each of the same
resolvers in turn over the transport it came on, and the first answer that matches
its ID and question goes back under the asker's ID. A UDP answer the resolver cut
(TC) goes back cut, so the asker retries over TCP.

``Forwarder.ask`` returns a ``dnslib`` response to encode, the bytes of a relayed
answer, or an RCODE to fail with: at most ``max_forward`` questions are out at once,
and each gets ``SERVFAIL`` after ``timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import aiodns
import pycares
from dnslib import AAAA, CAA, CNAME, MX, NAPTR, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A

log = logging.getLogger("swarmlite.proxy.dns")

Forwarded = Any | bytes | int  # a dnslib DNSRecord, a relayed answer, or an RCODE


def _rdata(rec: Any) -> Any:
    t, d = rec.type, rec.data
    if t == QTYPE.A:
        return A(d.addr)
    if t == QTYPE.AAAA:
        return AAAA(d.addr)
    if t == QTYPE.CNAME:
        return CNAME(d.cname)
    if t == QTYPE.MX:
        return MX(d.exchange, d.priority)
    if t == QTYPE.NS:
        return NS(d.nsdname)
    if t == QTYPE.PTR:
        return PTR(d.dname)
    if t == QTYPE.SRV:
        return SRV(d.priority, d.weight, d.port, d.target)
    if t == QTYPE.TXT:
        # c-ares joins a record's strings; one DNS string holds at most 255 bytes.
        raw = bytes(d.data)
        return TXT([raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""])
    if t == QTYPE.SOA:
        return SOA(d.mname, d.rname, (d.serial, d.refresh, d.retry, d.expire, d.minimum))
    if t == QTYPE.NAPTR:
        text = (d.flags.encode(), d.service.encode(), d.regexp.encode())
        return NAPTR(d.order, d.preference, *text, d.replacement)
    if t == QTYPE.CAA:
        return CAA(d.critical, d.tag, d.value)
    return None


def _records(recs: Sequence[Any]) -> list[Any]:
    out = []
    for rec in recs:
        rdata = _rdata(rec)
        if rdata is not None:
            out.append(RR(rec.name, rec.type, ttl=rec.ttl, rdata=rdata))
    return out


def question_end(packet: bytes) -> int:
    """Where the first question of a well-formed ``packet`` ends."""
    at = 12
    while packet[at]:
        if packet[at] >= 0xC0:  # a compression pointer ends the name
            return at + 2 + 4
        at += 1 + packet[at]
    return at + 1 + 4  # the root label, QTYPE and QCLASS


def answers(query: bytes, answer: bytes) -> bool:
    """Whether ``answer`` is a response to ``query``: same ID, same question."""
    end = question_end(query)
    return (
        len(answer) >= end
        and answer[:2] == query[:2]
        and answer[2] & 0x80 != 0  # QR: a response
        and answer[12:end].lower() == query[12:end].lower()
    )


class _UdpExchange(asyncio.DatagramProtocol):
    def __init__(self, query: bytes) -> None:
        self.query = query
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done() and answers(self.query, data):
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable, say
        if not self.answer.done():
            self.answer.set_exception(exc)


class Forwarder:
    def __init__(
        self,
        nameservers: Sequence[str] | None,
        port: int | None,
        timeout: float,
        max_forward: int,
    ) -> None:
        self._nameservers = list(nameservers) if nameservers else None
        self._port = port
        self.timeout = timeout
        self.max_forward = max_forward
        self._try_timeout = min(1.0, timeout)
        self._slots = asyncio.Semaphore(max_forward)
        self.pending = 0
        self._resolver: aiodns.DNSResolver | None = None

    def _resolver_now(self) -> aiodns.DNSResolver:
        if self._resolver is None:
            opts: dict[str, Any] = {"timeout": self._try_timeout, "tries": 2}
            if self._port is not None:
                opts["udp_port"] = opts["tcp_port"] = self._port
            self._resolver = aiodns.DNSResolver(nameservers=self._nameservers, **opts)
        return self._resolver

    async def ask(self, request: Any, packet: bytes, udp: bool) -> Forwarded:
        q = request.q
        qtype = QTYPE.get(q.qtype)
        self.pending += 1
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    if qtype not in aiodns.query_type_map:
                        return await self._relay(packet, udp)
                    result = await self._resolver_now().query_dns(str(q.qname), qtype)
        except TimeoutError:
            return int(RCODE.SERVFAIL)
        except aiodns.error.DNSError as err:
            code = err.args[0] if err.args else None
            if code == pycares.errno.ARES_ENOTFOUND:
                return int(RCODE.NXDOMAIN)
            if code == pycares.errno.ARES_ENODATA:
                return int(RCODE.NOERROR)
            return int(RCODE.SERVFAIL)
        finally:
            self.pending -= 1
        response = request.reply()
        try:
            for rr in _records(result.answer):
                response.add_answer(rr)
            for rr in _records(result.authority):
                response.add_auth(rr)
            for rr in _records(result.additional):
                response.add_ar(rr)
        except Exception as err:  # dnslib refuses some names c-ares passes (non-ASCII bytes)
            log.warning("dns answer not encodable name=%s error=%s", q.qname, err)
            return int(RCODE.SERVFAIL)
        return response

    async def _relay(self, packet: bytes, udp: bool) -> bytes | int:
        query = secrets.token_bytes(2) + packet[2:]  # an ID the asker cannot predict
        port = self._port or 53
        for _ in range(2):
            for server in self._resolver_now().nameservers:
                try:
                    async with asyncio.timeout(self._try_timeout):
                        if udp:
                            answer = await self._relay_udp(query, server, port)
                        else:
                            answer = await self._relay_tcp(query, server, port)
                except (OSError, TimeoutError, asyncio.IncompleteReadError):
                    continue
                return packet[:2] + answer[2:]
        return int(RCODE.SERVFAIL)

    @staticmethod
    async def _relay_udp(query: bytes, server: str, port: int) -> bytes:
        loop = asyncio.get_running_loop()
        transport, exchange = await loop.create_datagram_endpoint(
            lambda: _UdpExchange(query), remote_addr=(server, port)
        )
        try:
            transport.sendto(query)
            return await exchange.answer
        finally:
            transport.close()

    @staticmethod
    async def _relay_tcp(query: bytes, server: str, port: int) -> bytes:
        reader, writer = await asyncio.open_connection(server, port)
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            size = int.from_bytes(await reader.readexactly(2), "big")
            answer = await reader.readexactly(size)
        finally:
            writer.close()
        if not answers(query, answer):
            raise OSError("the answer does not match the question")
        return answer

    async def close(self) -> None:
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None
