"""Shared pieces of the benchmarks: results, bounded waits, probes, and the contenders.

Every wait here is bounded in time; every probe goes to 127.0.0.1 or to containers
the benchmark created. ``Bench`` owns what a run creates (one swarmlite node, maybe a
Docker Swarm) and removes it in ``close()``.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("DOCKER_HOST", "unix:///var/run/docker.sock")

import docker  # noqa: E402
import docker.errors  # noqa: E402

from tests.integration.harness import SwarmNode  # noqa: E402

POOL = "10.226.0.0/16"  # this benchmark's address space; each run takes a free /20 of it
T = TypeVar("T")
KEPT_LOG = Path(tempfile.gettempdir()) / "swarmlite-bench-daemon.log"

# One healthcheck for every contender of a scenario that uses one.
HEALTH_TEST = "echo -e 'GET /health HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8080 | grep -q 200"
HEALTH_INTERVAL_S = 1
HEALTH_TIMEOUT_S = 2
HEALTH_RETRIES = 2


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- results ----------------------------------------------------------------------------
@dataclass
class Row:
    metric: str
    swarmlite: str
    reference: str  # what it is compared with, and its value
    ratio: str
    target: str
    verdict: str  # PASS | MISS | "-" (informational) | "not measured: ..."


@dataclass
class ScenarioResult:
    name: str
    title: str
    method: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)  # extra markdown lines (a sub-table)
    error: str = ""  # set when the scenario could not run at all


def not_measured(name: str, title: str, method: list[str], reason: str) -> ScenarioResult:
    return ScenarioResult(name, title, method, error=f"not measured: {reason}")


def median(values: list[float]) -> float:
    return statistics.median(values)


def fmt_s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def runs_text(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def wait_for(
    check: Callable[[], T | None], timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``check`` until truthy; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the probed system may be between states
            last = exc
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: last={last!r}")


# -- probes -----------------------------------------------------------------------------
def http_get(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> str | None:
    """Body of ``GET /`` (a fresh connection each time), or None."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace").strip()
        return body if resp.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def docker_client() -> docker.APIClient:
    return docker.APIClient(base_url=os.environ["DOCKER_HOST"], version="auto", timeout=60)


def containers(
    api: docker.APIClient, label: str | list[str], *, health: str | None = None
) -> list[dict[str, Any]]:
    filters: dict[str, Any] = {"label": label, "status": "running"}
    if health:
        filters["health"] = health
    return list(api.containers(filters=filters))


def container_ip(api: docker.APIClient, cid: str) -> str:
    nets = api.inspect_container(cid)["NetworkSettings"]["Networks"]
    return str(next(n["IPAddress"] for n in nets.values() if n.get("IPAddress")))


def run(
    cmd: list[str], timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-400:]}"
        )
    return out


# -- Docker Swarm -------------------------------------------------------------------------
class DockerSwarm:
    """Docker Swarm on this engine, initialized by us (and left by us) or not at all."""

    def __init__(self) -> None:
        self.initialized_by_us = False
        self.unavailable = ""
        self._had_gwbridge = True

    def ensure(self) -> bool:
        if self.initialized_by_us:
            return True
        if self.unavailable:
            return False
        state = run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]).stdout.strip()
        if state != "inactive":
            self.unavailable = f"this engine is already in a swarm (state {state!r}); not touched"
            return False
        self._had_gwbridge = bool(
            run(
                ["docker", "network", "ls", "-q", "--filter", "name=^docker_gwbridge$"], check=False
            ).stdout.strip()
        )
        out = run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"], check=False)
        if out.returncode != 0:
            self.unavailable = f"docker swarm init failed: {out.stderr.strip()[-200:]}"
            return False
        self.initialized_by_us = True
        log("docker swarm initialized (will leave at the end)")
        return True

    def deploy(self, compose: Path, stack: str) -> None:
        run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(compose), stack])

    def remove(self, stack: str, api: docker.APIClient) -> None:
        run(["docker", "stack", "rm", stack], check=False)
        label = f"com.docker.stack.namespace={stack}"
        with contextlib.suppress(TimeoutError):
            wait_for(
                lambda: not api.containers(all=True, filters={"label": label}),
                60,
                0.3,
                f"swarm stack {stack} containers gone",
            )
            wait_for(
                lambda: not api.networks(filters={"label": label}),
                30,
                0.3,
                f"swarm stack {stack} networks gone",
            )

    def close(self) -> None:
        if self.initialized_by_us:
            run(["docker", "swarm", "leave", "--force"], check=False)
            if not self._had_gwbridge:  # swarm init made it; leave does not remove it
                run(["docker", "network", "rm", "docker_gwbridge"], check=False)
            self.initialized_by_us = False
            log("left the docker swarm we initialized")


# -- the run's shared state -----------------------------------------------------------------
class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.tmp = Path(tempfile.mkdtemp(prefix="swarmlite-bench-"))
        self.api = docker_client()
        self.swarm = DockerSwarm()
        self._node: SwarmNode | None = None
        self._swarmlite_stacks: set[str] = set()
        # In every stack name: a network Docker failed to remove (moby/moby#42119) keeps
        # its name, and a later run must not collide with it.
        self.run_id = secrets.token_hex(2)
        self.leaks: list[str] = []  # product misbehaviour seen while cleaning up

    def free_pool(self) -> str:
        """A /20 of POOL that no Docker network overlaps (a network Docker failed to
        remove, moby/moby#42119, would otherwise block the subnet a new node allocates)."""
        used = [
            ipaddress.IPv4Network(cfg["Subnet"], strict=False)
            for net in self.api.networks()
            for cfg in ((net.get("IPAM") or {}).get("Config") or [])
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]
        ]
        for candidate in ipaddress.IPv4Network(POOL).subnets(new_prefix=20):
            if not any(candidate.overlaps(u) for u in used):
                return str(candidate)
        raise RuntimeError(f"no free /20 left in {POOL}")

    def node(self) -> SwarmNode:
        if self._node is None:
            node = SwarmNode(self.tmp / "node", pool=self.free_pool())
            self._node = node
            node.init()
            log(
                f"swarmlite node {node.node_id[:12]} up (api port {node.api_port}, pool "
                f"{node.pool})"
            )
        return self._node

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def sl_deploy(self, compose: Path, stack: str) -> None:
        self._swarmlite_stacks.add(stack)
        out = self.node().deploy(compose, stack)
        if out.returncode != 0:
            raise RuntimeError(f"swarmlite deploy {stack} failed: {out.stderr.strip()[-400:]}")

    def sl_remove(self, stack: str) -> None:
        node = self.node()
        node.cli("stack", "rm", stack)
        self._swarmlite_stacks.discard(stack)
        label = [f"swarmlite.node={node.node_id}", f"swarmlite.stack={stack}"]
        with contextlib.suppress(TimeoutError):
            wait_for(
                lambda: not self.api.containers(all=True, filters={"label": label}),
                60,
                0.3,
                f"swarmlite stack {stack} containers gone",
            )
        # swarmlite should remove the stack's network too; if it leaves it behind, the
        # next stack gets the same subnet and cannot create its network. Remove it, say so.
        nets = {"label": f"swarmlite.stack={stack}"}
        try:
            wait_for(lambda: not self.api.networks(filters=nets), 10, 0.3, "network removed")
        except TimeoutError:
            for net in self.api.networks(filters=nets):
                try:
                    self.api.remove_network(net["Id"])
                    outcome = "removed by the benchmark"
                except docker.errors.APIError as exc:
                    outcome = f"the benchmark could not remove it either: {exc.explanation}"
                self.leaks.append(
                    f"swarmlite left network {net['Name']} behind after `stack rm {stack}` "
                    f"({outcome})"
                )
                log(f"swarmlite left network {net['Name']} behind ({outcome})")

    def close(self) -> None:
        if self._node is not None:
            for stack in list(self._swarmlite_stacks):
                with contextlib.suppress(Exception):
                    self._node.cli("stack", "rm", stack)
            self._node.destroy()
            if self._node.node_id:  # the agent's tmpfs directory for secrets and configs
                from swarmlite.agent.secrets import DEFAULT_BASE

                shutil.rmtree(DEFAULT_BASE / self._node.node_id[:12], ignore_errors=True)
            with contextlib.suppress(OSError):
                shutil.copy(self._node.data_dir / "daemon.log", KEPT_LOG)
                log(f"swarmlite daemon log kept in {KEPT_LOG}")
            self._node = None
        self.swarm.close()
        self.api.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields)  # idle + iowait


def settle(idle_share: float = 0.8, window: float = 0.5, limit: float = 15.0) -> float:
    """Wait until the CPUs were at least ``idle_share`` idle over one ``window``, so a
    timed run does not pay for the previous run's clean-up (Docker removing containers
    and networks in the background). Gives up after ``limit`` s; returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= idle_share:
            break
    return time.monotonic() - start


def loadavg() -> str:
    """The 1-minute load average: others share this machine, and this says how much."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        return "?"


def machine_info() -> dict[str, str]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    commit = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": sh(["nproc"]),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB" if mem_kb else "?",
        "docker": sh(["docker", "version", "--format", "{{.Server.Version}}"]),
        "kernel": sh(["uname", "-r"]),
        "python": sys.version.split()[0],
        "load": loadavg(),
        "commit": commit + (" (with uncommitted changes in the tree)" if dirty else ""),
    }
