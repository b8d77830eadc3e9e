"""The node agent's Docker runtime: the only code that talks to the Docker Engine.

The Docker SDK blocks, so every call runs in this runtime's own thread pool (the
loop's default executor stays free for others); event and log streams each get a
daemon thread (``docker_streams``). Engine failures surface as ``RuntimeFailure``
with a one-line message; "absent" is not a failure where the operation's goal is
absence (remove, remove_network).

The runtime acts only on containers labelled ``swarmlite.node=<node_id>``, so several
agents may share one engine.

With ``node_addr`` (node networking mode, ``node_network.py``) the agent runs in a
container itself: tasks join that container's network namespace, and stack networks
are not created.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions

from swarmlite.agent import docker_networks, netlink
from swarmlite.agent.containers import (
    LABEL_NODE,
    LABEL_SERVICE_ID,
    ContainerInfo,
    NodeNamespace,
    bridge_name,
    container_config,
    container_info,
    outside_node_namespace,
    parse_docker_time,
    split_subnet,
)
from swarmlite.agent.docker_ops import create_container, stop_container
from swarmlite.agent.docker_streams import (
    ClosableStream,
    EventSubscription,
    RuntimeEvent,
    line_stream,
)
from swarmlite.agent.engine_watch import EngineWatch
from swarmlite.agent.node_network import own_container_ref
from swarmlite.agent.secrets import TaskFiles
from swarmlite.errors import RuntimeFailure, SwarmliteError
from swarmlite.spec.objects import Network, Task

__all__ = ["ContainerInfo", "DockerRuntime", "RuntimeEvent"]

log = logging.getLogger("swarmlite.agent.runtime")

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
T = TypeVar("T")


class DockerRuntime:
    def __init__(
        self,
        node_id: str,
        docker_host: str | None = None,
        *,
        workers: int = 64,
        node_addr: str | None = None,
        advertise_addr: str | None = None,
    ) -> None:
        self.node_id = node_id
        # Bridge mode: listen ports are published here for meshes on other nodes.
        self.advertise_addr = advertise_addr
        # Node networking mode: tasks share this container's namespace and address.
        self.node_addr = node_addr
        self._node_ns: NodeNamespace | None = None
        # The task's secrets and configs, written to a tmpfs before its container is made.
        self.files = TaskFiles(node_id)
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self._workers = workers
        # A deploy of N replicas issues N creates, then N starts, at once; with fewer
        # threads the later ones queue behind the engine's slowest calls.
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docker")
        self._client_lock = threading.Lock()
        self._api: docker.APIClient | None = None
        self._stream_api: docker.APIClient | None = None
        self._net_locks: dict[str, asyncio.Lock] = {}
        self._subscriptions: set[EventSubscription] = set()
        self._closed = False
        self.engine_watch = EngineWatch()

    # ---- plumbing -----------------------------------------------------------------

    def _client(self, *, streaming: bool = False) -> docker.APIClient:
        """The SDK client, made on first use in a worker thread (``auto`` pings)."""
        with self._client_lock:
            if self._api is None:
                self._api = docker.APIClient(
                    base_url=self.docker_host,
                    version="auto",
                    timeout=60,
                    max_pool_size=self._workers + 4,
                )
            if not streaming:
                return self._api
            if self._stream_api is None:
                # No read timeout: a followed log may stay quiet for hours.
                self._stream_api = docker.APIClient(
                    base_url=self.docker_host,
                    version=self._api.api_version,
                    timeout=None,  # type: ignore[arg-type]  # requests: None = no timeout
                    max_pool_size=64,
                )
            return self._stream_api

    async def _run(self, what: str, fn: Callable[..., T], *args: Any, allowance: float = 0) -> T:
        """``fn(*args)`` in the pool; a call may take ``allowance`` seconds before the
        engine watch counts it as hanging."""
        if self._closed:
            raise RuntimeFailure(f"{what}: the docker runtime is closed")
        loop = asyncio.get_running_loop()
        call = self.engine_watch.begin(what, allowance)
        timed_out = False
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except SwarmliteError:
            raise
        except docker.errors.APIError as exc:
            raise RuntimeFailure(f"{what}: {exc.explanation or exc}") from exc
        except (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
            OSError,
        ) as exc:
            timed_out = isinstance(exc, requests.exceptions.Timeout) or "timed out" in str(exc)
            raise RuntimeFailure(
                f"{what}: docker engine at {self.docker_host} failed or is unreachable: {exc}"
            ) from exc
        finally:
            self.engine_watch.end(call, timed_out=timed_out)

    # ---- engine ---------------------------------------------------------------------

    async def ping(self) -> None:
        await self._run("ping docker", lambda: self._client().ping())

    async def info(self) -> tuple[float, int, str, str]:
        """(cpus, memory bytes, os, architecture) of the engine's host."""
        raw = await self._run("docker info", lambda: self._client().info())
        return (
            float(raw["NCPU"]),
            int(raw["MemTotal"]),
            str(raw["OSType"]),
            str(raw["Architecture"]),
        )

    async def image_present(self, image: str) -> bool:
        def check() -> bool:
            api: Any = self._client()  # types-docker leaves inspect_image untyped
            try:
                api.inspect_image(image)
            except docker.errors.ImageNotFound:
                return False
            return True

        return await self._run(f"inspect image {image}", check)

    # ---- networks, VIPs, volumes ------------------------------------------------------

    async def ensure_network(self, net: Network) -> None:
        """Create the bridge for ``net``, or accept an identical one (idempotent).

        A same-named network with another subnet, gateway, bridge or id is recreated
        when no container uses it; otherwise RuntimeFailure. In node networking mode
        there are no stack networks: nothing to do.
        """
        if self.node_addr is not None:
            return
        lock = self._net_locks.setdefault(net.name, asyncio.Lock())
        async with lock:
            await self._run(
                f"create network {net.name}",
                lambda: docker_networks.ensure_network(self._client(), net, self.node_id),
            )

    async def remove_network(self, name: str) -> bool:
        """Remove the network; absent is done, still referenced by a container is False."""
        return await self._run(
            f"remove network {name}", lambda: docker_networks.remove_network(self._client(), name)
        )

    async def node_networks(self) -> list[str]:
        """The stack networks this node created (kept or not)."""
        return await self._run(
            "list networks", lambda: docker_networks.node_networks(self._client(), self.node_id)
        )

    async def set_vips(self, net: Network, vips: Collection[str]) -> None:
        """Make the /32 addresses in the upper half of ``net``'s subnet equal ``vips``."""
        _, upper = split_subnet(net.subnet)
        await self._run(
            f"set VIPs on network {net.name}",
            netlink.sync_vips,
            bridge_name(net),
            list(vips),
            upper,
        )

    async def ensure_volume(
        self,
        name: str,
        *,
        driver: str,
        driver_opts: Mapping[str, str],
        labels: Mapping[str, str],
    ) -> None:
        """Create the named volume unless it exists."""
        await self._run(
            f"create volume {name}",
            lambda: docker_networks.ensure_volume(
                self._client(), name, driver, driver_opts, labels
            ),
        )

    # ---- containers ---------------------------------------------------------------

    async def create(self, task: Task, networks: Sequence[Network]) -> str:
        """Create (not start) the task's container; returns its id. Never pulls.

        If a container of the same name already exists for the same task on this
        node (a create retried after a crash), it is adopted instead.
        """
        node_ns = await self._node_namespace() if self.node_addr is not None else None
        cfg = container_config(
            task,
            networks,
            self.node_id,
            advertise_addr=self.advertise_addr,
            node_ns=node_ns,
            extra_mounts=await self.files.mounts_for(task),
        )
        return await self._run(
            f"create container {cfg.name}",
            lambda: create_container(self._client(), cfg, task.id, self.node_id),
        )

    async def _node_namespace(self) -> NodeNamespace:
        """This process's own container (node networking mode), looked up once."""
        if self._node_ns is None:
            ref = own_container_ref()

            def lookup() -> tuple[str, float]:
                try:
                    attrs = self._client().inspect_container(ref)
                    return str(attrs["Id"]), parse_docker_time(attrs["State"].get("StartedAt"))
                except docker.errors.NotFound as exc:
                    raise RuntimeFailure(
                        f"node networking mode: no container {ref!r} on the engine; "
                        "set SWARMLITE_NODE_CONTAINER to this node's container name"
                    ) from exc

            cid, started_at = await self._run(f"inspect node container {ref}", lookup)
            self._node_ns = NodeNamespace(
                container_id=cid, addr=self.node_addr or "", started_at=started_at
            )
        return self._node_ns

    async def start(self, container_id: str) -> None:
        await self._run(
            f"start container {container_id[:12]}", lambda: self._client().start(container_id)
        )

    async def stop(self, container_id: str, *, grace: float, signal: str | None) -> None:
        """Send ``signal`` (else the container's stop signal, else SIGTERM), wait up to
        ``grace`` seconds for it to exit, then SIGKILL. Returns once it has stopped."""
        await self._run(
            f"stop container {container_id[:12]}",
            lambda: stop_container(self._client(), container_id, grace, signal),
            allowance=grace + 30.0,  # the grace period, then up to 30 s for SIGKILL
        )

    async def remove(self, container_id: str) -> None:
        """Force-remove with anonymous volumes; an absent container is fine."""

        def remove() -> None:
            try:
                self._client().remove_container(container_id, v=True, force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "in progress" in str(exc.explanation):
                    return
                raise

        await self._run(f"remove container {container_id[:12]}", remove)

    async def list_own(self, service_id: str | None = None) -> list[ContainerInfo]:
        """Every container (running or not) labelled with this node's id (and
        ``service_id``, if given)."""
        labels = [f"{LABEL_NODE}={self.node_id}"]
        if service_id is not None:
            labels.append(f"{LABEL_SERVICE_ID}={service_id}")
        ids = await self._run(
            "list containers",
            lambda: [
                str(c["Id"]) for c in self._client().containers(all=True, filters={"label": labels})
            ],
        )
        found = await asyncio.gather(*(self.inspect(cid) for cid in ids))
        return [info for info in found if info is not None]

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        def inspect() -> ContainerInfo | None:
            try:
                return container_info(self._client().inspect_container(container_id))
            except docker.errors.NotFound:
                return None

        info = await self._run(f"inspect container {container_id[:12]}", inspect)
        if info is not None and self.node_addr is not None:
            info = outside_node_namespace(info, await self._node_namespace())
        return info

    # ---- streams ------------------------------------------------------------------

    def events(self) -> EventSubscription:
        """Our node's container events, from now on, until ``close()``.

        Must be called from the event loop. To stop early, ``aclose()`` it (breaking
        out of ``async for`` alone leaves its thread running until ``close()``).
        """
        if self._closed:
            raise RuntimeFailure("docker events: the docker runtime is closed")
        filters = {"type": "container", "label": f"{LABEL_NODE}={self.node_id}"}

        def open_stream(since: float) -> ClosableStream:
            # Whole seconds: the stub takes int; the subscription skips earlier events.
            stream: ClosableStream = self._client(streaming=True).events(
                since=int(since), filters=filters, decode=True
            )
            return stream

        sub = EventSubscription(open_stream)
        self._subscriptions = {s for s in self._subscriptions if not s.closed}
        self._subscriptions.add(sub)
        return sub

    async def logs(
        self, container_id: str, *, follow: bool, tail: int | None, timestamps: bool = False
    ) -> AsyncIterator[bytes]:
        """The container's output (stdout and stderr) line by line."""

        def open_stream() -> ClosableStream:
            stream: ClosableStream = self._client(streaming=True).logs(
                container_id,
                stream=True,
                follow=follow,
                tail=tail if tail is not None else "all",
                timestamps=timestamps,
            )
            return stream

        async for line in line_stream(open_stream, f"logs of container {container_id[:12]}"):
            yield line

    async def close(self) -> None:
        """End event subscriptions and release the clients and threads."""
        if self._closed:
            return
        self._closed = True
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions.clear()
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        for api in (self._api, self._stream_api):
            if api is not None:
                api.close()
