"""Composition root: wiring only. Creates a node on disk and runs its daemon.

A manager node runs: its etcd member, the store and its watch-fed cache, the leader
loops (orchestrator, scheduler, dispatcher), the API. Every node runs: the agent
(Docker runtime and task runner), the routing mesh and the service name server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import ssl
import sys
import time
from datetime import timedelta
from pathlib import Path

import msgspec
from aiohttp import web

from swarmlite.agent.node_network import DOCKER_EMBEDDED_DNS
from swarmlite.agent.runtime import DockerRuntime
from swarmlite.agent.secrets import remove_node_files
from swarmlite.agent.session import NodeAgent
from swarmlite.api import join_handlers, secret_handlers, update_handlers
from swarmlite.api.join import with_tokens
from swarmlite.api.membership import KnownManagers
from swarmlite.api.server import ApiContext, build_app
from swarmlite.api.worker_api import build_worker_app
from swarmlite.bootstrap import initial_tokens, load_cluster_key
from swarmlite.config import load_config, save_config
from swarmlite.errors import ConflictError, SwarmliteError
from swarmlite.manager.role import ManagerRole
from swarmlite.proxy.dns import ServiceNameServer
from swarmlite.proxy.mesh import MeshProxy
from swarmlite.proxy.workers import MeshWorkers, default_workers
from swarmlite.role_change import become_manager, become_worker
from swarmlite.security.ca import STORE_ACCESS_NAME, ClusterCA, grants_store_access
from swarmlite.security.renewal import CertRenewer, renewal_handler
from swarmlite.security.secretbox import SecretBox
from swarmlite.security.tls import Credentials, finish_interrupted_save
from swarmlite.spec.objects import Cluster, Node
from swarmlite.store.store import Store

log = logging.getLogger("swarmlite.node")


def run(data_dir: Path) -> None:
    """Run the node daemon in the foreground until SIGTERM or SIGINT."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep running without
        pass
    logging.basicConfig(
        level=os.environ.get("SWARMLITE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    daemon = Daemon(data_dir.expanduser().resolve())
    asyncio.run(daemon.main())
    if daemon.restart:
        # The node changed role on disk: start again as what it now is.
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "swarmlite.cli.main",
                "daemon",
                "--data-dir",
                str(daemon.data_dir),
            ],
        )


async def remove_node_workloads(node_id: str) -> int:
    runtime = DockerRuntime(node_id)
    try:
        containers = await runtime.list_own()
        for c in containers:
            await runtime.remove(c.id)
        # Left behind, a stack bridge would keep its subnet from the next cluster here.
        for name in await runtime.node_networks():
            await runtime.remove_network(name)
        remove_node_files(node_id)
        return len(containers)
    finally:
        await runtime.close()


class Daemon:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.config = load_config(data_dir)
        done = finish_interrupted_save(data_dir / "certs")  # before etcd reads the pair
        if done:
            log.warning("node credentials: %s", done)
        self.creds = Credentials.load(data_dir / "certs")
        if self.config.role == "manager":
            self.creds = _with_store_access(self.creds, data_dir / "certs")
        self._stopping = asyncio.Event()
        self.restart = False
        self._renewer: CertRenewer | None = None
        self._manager_tls: ssl.SSLContext | None = None
        self._changing = False

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        (self.data_dir / "daemon.pid").write_text(str(os.getpid()))
        stack = contextlib.AsyncExitStack()
        try:
            await self._start(stack)
            # What start-up built lives as long as the daemon: freezing it keeps it out of
            # every later full collection, a pause of ~15 ms that proxied requests would wait.
            gc.freeze()
            log.info("node=%s ready: api=%s", self.config.node_id[:12], self.config.api_url)
            await self._stopping.wait()
            log.info("stopping node=%s", self.config.node_id[:12])
        finally:
            await stack.aclose()
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / "daemon.pid").unlink()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self.config
        node_mode = cfg.workload_network == "node"
        runtime = DockerRuntime(
            cfg.node_id,
            node_addr=cfg.advertise_addr if node_mode else None,
            advertise_addr=None if node_mode else cfg.advertise_addr,
        )
        stack.push_async_callback(runtime.close)
        server_tls = self.creds.server_context(require_client_cert=False)
        client_tls = self.creds.client_context()  # to any node (service logs)
        manager_tls = self.creds.client_context(managers_only=True)
        known_managers: KnownManagers | None = None  # a worker's, filled by its agent session
        if cfg.role == "manager":
            app = await self._start_manager(stack, runtime, client_tls)
        else:
            known_managers = KnownManagers()
            app = build_worker_app(cfg.node_id, self.creds.ca_pem, runtime, known_managers)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, cfg.listen_host, cfg.api_port, ssl_context=server_tls)
        await site.start()
        loops = cfg.mesh_workers or default_workers()
        mesh = MeshWorkers(MeshProxy(cfg.node_id, cfg.mesh_host), extra=loops - 1)
        # Node mode: resolv.conf names this server, so other names go to Docker's DNS.
        names = ServiceNameServer(
            port=cfg.dns_port, nameservers=[DOCKER_EMBEDDED_DNS] if node_mode else None
        )
        agent = NodeAgent(
            node_id=cfg.node_id,
            addr=cfg.advertise_addr,
            api_port=cfg.api_port,
            managers=self._manager_addresses(),
            ssl_context=manager_tls,
            runtime=runtime,
            mesh=mesh,
            names=names,
            node_network=node_mode,
            on_cluster_change=self._cluster_changed,
            known_managers=known_managers,
        )
        await agent.start()
        stack.push_async_callback(agent.stop)
        stack.push_async_callback(mesh.stop, 2.0)
        stack.push_async_callback(names.stop)
        renewer = CertRenewer(
            self.data_dir / "certs",
            self._manager_addresses,
            [server_tls, client_tls, manager_tls],
        )
        await renewer.start()
        stack.push_async_callback(renewer.stop)
        self._renewer, self._manager_tls = renewer, manager_tls

    def _cluster_changed(self, managers: tuple[str, ...], role: str) -> None:
        cfg = self.config
        if managers and set(managers) != set(cfg.managers):
            self.config = msgspec.structs.replace(cfg, managers=managers)
            save_config(self.data_dir, self.config)
        if role in ("manager", "worker") and role != cfg.role and not self._changing:
            self._changing = True
            asyncio.get_running_loop().create_task(self._change_role(role, managers))

    async def _change_role(self, role: str, managers: tuple[str, ...]) -> None:
        assert self._renewer is not None and self._manager_tls is not None
        try:
            if role == "manager":
                await become_manager(self.data_dir, self.config, managers, self._manager_tls)
            else:
                await become_worker(self.data_dir, self.config, managers, self._renewer)
        except SwarmliteError as exc:
            log.error("could not become a %s: %s; will retry on the next assignments", role, exc)
            self._changing = False
            return
        self.restart = True
        self._stopping.set()

    def _manager_addresses(self) -> tuple[str, ...]:
        cfg = self.config
        local = (f"127.0.0.1:{cfg.api_port}",) if cfg.role == "manager" else ()
        return tuple(dict.fromkeys((*local, *cfg.managers)))

    async def _start_manager(
        self, stack: contextlib.AsyncExitStack, runtime: DockerRuntime, client_tls: ssl.SSLContext
    ) -> web.Application:
        cfg = self.config
        manager = ManagerRole(cfg, self.data_dir)
        await manager.start(stack)
        assert manager.store is not None and manager.client is not None
        await self._ensure_cluster(manager.store)
        await manager.start_loops(stack)
        assert manager.cache is not None and manager.dispatcher is not None
        app = build_app(
            ApiContext(
                store=manager.store,
                cache=manager.cache,
                dispatcher=manager.dispatcher,
                runtime=runtime,
                node_id=cfg.node_id,
                ca_pem=self.creds.ca_pem,
                election=manager.election,
                keeper=manager.keeper,
                client_tls=client_tls,
            )
        )
        secret_handlers.register(app)
        update_handlers.register(app)
        assert self.creds.ca_key_pem is not None, "a manager holds the CA key"
        cluster_key = load_cluster_key(self.data_dir)
        ca = ClusterCA.load(self.creds.ca_pem, self.creds.ca_key_pem)
        cache = manager.cache

        def lifetime() -> timedelta:
            cluster = cache.view().cluster
            return timedelta(seconds=cluster.node_cert_lifetime if cluster else 90 * 86400.0)

        app.router.add_post("/v1/renew", renewal_handler(ca, manager.store, lifetime))
        join_handlers.register(
            app,
            join_handlers.JoinAuthority(
                ca=ca,
                box=SecretBox(cluster_key),
                cluster_key=cluster_key,
                store=manager.store,
                client=manager.client,
            ),
        )
        return app

    async def _ensure_cluster(self, store: Store) -> None:
        if await store.get(Cluster, self.config.cluster_id) is not None:
            return
        cluster = with_tokens(
            Cluster(
                id=self.config.cluster_id,
                created_at=time.time(),
                ca_cert_pem=self.creds.ca_pem,
                worker_token_digest="",
                manager_token_digest="",
                address_pool=self.config.address_pool,
                node_cert_lifetime=self.config.cert_lifetime,
            ),
            SecretBox(load_cluster_key(self.data_dir)),
            initial_tokens(self.data_dir),
        )
        with contextlib.suppress(ConflictError):
            await store.create(cluster)
        # The first node is the cluster's first manager; its agent fills in the rest.
        me = Node(
            id=self.config.node_id,
            hostname=self.config.hostname,
            addr=self.config.advertise_addr,
            api_port=self.config.api_port,
            role="manager",
            created_at=time.time(),
        )
        with contextlib.suppress(ConflictError):
            await store.create(me)


def _with_store_access(creds: Credentials, certs_dir: Path) -> Credentials:
    """A manager certificate from before etcd required ``STORE_ACCESS_NAME``, re-signed
    (same key and expiry) with it, so an upgraded manager still reaches its own etcd."""
    if creds.ca_key_pem is None or grants_store_access(creds.cert_pem):
        return creds
    ca = ClusterCA.load(creds.ca_pem, creds.ca_key_pem)
    fresh = dataclasses.replace(creds, cert_pem=ca.with_store_access(creds.cert_pem))
    fresh.save(certs_dir)
    log.info("manager certificate re-signed to name %s for etcd", STORE_ACCESS_NAME)
    return fresh
