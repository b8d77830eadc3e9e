"""The daemon process as the CLI sees it: pid file, liveness, stop; leave's cleanup."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlite.cli import process
from swarmlite.cli.daemon_cmds import primary_ipv4, read_join_tokens, remove_node_state


def _started(proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Wait until the child's command line is readable (it is empty right after fork)."""
    deadline = time.monotonic() + 5
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    # "swarmlite" in its command line, so running_pid takes it for a daemon.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "swarmlite-test"])
    yield proc
    proc.kill()
    proc.wait()


def test_running_pid(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    assert process.running_pid(tmp_path) is None
    (tmp_path / "daemon.pid").write_text("garbage")
    assert process.running_pid(tmp_path) is None
    process.write_pid(tmp_path, sleeper.pid)
    assert process.running_pid(tmp_path) == sleeper.pid


def test_a_reused_pid_of_another_program_is_not_the_daemon(tmp_path: Path) -> None:
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            _started(other)
            process.write_pid(tmp_path, other.pid)
            assert process.running_pid(tmp_path) is None
        finally:
            other.kill()


def test_stop_daemon_terminates_and_removes_the_pid_file(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    process.write_pid(tmp_path, sleeper.pid)
    assert process.stop_daemon(tmp_path, grace=10) == sleeper.pid
    assert sleeper.wait(timeout=5) != 0
    assert not (tmp_path / "daemon.pid").exists()
    assert process.stop_daemon(tmp_path) is None


def test_remove_pid_keeps_a_successors_file(tmp_path: Path) -> None:
    process.write_pid(tmp_path, 123)
    process.remove_pid(tmp_path, 456)
    assert (tmp_path / "daemon.pid").read_text() == "123\n"
    process.remove_pid(tmp_path, 123)
    assert not (tmp_path / "daemon.pid").exists()


def test_remove_node_state_keeps_logs_only(tmp_path: Path) -> None:
    for name in ("certs", "admin", "etcd"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    for name in ("node.json", "daemon.pid", "etcd.pid", "join-tokens.json", "daemon.log"):
        (tmp_path / name).write_text("x")
    remove_node_state(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.log"]


def test_primary_ipv4_is_an_ipv4_address() -> None:
    parts = primary_ipv4().split(".")
    assert len(parts) == 4 and all(p.isdigit() for p in parts)


def test_read_join_tokens_from_bootstrap(tmp_path: Path) -> None:
    assert read_join_tokens(tmp_path) == {}
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "join-tokens.json").write_text('{"worker": "W", "manager": "M"}')
    assert read_join_tokens(tmp_path) == {"worker": "W", "manager": "M"}
