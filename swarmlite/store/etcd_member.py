"""Run and supervise this manager's own etcd member.

etcd is the Raft engine; swarmlite never implements consensus itself. The member's
data lives under ``DATA_DIR/etcd``; if the process dies it is restarted with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import aetcd

from swarmlite.errors import DaemonError
from swarmlite.limits import ETCD_MAX_REQUEST_BYTES
from swarmlite.security.ca import STORE_ACCESS_NAME
from swarmlite.store.etcd_client import connect_etcd

log = logging.getLogger("swarmlite.etcd")


LOOPBACK = "127.0.0.1"
TLS_FILES = ("node.crt", "node.key", "ca.crt")


@dataclass(frozen=True)
class EtcdConfig:
    """How to run one etcd member; ``argv`` turns it into a command line and does no I/O.

    Without ``tls_dir`` the member speaks plain http on ``client_host`` and ``peer_host``.
    With ``tls_dir`` (holding ``node.crt``, ``node.key`` and ``ca.crt`` from the cluster CA;
    the certificate needs the advertise address and 127.0.0.1 as IP SANs) every client and
    peer connection is mutual TLS, URLs are https, and clients are served on 127.0.0.1 and
    on ``peer_host`` (this node's advertise address) so other managers can reach it.
    """

    name: str
    data_dir: Path
    client_host: str = LOOPBACK
    client_port: int = 4379
    peer_host: str = LOOPBACK
    peer_port: int = 4380
    # name -> peer URL; empty means a new single-member cluster of just this member.
    initial_cluster: dict[str, str] = field(default_factory=dict)
    initial_state: str = "new"
    # A 500 ms election (5 heartbeats) keeps a lost raft leader's gap short: the
    # leader lease (1 s) is extended by one election timeout when raft changes leader.
    heartbeat_ms: int = 100
    election_ms: int = 500
    tls_dir: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_dir is not None else "http"

    @property
    def peer_url(self) -> str:
        return f"{self.scheme}://{self.peer_host}:{self.peer_port}"

    @property
    def client_url(self) -> str:
        """The URL local clients use (``client_host``, 127.0.0.1 by default)."""
        return f"{self.scheme}://{self.client_host}:{self.client_port}"

    @property
    def client_hosts(self) -> tuple[str, ...]:
        """Addresses the client port listens on: with TLS, also the advertise address."""
        hosts = [self.client_host]
        if self.tls_dir is not None:
            hosts += [LOOPBACK, self.peer_host]
        return tuple(dict.fromkeys(hosts))

    @property
    def client_urls(self) -> list[str]:
        return [f"{self.scheme}://{h}:{self.client_port}" for h in self.client_hosts]

    @property
    def advertise_client_urls(self) -> list[str]:
        """What other members and clients are told: loopback only if there is nothing else."""
        remote = [
            u for u, h in zip(self.client_urls, self.client_hosts, strict=True) if h != LOOPBACK
        ]
        return remote or self.client_urls

    def tls_paths(self) -> tuple[Path, Path, Path] | None:
        """(cert, key, ca) file paths, or None without TLS."""
        if self.tls_dir is None:
            return None
        cert, key, ca = (self.tls_dir / f for f in TLS_FILES)
        return cert, key, ca

    def tls_argv(self) -> list[str]:
        paths = self.tls_paths()
        if paths is None:
            return []
        cert, key, ca = paths
        return [
            f"--cert-file={cert}",
            f"--key-file={key}",
            f"--trusted-ca-file={ca}",
            "--client-cert-auth",
            # Clients and peers must hold a manager certificate, not just any the CA signed.
            f"--client-cert-allowed-hostname={STORE_ACCESS_NAME}",
            f"--peer-cert-allowed-hostname={STORE_ACCESS_NAME}",
            f"--peer-cert-file={cert}",
            f"--peer-key-file={key}",
            f"--peer-trusted-ca-file={ca}",
            "--peer-client-cert-auth",
        ]

    def argv(self, binary: str) -> list[str]:
        cluster = self.initial_cluster or {self.name: self.peer_url}
        return [
            binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            "--listen-client-urls=" + ",".join(self.client_urls),
            "--advertise-client-urls=" + ",".join(self.advertise_client_urls),
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            "--initial-cluster=" + ",".join(f"{n}={u}" for n, u in sorted(cluster.items())),
            f"--initial-cluster-state={self.initial_state}",
            f"--heartbeat-interval={self.heartbeat_ms}",
            f"--election-timeout={self.election_ms}",
            # A restarted or reconnected member must not disrupt a working leader.
            "--pre-vote=true",
            "--auto-compaction-mode=revision",
            "--auto-compaction-retention=10000",
            "--quota-backend-bytes=2147483648",
            "--max-txn-ops=1024",
            # One deploy is one transaction: swarmlite/limits.py says why this size.
            f"--max-request-bytes={ETCD_MAX_REQUEST_BYTES}",
            "--log-level=info",  # elections and membership changes: evidence after a fault
            "--logger=zap",
            *self.tls_argv(),
        ]

    def connect(self, *, timeout: float | None = None) -> aetcd.Client:
        """A client of this member on ``client_host``, with this node's certificate if TLS."""
        paths = self.tls_paths()
        if paths is None:
            return connect_etcd(self.client_host, self.client_port, timeout=timeout)
        cert, key, ca = (p.read_bytes() for p in paths)
        return connect_etcd(
            self.client_host,
            self.client_port,
            cert_pem=cert,
            key_pem=key,
            ca_pem=ca,
            timeout=timeout,
        )


def _die_with_parent() -> None:
    # etcd must not outlive a daemon killed with SIGKILL: the restarted daemon owns the port.
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def find_etcd() -> str:
    for candidate in (shutil.which("etcd"), "/usr/bin/etcd", "/usr/local/bin/etcd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise DaemonError("etcd not found on PATH: install Debian's etcd-server (make install does)")


class EtcdMember:
    """Starts etcd, waits for it to serve, restarts it when it exits."""

    def __init__(self, config: EtcdConfig, *, log_path: Path | None = None) -> None:
        self.config = config
        self._binary = find_etcd()
        self._log_path = log_path or config.data_dir.parent / "etcd.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self.healthy = asyncio.Event()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self, *, timeout: float = 30.0) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self._kill_stale()
        await self._spawn()
        await self.wait_healthy(timeout)
        self._supervisor = asyncio.create_task(self._supervise(), name="etcd-supervisor")

    @property
    def _pid_path(self) -> Path:
        return self.config.data_dir.parent / "etcd.pid"

    async def _kill_stale(self) -> None:
        """A daemon killed with SIGKILL may leave its etcd behind: end it before restarting."""
        try:
            pid = int(self._pid_path.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"etcd" in cmdline and str(self.config.data_dir).encode() in cmdline:
            log.warning("stopping stale etcd pid=%d left by a previous daemon", pid)
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                await asyncio.sleep(0.02)  # the kernel reaps it: nothing to wait on

    async def _spawn(self) -> None:
        logf = open(self._log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.config.argv(self._binary),
                stdout=logf,
                stderr=logf,
                stdin=asyncio.subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        finally:
            logf.close()
        self._pid_path.write_text(str(self._proc.pid))
        log.info("etcd started pid=%s client=%s", self._proc.pid, self.config.client_url)

    @property
    def _joining(self) -> bool:
        return self.config.initial_state == "existing"

    async def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = self.config.connect(timeout=2)
        try:
            while True:
                if self._proc is not None and self._proc.returncode is not None:
                    raise DaemonError(
                        f"etcd exited with code {self._proc.returncode}; see {self._log_path}"
                    )
                try:
                    # A member joining as a learner refuses linearizable reads ("rpc not
                    # supported for learner") until promoted: serving is enough for it.
                    await client.get(b"/swarmlite/health", serializable=self._joining)
                    self.healthy.set()
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise DaemonError(
                            f"etcd did not become healthy in {timeout:.0f}s; see {self._log_path}"
                        ) from None
                    await asyncio.sleep(0.1)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _supervise(self) -> None:
        backoff = 0.5
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            self.healthy.clear()
            self.restarts += 1
            log.error("etcd exited code=%s; restarting in %.1fs", code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            try:
                await self._spawn()
                await self.wait_healthy(30.0)
                backoff = 0.5
                log.info("etcd healthy again after restart %d", self.restarts)
            except DaemonError as exc:
                log.error("etcd restart failed: %s", exc)

    async def stop(self, *, grace: float = 10.0) -> None:
        self._stopping = True
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
