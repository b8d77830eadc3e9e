"""A real one-node swarmlite cluster for integration tests.

``SwarmNode`` bootstraps a node in a temporary data dir with its own API port (etcd on
the next ports) and its own address pool, runs ``swarmlite daemon`` as a subprocess,
and drives it through the real CLI and API. Teardown removes every container,
network and volume the node made, even when the test failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
SWARMLITE = [sys.executable, "-m", "swarmlite.cli.main"]
T = TypeVar("T")

# Scale every wait on a slow or busy machine (SWARMLITE_TEST_TIMEOUT_FACTOR=2 doubles them).
TIMEOUT_FACTOR = float(os.environ.get("SWARMLITE_TEST_TIMEOUT_FACTOR", "1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(size: int = 4) -> int:
    """A base port whose next ``size`` ports are all free (API, spare, etcd client, peer)."""
    import random

    for _ in range(200):
        # Below the ephemeral range, so no outgoing connection takes one meanwhile.
        base = random.randrange(20000, 30000, size)
        ok = True
        for p in range(base, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free block of ports")


def wait_until(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str = ""
) -> T:
    """Poll ``check`` (a probe of an outside process) until it returns truthy."""
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # the probed system may be between states
            last = exc
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


class SwarmNode:
    def __init__(self, data_dir: Path, *, pool: str, api_port: int | None = None) -> None:
        self.data_dir = data_dir
        self.pool = pool
        self.api_port = api_port or free_port_block()
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id = ""

    # -- lifecycle ------------------------------------------------------------------
    def init(self, mesh_workers: int = 0) -> None:
        from swarmlite.bootstrap import bootstrap

        config = bootstrap(
            self.data_dir,
            advertise_addr="127.0.0.1",
            listen_host="127.0.0.1",
            api_port=self.api_port,
            address_pool=self.pool,
            mesh_workers=mesh_workers,
        )
        self.node_id = config.node_id
        self.start()

    def start(self) -> None:
        log = open(self.data_dir / "daemon.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*SWARMLITE, "daemon", "--data-dir", str(self.data_dir)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "SWARMLITE_LOG_LEVEL": "INFO"},
        )
        log.close()
        wait_until(lambda: self.cli_ok("node", "ls"), timeout=40, what="daemon API")
        wait_until(
            lambda: "ready" in self.cli("node", "ls").stdout.lower(),
            timeout=20,
            what="node ready",
        )

    def kill(self) -> None:
        """SIGKILL the daemon (its etcd dies with it); containers keep running."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        if self.node_id:
            from swarmlite.node import remove_node_workloads

            with contextlib.suppress(Exception):
                asyncio.run(remove_node_workloads(self.node_id))
        # Networks of this node's pool, and volumes of its stacks.
        out = subprocess.run(
            ["docker", "network", "ls", "-q", "--filter", "label=swarmlite.network.id"],
            capture_output=True,
            text=True,
        ).stdout.split()
        for net in out:
            info = subprocess.run(
                ["docker", "network", "inspect", net, "--format", "{{json .IPAM.Config}}"],
                capture_output=True,
                text=True,
            ).stdout
            prefix = self.pool.split(".")[0] + "." + self.pool.split(".")[1] + "."
            if prefix in info:
                subprocess.run(["docker", "network", "rm", net], capture_output=True)

    # -- driving it -----------------------------------------------------------------
    def cli(
        self, *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*SWARMLITE, *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"swarmlite {' '.join(args)} failed: {result.stderr}")
        return result

    def cli_ok(self, *args: str) -> bool:
        return self.cli(*args).returncode == 0

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--format", "json", check=True).stdout)

    def deploy(
        self, compose: Path, stack: str, *extra: str, wait: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``swarmlite deploy``; detached unless ``wait`` (then it waits to converge)."""
        flags = () if wait else ("--detach",)
        return self.cli(
            "deploy", "-f", str(compose), "--stack", stack, *flags, *extra, timeout=timeout
        )

    def tasks(self, service: str) -> list[dict[str, Any]]:
        return list(self.json("service", "ps", service))

    def running(self, service: str) -> list[dict[str, Any]]:
        return [
            t for t in self.tasks(service) if t["status"]["state"] == 5 and t["desired_state"] == 5
        ]

    def wait_running(self, service: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        def check() -> list[dict[str, Any]] | None:
            running = self.running(service)
            return running if len(running) == count and self._only(service, count) else None

        return wait_until(
            check,
            timeout=timeout,
            what=f"{count} running tasks of {service}",
        )

    def _only(self, service: str, count: int) -> bool:
        live = [
            t for t in self.tasks(service) if t["desired_state"] <= 5 and t["status"]["state"] < 6
        ]
        return len(live) == count

    def containers(self, service: str) -> list[str]:
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                f"label=swarmlite.node={self.node_id}",
                "--filter",
                f"label=swarmlite.service={service}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return sorted(out.split())
