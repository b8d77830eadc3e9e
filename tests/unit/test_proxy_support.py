"""Shared pieces of the proxy tests: snapshots, free ports, small real backends."""

from __future__ import annotations

import asyncio
import socket

from swarmlite.spec.objects import Network
from swarmlite.spec.routes import Backend, RoutesSnapshot, ServiceRoute
from swarmlite.spec.service import PortSpec

NET = "st_default"
BACKEND_IPS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
DEAD_IP = "127.0.0.14"


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def backend(task: str, ip: str, node: str = "n1", net: str = NET) -> Backend:
    return Backend(task_id=task, node_id=node, addresses={net: ip})


def route(
    name: str = "web",
    *,
    stack: str = "st",
    backends: tuple[Backend, ...] = (),
    target: int = 80,
    published: int | None = None,
    http: bool = False,
    networks: tuple[str, ...] = (NET,),
    endpoints: dict[str, str] | None = None,
    listen_ports: tuple[int, ...] = (),
    unrouted: tuple[Backend, ...] = (),
) -> ServiceRoute:
    ports: tuple[PortSpec, ...] = ()
    if published is not None:
        ports = (
            PortSpec(target=target, published=published, app_protocol="http" if http else None),
        )
    return ServiceRoute(
        service_id=f"id-{name}",
        name=f"{stack}_{name}",
        short_name=name,
        stack=stack,
        networks=networks,
        endpoints=endpoints or {},
        ports=ports,
        listen_ports=listen_ports,
        backends=backends,
        unrouted=unrouted,
    )


def snapshot(
    *services: ServiceRoute, revision: int = 1, networks: tuple[Network, ...] = ()
) -> RoutesSnapshot:
    return RoutesSnapshot(revision=revision, services=services, networks=networks)


def tcp_snapshot(port: int, bs: list[TcpBackend], revision: int = 1) -> RoutesSnapshot:
    """``web`` published on ``port`` (TCP) with the backends ``bs`` as its replicas."""
    tasks = tuple(backend(b.name, b.host) for b in bs)
    return snapshot(
        route("web", published=port, target=bs[0].port, backends=tasks), revision=revision
    )


def network(name: str, gateway: str, subnet: str = "10.0.0.0/24") -> Network:
    return Network(id=f"id-{name}", name=name, stack="st", subnet=subnet, gateway=gateway)


async def wait_for(predicate: object, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true, bounded; for counters backends bump."""
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


class TcpBackend:
    """A line-command TCP server: ``name``, ``upload N``, ``download N``, ``echo``."""

    def __init__(self, name: str, host: str, port: int, slow: float = 0.0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.slow = slow
        self.accepts = 0
        self.received = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> TcpBackend:
        self.server = await asyncio.start_server(self._serve, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepts += 1
        try:
            line = (await r.readline()).decode().split()
            if line[:1] == ["name"]:
                w.write(self.name.encode() + b"\n")
            elif line[:1] == ["upload"]:
                left = int(line[1])
                while left:
                    chunk = await r.read(min(left, 256 * 1024))
                    if not chunk:
                        break
                    left -= len(chunk)
                    self.received += len(chunk)
                    if self.slow:
                        await asyncio.sleep(self.slow)
                w.write(f"got {int(line[1]) - left}\n".encode())
            elif line[:1] == ["download"]:
                left = int(line[1])
                block = b"x" * (1 << 20)
                while left:
                    w.write(block[: min(left, len(block))])
                    left -= min(left, len(block))
                    await w.drain()
            elif line[:1] == ["echo"]:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
                w.write(b"bye\n")  # after the client's half-close
            await w.drain()
        except (ConnectionError, IndexError, ValueError):
            pass
        finally:
            w.close()
