"""The service name server on loopback: 127.0.0.x addresses play gateways and containers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dnslib import CAA, CNAME, EDNS0, NAPTR, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord

from swarmlite.proxy.dns import BADVERS, EDNS_PAYLOAD, NameIndex, ServiceNameServer
from swarmlite.spec.routes import Backend, RoutesSnapshot
from tests.unit.test_proxy_support import network, route, snapshot

FRONT_GW, BACK_GW = "127.0.0.53", "127.0.0.54"
WEB_IP, API_FRONT_IP, API_BACK_IP, DB_IP = "127.0.0.21", "127.0.0.31", "127.0.0.32", "127.0.0.41"
STRANGER = "127.0.0.99"
UPSTREAM = "127.0.0.77"


def _snapshot() -> RoutesSnapshot:
    web = route(
        "web",
        networks=("st_front",),
        endpoints={"st_front": "10.0.1.10"},
        backends=(Backend(task_id="w1", node_id="n1", addresses={"st_front": WEB_IP}),),
    )
    api = route(
        "api",
        networks=("st_front", "st_back"),
        endpoints={"st_front": "10.0.1.11", "st_back": "10.0.2.11"},
        backends=(
            Backend(
                task_id="a1",
                node_id="n1",
                addresses={"st_front": API_FRONT_IP, "st_back": API_BACK_IP},
            ),
        ),
    )
    db = route(
        "db",
        networks=("st_back",),
        endpoints={"st_back": "10.0.2.12"},
        backends=(Backend(task_id="d1", node_id="n2", addresses={"st_back": DB_IP}),),
    )
    nets = (network("st_front", FRONT_GW), network("st_back", BACK_GW))
    return snapshot(web, api, db, networks=nets)


def _free_dns_port() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((FRONT_GW, 0))
            port = int(s.getsockname()[1])
        try:
            for host in (FRONT_GW, BACK_GW):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    with socket.socket(socket.AF_INET, kind) as t:
                        t.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port")


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def query(
    name: str, source: str, server: str, port: int, qtype: str = "A", *, edns: RR | None = None
) -> DNSRecord:
    """Asked over UDP; with ``edns``, the question carries that OPT record."""
    question = DNSRecord.question(name, qtype)
    if edns is not None:
        question.add_ar(edns)
    return await query_packet(question, source, server, port)


async def query_packet(question: DNSRecord, source: str, server: str, port: int) -> DNSRecord:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Client, local_addr=(source, 0), remote_addr=(server, port)
    )
    try:
        transport.sendto(question.pack())
        return DNSRecord.parse(await asyncio.wait_for(proto.answer, 5))
    finally:
        transport.close()


async def query_tcp(
    r: asyncio.StreamReader, w: asyncio.StreamWriter, question: DNSRecord
) -> DNSRecord:
    """Asked over the TCP connection ``r``/``w``, each message behind its 2-byte length."""
    packet = question.pack()
    w.write(len(packet).to_bytes(2, "big") + packet)
    size = int.from_bytes(await asyncio.wait_for(r.readexactly(2), 5), "big")
    return DNSRecord.parse(await r.readexactly(size))


def _ips(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    """A tiny authoritative upstream on 127.0.0.77 for names outside the cluster."""

    class Up(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            req = DNSRecord.parse(data)
            reply = req.reply()
            name = str(req.q.qname)
            if name == "outside.example." and req.q.qtype == QTYPE.A:
                reply.add_answer(RR(name, QTYPE.A, rdata=A("203.0.113.7"), ttl=60))
            elif name == "many.example.":  # too big for a plain 512-byte UDP answer
                for i in range(60):
                    reply.add_answer(RR(name, QTYPE.A, rdata=A(f"203.0.113.{i}"), ttl=60))
            elif name == "long.example.":  # a TXT record of two strings, 400 bytes
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT([b"a" * 200, b"b" * 200])))
            elif name == "odd.example.":  # a CNAME target with bytes outside ASCII
                odd = CNAME(DNSLabel([b"\x80\x81", b"example"]))
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=odd, ttl=60))
            elif name == "sip.example." and req.q.qtype == QTYPE.NAPTR:
                naptr = NAPTR(10, 100, b"S", b"SIP+D2U", b"", "_sip._udp.sip.example")
                reply.add_answer(RR(name, QTYPE.NAPTR, rdata=naptr, ttl=60))
            elif name == "sip.example." and req.q.qtype == QTYPE.CAA:
                caa = CAA(0, "issue", "ca.example")
                reply.add_answer(RR(name, QTYPE.CAA, rdata=caa, ttl=60))
            elif name != "outside.example.":
                reply.header.rcode = RCODE.NXDOMAIN
            if name == "spoof.example.":  # a forged answer first: wrong ID, right question
                forged = DNSRecord.parse(reply.pack())
                forged.header.id = (req.header.id + 1) % 65536
                self.t.sendto(forged.pack(), addr)
            self.t.sendto(_relayed_answer(req, reply, udp=True), addr)

    async def over_tcp(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        size = int.from_bytes(await r.readexactly(2), "big")
        req = DNSRecord.parse(await r.readexactly(size))
        answer = _relayed_answer(req, req.reply(), udp=False)
        w.write(len(answer).to_bytes(2, "big") + answer)
        await w.drain()
        w.close()

    loop = asyncio.get_running_loop()
    tcp = await asyncio.start_server(over_tcp, UPSTREAM, 0)
    port = int(tcp.sockets[0].getsockname()[1])
    transport, _ = await loop.create_datagram_endpoint(Up, local_addr=(UPSTREAM, port))
    yield port
    transport.close()
    tcp.close()


UPSTREAM_IDS: list[int] = []  # the IDs the upstream saw on relayed questions
HTTPS_RR = "svc.example. 60 IN HTTPS 1 . alpn=h2,h3 port=8443"
TLSA_RR = "_443._tcp.dane.example. 60 IN TLSA 3 1 1 " + "ab" * 32


def _relayed_answer(req: DNSRecord, reply: DNSRecord, udp: bool) -> bytes:
    """Types the forwarder relays raw: HTTPS and TLSA records, 40 of them for big."""
    name, qtype = str(req.q.qname), req.q.qtype
    if qtype in (QTYPE.HTTPS, QTYPE.TLSA):
        UPSTREAM_IDS.append(req.header.id)
        reply.header.rcode = RCODE.NOERROR
        if name in ("svc.example.", "spoof.example."):
            reply.add_answer(*RR.fromZone(HTTPS_RR.replace("svc.example.", name)))
        elif name == "_443._tcp.dane.example.":
            reply.add_answer(*RR.fromZone(TLSA_RR))
        elif name == "big.example.":
            for i in range(40):
                reply.add_answer(*RR.fromZone(f"big.example. 60 IN HTTPS {i + 1} . port={i}"))
            if udp and len(reply.pack()) > 512:  # no OPT asked: cut, as a resolver does
                cut = req.reply()
                cut.header.tc = 1
                return bytes(cut.pack())
        else:
            reply.header.rcode = RCODE.NXDOMAIN
    return bytes(reply.pack())


@pytest.fixture
async def dns(upstream: int) -> AsyncIterator[tuple[ServiceNameServer, int]]:
    port = _free_dns_port()
    server = ServiceNameServer(port=port, nameservers=[UPSTREAM], nameserver_port=upstream)
    await server.start()
    decision = await server.apply(_snapshot())
    assert "gateways=2" in decision and "errors=0" in decision
    yield server, port
    await server.stop()


async def test_answers_vip_on_a_shared_network(dns: tuple[ServiceNameServer, int]) -> None:
    _, port = dns
    for name in ("api", "api.st", "st_api", "API.st."):
        assert _ips(await query(name, WEB_IP, FRONT_GW, port)) == ["10.0.1.11"]
    reply = await query("api", WEB_IP, FRONT_GW, port)
    assert reply.rr[0].ttl == 0
    # db is on st_back only, which the api replica shares with it
    assert _ips(await query("db", API_FRONT_IP, FRONT_GW, port)) == ["10.0.2.12"]
    assert _ips(await query("api", DB_IP, BACK_GW, port)) == ["10.0.2.11"]


async def test_service_on_no_shared_network_is_nxdomain(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    assert (await query("db", WEB_IP, FRONT_GW, port)).header.rcode == RCODE.NXDOMAIN
    assert (await query("web", DB_IP, BACK_GW, port)).header.rcode == RCODE.NXDOMAIN


async def test_unknown_source_uses_the_receiving_network(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    assert _ips(await query("db", STRANGER, BACK_GW, port)) == ["10.0.2.12"]
    assert (await query("db", STRANGER, FRONT_GW, port)).header.rcode == RCODE.NXDOMAIN
    assert _ips(await query("api", STRANGER, BACK_GW, port)) == ["10.0.2.11"]


async def test_aaaa_for_cluster_name_is_empty_noerror_and_tasks_lists_replicas(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    reply = await query("api", WEB_IP, FRONT_GW, port, qtype="AAAA")
    assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])
    assert _ips(await query("tasks.api", WEB_IP, FRONT_GW, port)) == [API_FRONT_IP]


async def test_tcp_query(dns: tuple[ServiceNameServer, int]) -> None:
    _, port = dns
    r, w = await asyncio.open_connection(FRONT_GW, port, local_addr=(WEB_IP, 0))
    reply = await query_tcp(r, w, DNSRecord.question("web"))
    w.close()
    assert _ips(reply) == ["10.0.1.10"]


async def test_outside_names_are_forwarded(dns: tuple[ServiceNameServer, int]) -> None:
    _, port = dns
    assert _ips(await query("outside.example", WEB_IP, FRONT_GW, port)) == ["203.0.113.7"]
    nx = await query("nowhere.example", WEB_IP, FRONT_GW, port)
    assert nx.header.rcode == RCODE.NXDOMAIN


async def test_an_answer_too_big_for_udp_is_truncated_with_its_question(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    reply = await query("many.example", WEB_IP, FRONT_GW, port)
    # A resolver matches the question before it retries over TCP: it must be there.
    assert reply.header.tc == 1
    assert [str(q.qname) for q in reply.questions] == ["many.example."]
    # musl (Alpine) before 1.2.4 never retries over TCP: it uses the answers that fit.
    assert len(reply.pack()) <= 512
    assert 20 < len(reply.rr) < 60
    assert {str(rr.rdata) for rr in reply.rr} <= {f"203.0.113.{i}" for i in range(60)}


async def test_a_forwarded_txt_record_over_255_bytes_is_answered(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    reply = await query("long.example", WEB_IP, FRONT_GW, port, qtype="TXT")
    assert reply.header.rcode == RCODE.NOERROR
    assert b"".join(reply.rr[0].rdata.data) == b"a" * 200 + b"b" * 200


async def test_forwarded_naptr_and_caa_records_are_answered(
    dns: tuple[ServiceNameServer, int],
) -> None:
    # They were dropped: an empty NOERROR said the name had none (SIP clients use NAPTR).
    _, port = dns
    naptr = await query("sip.example", WEB_IP, FRONT_GW, port, qtype="NAPTR")
    assert [(rr.rtype, str(rr.rdata)) for rr in naptr.rr] == [
        (QTYPE.NAPTR, '10 100 "S" "SIP+D2U" "" _sip._udp.sip.example.')
    ]
    caa = await query("sip.example", WEB_IP, FRONT_GW, port, qtype="CAA")
    assert [(rr.rtype, str(rr.rdata)) for rr in caa.rr] == [(QTYPE.CAA, '0 issue "ca.example"')]


async def test_a_forwarded_answer_it_cannot_encode_gets_servfail_not_silence(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    reply = await query("odd.example", WEB_IP, FRONT_GW, port)
    assert reply.header.rcode == RCODE.SERVFAIL


@pytest.mark.parametrize("qtype", ["A", "HTTPS"])  # through aiodns, and relayed
async def test_silent_upstream_gives_servfail_within_timeout(qtype: str) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((UPSTREAM, 0))
    port = _free_dns_port()
    server = ServiceNameServer(
        port=port,
        nameservers=[UPSTREAM],
        nameserver_port=silent.getsockname()[1],
        forward_timeout=0.5,
    )
    try:
        await server.apply(_snapshot())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reply = await query("outside.example", WEB_IP, FRONT_GW, port, qtype)
        assert reply.header.rcode == RCODE.SERVFAIL
        assert loop.time() - t0 < 2.0
    finally:
        await server.stop()
        silent.close()


async def test_gateways_follow_the_snapshot(dns: tuple[ServiceNameServer, int]) -> None:
    server, port = dns
    assert server.listening() == [(FRONT_GW, port), (BACK_GW, port)]
    only_front = RoutesSnapshot(revision=2, networks=(network("st_front", FRONT_GW),))
    assert "closed=1" in await server.apply(only_front)
    assert server.listening() == [(FRONT_GW, port)]


def test_name_index_prefers_own_stack_for_short_names() -> None:
    mine = route("db", stack="a", networks=("shared",), endpoints={"shared": "10.9.0.1"})
    theirs = route("db", stack="b", networks=("shared",), endpoints={"shared": "10.9.0.2"})
    me = route(
        "app",
        stack="a",
        networks=("shared",),
        backends=(Backend(task_id="x", node_id="n", addresses={"shared": "10.9.0.50"}),),
    )
    index = NameIndex(snapshot(theirs, mine, me))
    assert index.lookup("db", "10.9.0.50", "") == ["10.9.0.1"]
    assert index.lookup("db.b", "10.9.0.50", "") == ["10.9.0.2"]
    assert index.lookup("example.com", "10.9.0.50", "") is None


def test_a_replica_not_yet_routed_resolves_on_all_its_networks() -> None:
    # api's second replica waits for its healthcheck: no traffic goes to it, but its
    # container asks the gateway of its first network (front) for db, on back.
    api = route(
        "api",
        networks=("st_front", "st_back"),
        endpoints={"st_front": "10.0.1.11", "st_back": "10.0.2.11"},
        unrouted=(
            Backend(
                task_id="a2",
                node_id="n1",
                addresses={"st_front": "10.0.1.33", "st_back": "10.0.2.33"},
            ),
        ),
    )
    db = route("db", networks=("st_back",), endpoints={"st_back": "10.0.2.12"})
    nets = (network("st_front", FRONT_GW), network("st_back", BACK_GW))
    index = NameIndex(snapshot(api, db, networks=nets))
    assert index.lookup("db", "10.0.1.33", FRONT_GW) == ["10.0.2.12"]
    assert index.lookup("tasks.api", "10.0.1.33", FRONT_GW) == []  # not routed


async def test_several_addresses_are_rotated_between_answers() -> None:
    # Clients mostly dial the first address of an answer: always giving the replicas in
    # one order sent every client of tasks.web to the same one. Docker shuffles them.
    ips = ("10.0.1.21", "10.0.1.22", "10.0.1.23")
    web = route(
        "web",
        networks=("st_front",),
        endpoints={"st_front": "10.0.1.10"},
        backends=tuple(
            Backend(task_id=f"w{i}", node_id="n1", addresses={"st_front": ip})
            for i, ip in enumerate(ips)
        ),
    )
    server = ServiceNameServer()
    await server.apply(snapshot(web))  # no gateways to bind: the asker is known
    answers: list[DNSRecord] = []
    firsts = []
    for _ in range(3):
        packet = DNSRecord.question("tasks.web").pack()
        server.handle(packet, ips[0], "", lambda p: answers.append(DNSRecord.parse(p)), True)
        assert sorted(_ips(answers[-1])) == list(ips)
        firsts.append(_ips(answers[-1])[0])
    assert sorted(firsts) == list(ips)
    await server.stop()


async def test_an_idle_tcp_connection_is_closed_and_stop_closes_the_rest(
    upstream: int,
) -> None:
    port = _free_dns_port()
    server = ServiceNameServer(
        port=port, nameservers=[UPSTREAM], nameserver_port=upstream, tcp_idle_timeout=0.3
    )
    await server.start()
    await server.apply(_snapshot())
    try:
        r, w = await asyncio.open_connection(FRONT_GW, port, local_addr=(WEB_IP, 0))
        await query_tcp(r, w, DNSRecord.question("web"))
        assert await asyncio.wait_for(r.read(), 2) == b""  # closed once idle
        w.close()
        assert not server.tcp_clients

        r2, w2 = await asyncio.open_connection(FRONT_GW, port, local_addr=(WEB_IP, 0))
        await asyncio.sleep(0.05)
        assert len(server.tcp_clients) == 1
    finally:
        await server.stop()
    assert await asyncio.wait_for(r2.read(), 2) == b""  # stop() closed it
    w2.close()


def _opt(reply: DNSRecord) -> RR | None:
    opts = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) <= 1
    return opts[0] if opts else None


async def test_an_edns_query_gets_an_opt_record_back_whatever_the_answer(
    dns: tuple[ServiceNameServer, int],
) -> None:
    # RFC 6891 7: a responder that speaks EDNS answers an OPT with an OPT, advertising
    # its own payload size; it was left out, so askers took this server for pre-EDNS.
    _, port = dns
    edns = EDNS0(udp_len=4096, flags="do")
    cases = [
        ("api", WEB_IP, RCODE.NOERROR),  # owned, answered
        ("db", WEB_IP, RCODE.NXDOMAIN),  # owned, not on a shared network
        ("outside.example", WEB_IP, RCODE.NOERROR),  # forwarded
        ("nowhere.example", WEB_IP, RCODE.NXDOMAIN),  # forwarded, NXDOMAIN upstream
    ]
    for name, source, rcode in cases:
        reply = await query(name, source, FRONT_GW, port, edns=edns)
        opt = _opt(reply)
        assert reply.header.rcode == rcode, name
        assert opt is not None, name
        assert opt.rclass == EDNS_PAYLOAD == 1232, name
        assert opt.ttl == 1 << 15, name  # extended RCODE 0, version 0, DO echoed
    plain = await query("api", WEB_IP, FRONT_GW, port)
    assert _opt(plain) is None  # no OPT asked, none given (RFC 6891 7)


async def test_an_edns_query_over_tcp_gets_an_opt_record_back(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    r, w = await asyncio.open_connection(FRONT_GW, port, local_addr=(WEB_IP, 0))
    question = DNSRecord.question("web")
    question.add_ar(EDNS0(udp_len=1400))
    reply = await query_tcp(r, w, question)
    w.close()
    assert _ips(reply) == ["10.0.1.10"]
    opt = _opt(reply)
    assert opt is not None and (opt.rclass, opt.ttl) == (EDNS_PAYLOAD, 0)


async def test_an_unknown_edns_version_gets_badvers_with_an_opt_record(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    for name in ("api", "outside.example"):  # owned and forwarded alike
        reply = await query(name, WEB_IP, FRONT_GW, port, edns=EDNS0(udp_len=1232, version=1))
        opt = _opt(reply)
        assert opt is not None, name
        # BADVERS is 16: its high 8 bits in the OPT record, its low 4 in the header.
        assert ((opt.ttl >> 24) << 4) | reply.header.rcode == BADVERS == 16, name
        assert (opt.ttl >> 16) & 0xFF == 0, name  # the version this server speaks
        assert reply.rr == [], name


async def test_several_opt_records_get_formerr() -> None:
    server = ServiceNameServer()
    await server.apply(snapshot(route("web", endpoints={"net": "10.0.1.10"})))
    question = DNSRecord.question("web")
    question.add_ar(EDNS0(udp_len=1232))
    question.add_ar(EDNS0(udp_len=1232))
    answers: list[DNSRecord] = []
    server.handle(question.pack(), STRANGER, "", lambda p: answers.append(DNSRecord.parse(p)), True)
    assert answers[0].header.rcode == RCODE.FORMERR
    await server.stop()


async def test_a_udp_answer_fits_the_smaller_of_the_askers_payload_size_and_ours() -> None:
    # 100 replicas: 1.6 KB of answers. Over UDP an answer stops at min(asker's size,
    # 1232) (512 without EDNS or below 512), with TC and its OPT; over TCP it is whole.
    ips = [f"10.0.1.{i}" for i in range(100, 200)]
    web = route(
        "web",
        networks=("st_front",),
        backends=tuple(
            Backend(task_id=f"w{i}", node_id="n1", addresses={"st_front": ip})
            for i, ip in enumerate(ips)
        ),
    )
    server = ServiceNameServer()
    await server.apply(snapshot(web))  # no gateways to bind: the asker is known

    def ask(udp_len: int | None, udp: bool = True) -> DNSRecord:
        question = DNSRecord.question("tasks.web")
        if udp_len is not None:
            question.add_ar(EDNS0(udp_len=udp_len))
        answers: list[bytes] = []
        server.handle(question.pack(), ips[0], "", answers.append, udp)
        reply = DNSRecord.parse(answers[0])
        assert len(answers[0]) <= (max(512, min(udp_len or 512, 1232)) if udp else 65535)
        return reply

    for udp_len, most in ((65535, 1232), (4096, 1232), (700, 700), (300, 512), (None, 512)):
        reply = ask(udp_len)
        assert reply.header.tc == 1, udp_len
        assert (_opt(reply) is not None) == (udp_len is not None), udp_len
        # As many answers as fit: one more (16 bytes) would not.
        assert most - 16 < len(reply.pack()) <= most, udp_len
        assert set(_ips(reply)) <= set(ips)
    whole = ask(4096, udp=False)
    assert whole.header.tc == 0 and sorted(_ips(whole)) == sorted(ips)
    assert _opt(whole) is not None
    await server.stop()


@pytest.mark.parametrize(
    ("name", "qtype", "record"),
    [("svc.example", "HTTPS", HTTPS_RR), ("_443._tcp.dane.example", "TLSA", TLSA_RR)],
)
async def test_a_type_aiodns_cannot_ask_is_relayed_as_asked(
    dns: tuple[ServiceNameServer, int], name: str, qtype: str, record: str
) -> None:
    _, port = dns
    UPSTREAM_IDS.clear()
    question = DNSRecord.question(name, qtype)
    got = await query_packet(question, WEB_IP, FRONT_GW, port)
    assert got.header.id == question.header.id and got.header.rcode == RCODE.NOERROR
    assert [str(rr.rdata) for rr in got.rr] == [str(RR.fromZone(record)[0].rdata)]
    # The resolver saw an ID of the forwarder's own, not the asker's.
    assert len(UPSTREAM_IDS) == 1 and UPSTREAM_IDS[0] != question.header.id


async def test_a_relayed_question_takes_only_the_answer_with_its_id(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    got = await query("spoof.example", WEB_IP, FRONT_GW, port, "HTTPS")
    assert got.header.rcode == RCODE.NOERROR and len(got.rr) == 1


async def test_a_relayed_answer_cut_over_udp_comes_whole_over_tcp(
    dns: tuple[ServiceNameServer, int],
) -> None:
    _, port = dns
    cut = await query("big.example", WEB_IP, FRONT_GW, port, "HTTPS")
    assert cut.header.tc == 1 and not cut.rr
    r, w = await asyncio.open_connection(FRONT_GW, port, local_addr=(WEB_IP, 0))
    try:
        whole = await query_tcp(r, w, DNSRecord.question("big.example", "HTTPS"))
    finally:
        w.close()
    assert whole.header.tc == 0 and len(whole.rr) == 40


async def test_a_relayed_nxdomain_is_relayed(dns: tuple[ServiceNameServer, int]) -> None:
    _, port = dns
    got = await query("nothing.example", WEB_IP, FRONT_GW, port, "TLSA")
    assert got.header.rcode == RCODE.NXDOMAIN
