"""The daemon as a process seen from the CLI: pid file, liveness, start detached, stop."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"


def pid_path(data_dir: Path) -> Path:
    return data_dir / PID_FILE


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _is_swarmlite(pid: int) -> bool:
    """False when the pid was reused by an unrelated program (where /proc tells)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc at all: trust the pid
    except OSError:
        return True
    # Empty while the process is still being set up (or exec'ing): cannot tell.
    return not cmdline or b"swarmlite" in cmdline


def running_pid(data_dir: Path) -> int | None:
    """The pid of this data dir's daemon if it is running, else None."""
    try:
        pid = int(pid_path(data_dir).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if pid <= 0 or not _is_alive(pid) or not _is_swarmlite(pid):
        return None
    return pid


def write_pid(data_dir: Path, pid: int) -> None:
    tmp = pid_path(data_dir).with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_path(data_dir))


def remove_pid(data_dir: Path, pid: int) -> None:
    """Remove the pid file if it still names ``pid`` (a successor may have rewritten it)."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        if int(pid_path(data_dir).read_text().strip()) == pid:
            pid_path(data_dir).unlink()


def start_detached(data_dir: Path) -> subprocess.Popen[bytes]:
    """``swarmlite daemon`` in a new session, output to ``daemon.log``, pid file written."""
    data_dir = data_dir.resolve()
    with open(data_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarmlite.cli.main", "daemon", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    write_pid(data_dir, proc.pid)
    return proc


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` exits; True if it did within ``timeout`` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:  # the kernel wakes us when the process exits
        try:
            readable, _, _ = select.select([fd], [], [], timeout)
            return bool(readable) or not _is_alive(pid)
        finally:
            os.close(fd)
    deadline = time.monotonic() + timeout  # no pidfd: poll
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return True
        time.sleep(0.1)
    return not _is_alive(pid)


def stop_daemon(data_dir: Path, grace: float = 30.0) -> int | None:
    """SIGTERM the daemon, SIGKILL it after ``grace`` seconds; the pid it had, or None."""
    pid = running_pid(data_dir)
    if pid is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_exit(pid, grace):
        print(
            f"WARNING: the daemon (pid {pid}) did not stop within {grace:g} s; killing it",
            file=sys.stderr,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 5.0)
    remove_pid(data_dir, pid)
    return pid


def last_log_line(data_dir: Path) -> str:
    try:
        lines = (data_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return ""
    return lines[-1].strip() if lines else ""
