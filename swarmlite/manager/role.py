"""A manager's components, wired: etcd member, store, cache, election, leader loops.

Every manager runs its etcd member, the watch-fed cache, the dispatcher (agents may
hold a session with any manager) and the API. Only the elected leader runs the
orchestrator, the scheduler and the node monitor, and their writes carry its fence.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import aetcd

from swarmlite.bootstrap import load_cluster_key
from swarmlite.config import NodeConfig
from swarmlite.errors import SwarmliteError
from swarmlite.manager.dispatcher import Dispatcher
from swarmlite.manager.leader import LeaderElection
from swarmlite.manager.liveness import DEFAULT_TTL, NodeMonitor
from swarmlite.manager.orchestrator import Orchestrator
from swarmlite.manager.scheduling import SchedulerLoop
from swarmlite.security.keeper import SecretKeeper
from swarmlite.store.cache import StateCache
from swarmlite.store.etcd_member import EtcdConfig, EtcdMember
from swarmlite.store.membership import list_members, promote
from swarmlite.store.store import Store

log = logging.getLogger("swarmlite.manager")


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LeaderLoops:
    """The leader-only loops, started on election and stopped on deposition."""

    def __init__(self, store: Store, cache: StateCache, client: aetcd.Client) -> None:
        self._store = store
        self._cache = cache
        self._client = client
        self._running: list[Component] = []

    async def start(self) -> None:
        await self.stop()
        # The old leader's last writes first: acting on a view without them would, for
        # one, make again a task it had just made.
        await self._cache.sync()
        self._running = [
            Orchestrator(self._store, self._cache),
            SchedulerLoop(self._store, self._cache),
            NodeMonitor(self._client, self._store, ttl=DEFAULT_TTL),
        ]
        for component in self._running:
            await component.start()

    async def stop(self) -> None:
        running, self._running = self._running, []
        for component in reversed(running):
            with contextlib.suppress(Exception):
                await component.stop()


class ManagerRole:
    def __init__(self, config: NodeConfig, data_dir: Path) -> None:
        self.config = config
        self.data_dir = data_dir
        self.etcd: EtcdMember | None = None
        self.client: aetcd.Client | None = None
        self.store: Store | None = None
        self.cache: StateCache | None = None
        self.election: LeaderElection | None = None
        self.dispatcher: Dispatcher | None = None
        # Seals and opens secrets with the cluster key every manager holds.
        self.keeper = SecretKeeper(load_cluster_key(data_dir))

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self.config
        etcd_config = EtcdConfig(
            name=cfg.node_id,
            data_dir=self.data_dir / "etcd",
            client_port=cfg.etcd_client_port,
            peer_host=cfg.advertise_addr,
            peer_port=cfg.etcd_peer_port,
            initial_cluster=dict(cfg.etcd_initial_cluster),
            initial_state=cfg.etcd_initial_state,
            tls_dir=self.data_dir / "certs",
        )
        self.etcd = EtcdMember(etcd_config, log_path=self.data_dir / "etcd.log")
        await self.etcd.start(timeout=60.0)
        stack.push_async_callback(self.etcd.stop)
        self.client = etcd_config.connect(timeout=5)
        stack.push_async_callback(self.client.close)
        self.store = Store(self.client)
        await self._promote_self(etcd_config)

    async def _promote_self(self, etcd_config: EtcdConfig) -> None:
        """A manager that joined starts as a learner; it becomes a voter once in sync.

        A learner refuses membership calls, so ask a voter: the other members from the
        initial cluster, whose client port is the one below their peer port.
        """
        cfg = self.config
        if cfg.etcd_initial_state != "existing":
            return
        for name, url in cfg.etcd_initial_cluster.items():
            if name == cfg.node_id:
                continue
            parsed = urlsplit(url)
            if parsed.hostname is None or parsed.port is None:
                continue
            voter = replace(
                etcd_config, client_host=parsed.hostname, client_port=parsed.port - 1
            ).connect(timeout=5)
            try:
                for member in await list_members(voter):
                    if member.name == cfg.node_id and member.is_learner:
                        await promote(voter, member.id, timeout=60.0)
                        log.info("etcd member of node=%s promoted to voter", cfg.node_id[:12])
                return
            except SwarmliteError as exc:
                log.warning("promotion through %s failed: %s", url, exc)
            finally:
                await voter.close()

    async def start_loops(self, stack: contextlib.AsyncExitStack) -> None:
        """After the cluster object exists: cache, dispatcher, election."""
        assert self.store is not None and self.client is not None
        cfg = self.config
        self.cache = StateCache(self.store)
        await self.cache.start()
        stack.push_async_callback(self.cache.stop)
        self.dispatcher = Dispatcher(
            self.store, self.cache, client=self.client, manager_id=cfg.node_id, keeper=self.keeper
        )
        election: LeaderElection
        loops = LeaderLoops(self.store.fenced(lambda: election.fence()), self.cache, self.client)
        election = LeaderElection(
            self.client,
            cfg.node_id,
            on_elected=loops.start,
            on_deposed=loops.stop,
        )
        self.election = election
        await election.start()
        stack.push_async_callback(election.stop)
