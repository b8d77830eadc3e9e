"""The service name server: answers cluster names on every stack network's gateway.

``ServiceNameServer.apply(snapshot)`` binds ``GATEWAY:53`` (UDP and TCP) for each
network in the snapshot (with ``IP_FREEBIND``, so before the bridge exists) and
refreshes the name index. A bind that fails is logged and retried on the next apply.

Names a service answers to: ``SERVICE``, ``SERVICE.STACK``, ``STACK_SERVICE`` (and
``tasks.<any of those>`` for the replicas' own addresses). The asker is known by the
query's source address (a replica's address in the snapshot, routed or still starting,
gives its service and networks); an unknown source is taken to be on the network whose
gateway got the query.
An A query is answered with the service's VIP on a network both share (the receiving
network first), or the replicas' addresses there when it has no VIP; no shared
network is NXDOMAIN; other query types for a cluster name get an empty NOERROR. TTL
is 0. An answer of several addresses starts one further along each time it is given
(clients mostly dial the first; Docker shuffles them). Every other name is asked of
the host's resolvers (or the injected ``nameservers``) by ``dns_forward.Forwarder``:
through ``aiodns`` for the types it can ask, relayed as asked for the others, at most
``max_forward`` at a time, ``SERVFAIL`` on timeout or on an answer it cannot encode.

EDNS (RFC 6891): a query with an OPT record gets one in every answer, advertising
``EDNS_PAYLOAD`` bytes and echoing the query's DO bit; a UDP answer is truncated at
the smaller of the asker's payload size and ours (512 without OPT, or below 512). A
query of an EDNS version other than 0 gets ``BADVERS``, one with several OPT records
``FORMERR``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Sequence
from typing import Any, cast

from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from swarmlite.proxy.dns_forward import Forwarder
from swarmlite.proxy.dns_names import NameIndex
from swarmlite.spec.routes import RoutesSnapshot

log = logging.getLogger("swarmlite.proxy.dns")

_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
Reply = Callable[[bytes], None]

# The UDP payload size this server advertises and answers within (DNS Flag Day 2020:
# fits the usual path MTU, so a UDP answer is never fragmented).
EDNS_PAYLOAD = 1232
BADVERS = 16  # an extended RCODE: its high 8 bits travel in the OPT record
_DO = 1 << 15  # the OPT flag "DNSSEC OK", echoed (RFC 3225 3)


def _opts(request: Any) -> list[Any]:
    return [rr for rr in request.ar if rr.rtype == QTYPE.OPT]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: ServiceNameServer, gateway: str) -> None:
        self._server = server
        self._gateway = gateway
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)
        self._transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        transport = self._transport

        def reply(packet: bytes) -> None:
            if transport is not None and not transport.is_closing():
                transport.sendto(packet, addr)

        self._server.handle(data, str(addr[0]), self._gateway, reply, udp=True)


class _Tcp(asyncio.Protocol):
    def __init__(self, server: ServiceNameServer, gateway: str) -> None:
        self._server = server
        self._gateway = gateway
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._source = ""
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._source = str(peer[0]) if peer else ""
        self._server.tcp_clients.add(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.tcp_clients.discard(self._transport)
        if self._idle is not None:
            self._idle.cancel()

    def _arm(self) -> None:
        # An idle connection is closed (RFC 7766 6.2.3): every container may open some,
        # and each held open for good is a file descriptor of the daemon's.
        if self._idle is not None:
            self._idle.cancel()
        transport = self._transport
        if transport is not None:
            self._idle = asyncio.get_running_loop().call_later(
                self._server.tcp_idle_timeout, transport.close
            )

    def data_received(self, data: bytes) -> None:
        self._arm()
        self._buf += data
        while len(self._buf) >= 2:
            size = int.from_bytes(self._buf[:2], "big")
            if len(self._buf) < 2 + size:
                if len(self._buf) > 70000 and self._transport is not None:
                    self._transport.close()
                return
            msg, self._buf = self._buf[2 : 2 + size], self._buf[2 + size :]
            self._server.handle(msg, self._source, self._gateway, self._reply, udp=False)

    def _reply(self, packet: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(len(packet).to_bytes(2, "big") + packet)


class ServiceNameServer:
    def __init__(
        self,
        *,
        port: int = 53,
        nameservers: Sequence[str] | None = None,
        nameserver_port: int | None = None,
        max_forward: int = 200,
        forward_timeout: float = 3.0,
        ttl: int = 0,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        self.port = port
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_clients: set[asyncio.Transport] = set()
        self.ttl = ttl
        self._forwarder = Forwarder(nameservers, nameserver_port, forward_timeout, max_forward)
        self._index = NameIndex(RoutesSnapshot(revision=-1))
        self._turns: dict[str, int] = {}  # name -> rotation of its next several-address answer
        self._bound: dict[str, tuple[asyncio.DatagramTransport, asyncio.Server]] = {}
        self._errors: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Nothing to open before the first ``apply``: gateways come with snapshots."""

    async def apply(self, snapshot: RoutesSnapshot) -> str:
        """Refresh names and bind/unbind gateways; returns what was decided."""
        self._index = NameIndex(snapshot)
        self._turns = {}
        wanted = {n.gateway: n.name for n in snapshot.networks if n.gateway}
        closed = opened = 0
        for gw in list(self._bound):
            if gw not in wanted:
                udp, tcp = self._bound.pop(gw)
                udp.close()
                tcp.close()
                closed += 1
        self._errors = {}
        for gw, net in wanted.items():
            if gw in self._bound:
                continue
            try:
                self._bound[gw] = await self._bind(gw)
                opened += 1
                log.info("dns listening network=%s address=%s port=%d", net, gw, self.port)
            except OSError as err:
                self._errors[gw] = str(err)
                log.warning(
                    "dns bind failed network=%s address=%s port=%d error=%s",
                    net,
                    gw,
                    self.port,
                    err,
                )
        return (
            f"revision={snapshot.revision} gateways={len(self._bound)} opened={opened} "
            f"closed={closed} errors={len(self._errors)}"
        )

    def _socket(self, gateway: str, kind: socket.SocketKind) -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
            sock.bind((gateway, self.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def _bind(self, gateway: str) -> tuple[asyncio.DatagramTransport, asyncio.Server]:
        loop = asyncio.get_running_loop()
        udp_sock = self._socket(gateway, socket.SOCK_DGRAM)
        try:
            tcp_sock = self._socket(gateway, socket.SOCK_STREAM)
        except OSError:
            udp_sock.close()
            raise
        udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self, gateway), sock=udp_sock)
        tcp = await loop.create_server(lambda: _Tcp(self, gateway), sock=tcp_sock)
        return udp, tcp

    def listening(self) -> list[tuple[str, int]]:
        return sorted((gw, self.port) for gw in self._bound)

    def bind_errors(self) -> dict[str, str]:
        return dict(self._errors)

    # -- answering ----------------------------------------------------------------
    def handle(self, packet: bytes, source: str, gateway: str, reply: Reply, udp: bool) -> None:
        try:
            request = DNSRecord.parse(packet)
        except Exception:  # dnslib raises several types for garbage
            return
        if not request.questions:
            return
        opts = _opts(request)
        if len(opts) > 1:  # RFC 6891 6.1.1
            reply(self._fail(request, RCODE.FORMERR, udp))
            return
        if opts and (opts[0].ttl >> 16) & 0xFF != 0:  # only EDNS version 0 is spoken
            reply(self._fail(request, BADVERS, udp))
            return
        q = request.q
        try:
            addrs = self._index.lookup(str(q.qname), source, gateway)
        except LookupError:
            response = request.reply()
            response.header.rcode = RCODE.NXDOMAIN
            reply(self._pack(response, request, udp))
            return
        if addrs is not None:
            if len(addrs) > 1 and q.qtype in (QTYPE.A, QTYPE.ANY):
                key = str(q.qname).rstrip(".").lower()
                turn = self._turns.get(key, 0) % len(addrs)
                self._turns[key] = turn + 1
                addrs = addrs[turn:] + addrs[:turn]
            response = request.reply()
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                for addr in addrs:
                    response.add_answer(RR(q.qname, QTYPE.A, ttl=self.ttl, rdata=A(addr)))
            reply(self._pack(response, request, udp))
            return
        forwarder = self._forwarder
        if forwarder.pending >= forwarder.max_forward * 4:
            reply(self._fail(request, RCODE.SERVFAIL, udp))
            return
        task = asyncio.get_running_loop().create_task(self._forward(request, packet, reply, udp))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pack(self, response: Any, request: Any, udp: bool, rcode_ext: int = 0) -> bytes:
        """``response`` as sent: with an OPT record when the request had one (carrying
        ``rcode_ext``, the high 8 bits of an extended RCODE), cut to fit over UDP."""
        opts = _opts(request)
        limit = 512
        opt = None
        if len(opts) == 1:
            limit = max(512, min(int(opts[0].rclass), EDNS_PAYLOAD))
            do = "do" if opts[0].ttl & _DO else ""
            opt = EDNS0(udp_len=EDNS_PAYLOAD, ext_rcode=rcode_ext, flags=do)
            response.add_ar(opt)
        data: bytes = response.pack()
        if udp and len(data) > limit:
            # TC set, with the question and the answers that fit, as Docker's resolver
            # does: most clients ask again over TCP, but musl's (Alpine) before 1.2.4
            # uses what it got. (dnslib's truncate() drops the question too, and
            # resolvers discard such a reply.)
            fits, over = 0, len(response.rr)
            while fits < over:  # the most answers that fit, by bisection
                mid = (fits + over + 1) // 2
                if len(self._cut(response, request, mid, opt).pack()) <= limit:
                    fits = mid
                else:
                    over = mid - 1
            data = self._cut(response, request, fits, opt).pack()
        return data

    @staticmethod
    def _cut(response: Any, request: Any, answers: int, opt: Any) -> Any:
        cut = request.reply()
        cut.header.tc = 1
        cut.header.rcode = response.header.rcode
        for rr in response.rr[:answers]:
            cut.add_answer(rr)
        if opt is not None:  # RFC 6891 7: a truncated answer keeps its OPT record
            cut.add_ar(opt)
        return cut

    def _fail(self, request: Any, rcode: int, udp: bool) -> bytes:
        response = request.reply()
        response.header.rcode = rcode & 0xF
        return self._pack(response, request, udp, rcode_ext=rcode >> 4)

    async def _forward(self, request: Any, packet: bytes, reply: Reply, udp: bool) -> None:
        got = await self._forwarder.ask(request, packet, udp)
        if isinstance(got, bytes):  # relayed as the resolver answered
            reply(got)
            return
        if isinstance(got, int):
            reply(self._fail(request, got, udp))
            return
        try:
            answer = self._pack(got, request, udp)
        except Exception as err:  # dnslib packs a name only now: it may refuse it here
            log.warning("dns answer not encodable name=%s error=%s", request.q.qname, err)
            answer = self._fail(request, RCODE.SERVFAIL, udp)
        reply(answer)

    async def stop(self, grace: float = 1.0) -> None:
        for udp, tcp in self._bound.values():
            udp.close()
            tcp.close()
        self._bound.clear()
        for client in list(self.tcp_clients):  # a closed server leaves these open
            client.close()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
        await self._forwarder.close()
