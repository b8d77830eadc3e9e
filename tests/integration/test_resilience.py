"""Resilience on one real node: volumes outlive tasks, restart policy limits, an etcd
outage the data plane does not notice, and ``leave --force``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import SwarmNode, wait_until

pytestmark = pytest.mark.integration

POOL = "10.224.0.0/16"

VOLUME = """
services:
  keeper:
    image: swarmlite/busybox:1
    command: ["sh", "-c", "test -f /data/marker || echo first > /data/marker; exec sleep 3600"]
    volumes:
      - store:/data
    deploy:
      restart_policy:
        condition: any
        delay: 0s
volumes:
  store: {}
"""

RESTARTS = """
services:
  fails:
    image: swarmlite/busybox:1
    command: ["sh", "-c", "exit 1"]
    deploy:
      restart_policy:
        condition: on-failure
        max_attempts: 2
        delay: 0s
  succeeds:
    image: swarmlite/busybox:1
    command: ["sh", "-c", "exit 0"]
    deploy:
      restart_policy:
        condition: on-failure
        delay: 0s
"""

WEB = """
services:
  web:
    image: swarmlite/demo-web:1
    environment:
      MESSAGE: "{message}"
    ports:
      - "18390:8080"
    deploy:
      replicas: {replicas}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("resilience") / "data", pool=POOL)
    try:
        n.init()
        yield n
    finally:
        n.destroy()
        subprocess.run(["docker", "volume", "rm", "-f", "vol_store"], capture_output=True)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compose.yml"
    path.write_text(text)
    return path


def docker_exec(container: str, *cmd: str) -> str:
    return subprocess.run(
        ["docker", "exec", container, *cmd], capture_output=True, text=True, check=True
    ).stdout


def test_named_volume_outlives_the_task(node: SwarmNode, tmp_path: Path) -> None:
    assert node.deploy(write(tmp_path, VOLUME), "vol").returncode == 0
    first = node.wait_running("vol_keeper", 1)
    (victim,) = node.containers("vol_keeper")
    wait_until(lambda: docker_exec(victim, "cat", "/data/marker") == "first\n", timeout=10)
    docker_exec(victim, "sh", "-c", "echo second >> /data/marker")
    mounts = subprocess.run(
        ["docker", "inspect", victim, "--format", "{{range .Mounts}}{{.Name}} {{end}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert mounts == ["vol_store"]

    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    wait_until(
        lambda: {t["id"] for t in node.running("vol_keeper")} - {t["id"] for t in first},
        timeout=30,
        what="replacement task",
    )
    (replacement,) = wait_until(lambda: node.containers("vol_keeper"), timeout=10)
    assert replacement != victim
    assert docker_exec(replacement, "cat", "/data/marker") == "first\nsecond\n"
    node.cli("service", "rm", "vol_keeper")


def test_restart_policy_on_failure(node: SwarmNode, tmp_path: Path) -> None:
    assert node.deploy(write(tmp_path, RESTARTS), "rp").returncode == 0

    wait_until(lambda: len(node.tasks("rp_fails")) == 3, timeout=30, what="three attempts")
    wait_until(
        lambda: all(t["status"]["state"] >= 6 for t in node.tasks("rp_fails")),
        timeout=15,
        what="all attempts ended",
    )
    time.sleep(2.0)  # a fourth attempt would show up here
    tasks = node.tasks("rp_fails")
    assert len(tasks) == 3, tasks
    assert {t["slot"] for t in tasks} == {1}
    ps = node.cli("service", "ps", "--no-trunc", "rp_fails").stdout
    assert ps.count("non-zero exit (1)") == 3, ps

    done = wait_until(
        lambda: [t for t in node.tasks("rp_succeeds") if t["status"]["state"] == 6],  # COMPLETE
        timeout=20,
        what="a complete task",
    )
    time.sleep(1.5)
    assert [t["id"] for t in node.tasks("rp_succeeds")] == [done[0]["id"]]
    node.cli("stack", "rm", "rp")


def etcd_pid(node: SwarmNode) -> int:
    pid = int((node.data_dir / "etcd.pid").read_text())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert str(node.data_dir / "etcd").encode() in cmdline
    return pid


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as resp:
        return str(resp.read().decode())


def test_etcd_outage(node: SwarmNode, tmp_path: Path) -> None:
    out = node.deploy(write(tmp_path, WEB.format(message="one", replicas=2)), "out")
    assert out.returncode == 0, out.stderr
    node.wait_running("out_web", 2)
    containers = node.containers("out_web")
    wait_until(lambda: "one" in fetch(18390), timeout=20, what="mesh routes")

    # Killed: the daemon notices, logs it and starts a new member.
    old = etcd_pid(node)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: etcd_pid(node) != old, timeout=15, what="etcd restarted")
    log = (node.data_dir / "daemon.log").read_text()
    assert "etcd exited" in log and "restarting" in log
    wait_until(lambda: node.cli_ok("service", "ls"), timeout=20, what="API back")

    # Frozen: the store cannot answer; the CLI says so, the data plane keeps going.
    frozen = etcd_pid(node)
    os.kill(frozen, signal.SIGSTOP)
    try:
        started = time.monotonic()

        def failed_ls() -> subprocess.CompletedProcess[str] | None:
            result = node.cli("service", "ls", timeout=20)
            return result if result.returncode != 0 else None

        out = wait_until(failed_ls, timeout=15, what="service ls to fail")
        assert out.returncode == 1
        assert "Traceback" not in out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
        assert "store" in lines[0] or "etcd" in lines[0], lines[0]
        for _ in range(5):
            assert "one" in fetch(18390)
        assert node.containers("out_web") == containers
        time.sleep(max(0.0, 5.0 - (time.monotonic() - started)))
        assert node.containers("out_web") == containers
    finally:
        os.kill(frozen, signal.SIGCONT)

    wait_until(lambda: node.cli_ok("service", "ls"), timeout=20, what="API back")
    assert node.containers("out_web") == containers
    out = node.deploy(write(tmp_path, WEB.format(message="two", replicas=3)), "out")
    assert out.returncode == 0, out.stderr
    wait_until(
        lambda: (
            len(node.running("out_web")) == 3
            and all(t["spec"]["environment"]["MESSAGE"] == "two" for t in node.running("out_web"))
        ),
        timeout=60,
        what="the change converged",
    )
    wait_until(lambda: "two" in fetch(18390), timeout=20, what="mesh routes the new tasks")
    node.cli("stack", "rm", "out")


def test_leave_force_removes_containers(tmp_path_factory: pytest.TempPathFactory) -> None:
    other = SwarmNode(tmp_path_factory.mktemp("leaver") / "data", pool="10.224.128.0/17")
    try:
        other.init()
        compose = tmp_path_factory.mktemp("leaver-stack") / "compose.yml"
        compose.write_text(
            'services:\n  idle:\n    image: swarmlite/busybox:1\n    command: ["sleep", "3600"]\n'
            "    deploy:\n      replicas: 2\n"
        )
        assert other.deploy(compose, "bye").returncode == 0
        other.wait_running("bye_idle", 2)
        assert len(other.containers("bye_idle")) == 2
        assert _network_exists("bye_default")
        proc = other.proc
        assert proc is not None
        refused = other.cli("leave")
        assert refused.returncode == 1 and "--force" in refused.stderr
        out = other.cli("leave", "--force")
        assert out.returncode == 0, out.stderr
        assert proc.wait(20) is not None
        other.proc = None
        assert not other.containers("bye_idle")
        assert not _network_exists("bye_default"), "leave --force kept the stack's bridge"
        assert not (other.data_dir / "node.json").exists()
        wait_until(lambda: not _etcd_of(other.data_dir), timeout=10, what="etcd stopped")
    finally:
        other.destroy()


def _etcd_of(data_dir: Path) -> list[int]:
    """Processes still running an etcd on this data dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"etcd" in cmdline and f"--data-dir={data_dir}/etcd".encode() in cmdline:
            found.append(int(entry.name))
    return found


def _network_exists(name: str) -> bool:
    found = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", f"name=^{name}$"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return bool(found.stdout.strip())
