"""A service's ``ports`` (short and long syntax) and ``expose``."""

from __future__ import annotations

from typing import Literal, cast

from swarmlite.spec.service import AppProtocol, PortSpec, Protocol

from .reader import Reader, to_str
from .tree import Value, YList, YMap, type_name

_PROTOCOLS = ("tcp", "udp")


class PortError(ValueError):
    pass


def read_ports(r: Reader) -> tuple[PortSpec, ...]:
    value = r.get("ports")
    if value is None:
        return ()
    if not isinstance(value, YList):
        r.error("ports", f"must be a list, not {type_name(value)}")
        return ()
    out: list[PortSpec] = []
    for i, item in enumerate(value):
        if isinstance(item, YMap):
            port = _long(Reader(item, r.problems, r.service, "ports"))
            out.extend([port] if port else [])
            continue
        try:
            ports, host_ip = parse_short_port(_scalar(item))
        except PortError as exc:
            r.error("ports", str(exc), pos=value.where(i))
            continue
        if host_ip:
            _warn_host_ip(r, host_ip)
        out.extend(ports)
    for port in out:
        if port.protocol == "udp" and port.mode == "ingress" and port.published is not None:
            r.problems.warn(
                f"service {r.service!r}: port {port.published}/udp is not published: the "
                "mesh routes TCP only; use the long syntax with mode: host"
            )
    return tuple(out)


def _scalar(item: Value) -> str:
    if isinstance(item, YMap | YList) or item is None:
        raise PortError(f"a port must be a string, a number or a mapping, not {type_name(item)}")
    return to_str(item)


def parse_short_port(text: str) -> tuple[list[PortSpec], str | None]:
    """``[HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]``, where ports may be ranges ``A-B``."""
    spec, _, proto = text.strip().partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOCOLS:
        raise PortError(f"invalid port {text!r}: protocol must be tcp or udp, not {proto!r}")
    host_ip: str | None = None
    if spec.startswith("["):  # an IPv6 host address: [::1]:8080:80
        close = spec.find("]:")
        if close < 0:
            raise PortError(f"invalid port {text!r}")
        host_ip, spec = spec[1:close], spec[close + 2 :]
        parts = ["", *spec.split(":")]
    else:
        parts = spec.split(":")
    if len(parts) > 3:
        raise PortError(f"invalid port {text!r}: expected [HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]")
    if len(parts) == 3:
        host_ip = host_ip or parts[0] or None
        parts = parts[1:]
    published = parts[0] if len(parts) == 2 else ""
    targets = _port_range(parts[-1], text)
    pubs: list[int | None] = (
        list(_port_range(published, text)) if published else [None] * len(targets)
    )
    if len(pubs) != len(targets):
        raise PortError(f"invalid port {text!r}: published range and target range differ in size")
    protocol = cast(Protocol, proto)
    ports = [
        PortSpec(target=t, published=p, protocol=protocol)
        for t, p in zip(targets, pubs, strict=True)
    ]
    return ports, host_ip


def _port_range(text: str, whole: str) -> list[int]:
    first, sep, last = text.strip().partition("-")
    start = _port_number(first, whole)
    end = _port_number(last, whole) if sep else start
    if end < start:
        raise PortError(f"invalid port range in {whole!r}")
    return list(range(start, end + 1))


def _port_number(text: str, whole: str) -> int:
    if not text.isdigit():
        raise PortError(f"invalid port {whole!r}: {text!r} is not a port number")
    number = int(text)
    if not 1 <= number <= 65535:
        raise PortError(f"invalid port {whole!r}: {number} is not between 1 and 65535")
    return number


def _long(r: Reader) -> PortSpec | None:
    r.check_keys("ports")
    target = r.int_("target", 1, 65535)
    if target is None:
        if r.get("target") is None:
            r.error("target", "a port in long syntax needs a target", pos=r.node.pos)
        return None
    published = r.int_("published", 1, 65535)
    protocol = r.choice("protocol", _PROTOCOLS) or "tcp"
    mode = r.choice("mode", ("ingress", "host")) or "ingress"
    app = r.str_("app_protocol")
    host_ip = r.str_("host_ip")
    if host_ip:
        _warn_host_ip(r, host_ip)
    app_protocol: AppProtocol | None = None
    if app == "http":
        app_protocol = "http"
    elif app:
        r.problems.warn(
            f"service {r.service!r}: app_protocol {app!r} of port {target} is ignored; "
            "only 'http' changes routing"
        )
    return PortSpec(
        target=target,
        published=published,
        protocol=cast(Protocol, protocol),
        app_protocol=app_protocol,
        mode=cast(Literal["ingress", "host"], mode),
    )


def _warn_host_ip(r: Reader, host_ip: str) -> None:
    r.problems.warn(
        f"service {r.service!r}: host IP {host_ip} in ports is ignored; "
        "published ports listen on every address of every node"
    )


def read_expose(r: Reader) -> tuple[int, ...]:
    value = r.get("expose")
    if value is None:
        return ()
    if not isinstance(value, YList):
        r.error("expose", f"must be a list, not {type_name(value)}")
        return ()
    out: list[int] = []
    for i, item in enumerate(value):
        try:
            text = _scalar(item)
            spec, _, proto = text.partition("/")
            ports = _port_range(spec, text)
            if proto and proto.lower() not in _PROTOCOLS:
                raise PortError(f"invalid port {text!r}: protocol must be tcp or udp")
        except PortError as exc:
            r.error("expose", str(exc), pos=value.where(i))
            continue
        if proto.lower() == "udp":
            r.problems.warn(f"service {r.service!r}: expose of UDP port {text} is ignored")
            continue
        out.extend(p for p in ports if p not in out)
    return tuple(out)
