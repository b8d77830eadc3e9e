"""The node's routing mesh over several event loops (one per CPU but one by default).

``MeshWorkers`` is what the agent drives: this process's ``MeshProxy`` plus ``extra``
worker processes (``swarmlite.proxy.worker``) that bind the same listeners with
``SO_REUSEPORT``, so new connections spread over every loop as over nginx's workers.
One Python event loop tops out near one core; the workers let the mesh use the rest.

Every snapshot goes to every loop; ``drained`` holds until all of them are drained.
A worker that dies is started again (1 s, doubling to 30 s) with the last snapshot;
meanwhile the other loops serve: the kernel only hands connections to open listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Protocol

import msgspec

from swarmlite.proxy.mesh import MeshProxy
from swarmlite.proxy.worker import MAX_LINE, Command, Drained, Reply, Stop
from swarmlite.spec.routes import RoutesSnapshot

log = logging.getLogger("swarmlite.proxy")

READY_TIMEOUT = 30.0
MAX_RESTART_DELAY = 30.0
# A worker started this long ago that dies again gets the first restart delay again.
STEADY = 60.0


class RawApply(msgspec.Struct, tag="apply", frozen=True):
    """``Apply`` with its snapshot encoded once for every worker."""

    id: int
    snapshot: msgspec.Raw


class Mesh(Protocol):
    """What the agent needs of a node's mesh (``MeshProxy`` or ``MeshWorkers``)."""

    async def start(self) -> None: ...

    async def apply(self, snapshot: RoutesSnapshot) -> str: ...

    async def drained(self, task_id: str, timeout: float) -> bool: ...

    async def stop(self, grace: float = 5.0) -> None: ...


# Each loop is a Python process of ~30 MB serving ~20k requests/s: past 8, the memory
# buys little on most nodes (``mesh_workers`` may still ask for more).
DEFAULT_MAX_LOOPS = 8


def default_workers() -> int:
    """One event loop per CPU this process may run on but one, at least 1, at most 8.

    A node's CPUs also run its containers, etcd and the control plane; unlike an nginx
    box, the mesh leaves them one. Measured on 2 CPUs shared with the backends and the
    load: a second loop lowered the HTTP peak (0.87x nginx with 2 workers, against 0.99x
    with one each) and left the added p99 where it was."""
    return loops_for(len(os.sched_getaffinity(0)))


def loops_for(cpus: int) -> int:
    return max(1, min(DEFAULT_MAX_LOOPS, cpus - 1))


MIGRATE_REQUESTS = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def migrate_requests(knob: Path = MIGRATE_REQUESTS) -> str:
    """Have the kernel (5.14+) hand the connections queued on a closing listener to
    another listener of its SO_REUSEPORT group, so a worker that dies or stops resets
    none of the connections it had not yet accepted. The knob is the network
    namespace's, and only changes how SO_REUSEPORT groups close."""
    try:
        if knob.read_text().strip() == "1":
            return "already on"
        knob.write_text("1\n")
    except OSError as exc:
        return f"not available ({exc.strerror or exc})"
    return "turned on"


class WorkerProcess:
    """One mesh worker process: started, answered, restarted when it dies."""

    def __init__(self, index: int, node_id: str, bind_host: str) -> None:
        self.index = index
        self._argv = [sys.executable, "-m", "swarmlite.proxy.worker", node_id, bind_host]
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = False
        self._pending: dict[int, asyncio.Future[Reply | None]] = {}
        self._next_id = 1
        self._snapshot: bytes | None = None  # the last Apply sent, encoded
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self.restarts = 0

    @property
    def alive(self) -> bool:
        return self._ready and self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive and self._proc is not None else None

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise())

    async def wait_started(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._started.wait(), timeout)
        return self.alive

    async def _supervise(self) -> None:
        delay = 1.0
        loop = asyncio.get_running_loop()
        while not self._stopping:
            began = loop.time()
            try:
                await self._run_once()
            except Exception as exc:  # a failed start is retried like a crash
                log.error("mesh worker %d failed: %s", self.index, exc)
                self._started.set()
            if self._stopping:
                return
            if loop.time() - began > STEADY:
                delay = 1.0
            log.error("mesh worker %d exited; starting it again in %.0f s", self.index, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)
            self.restarts += 1

    async def _run_once(self) -> None:
        proc = self._proc = await asyncio.create_subprocess_exec(
            *self._argv,
            str(self.index),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_LINE,
        )
        assert proc.stdout is not None
        try:
            first = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
            if msgspec.json.decode(first, type=Reply).id != 0:
                raise RuntimeError(f"unexpected first line {first[:80]!r}")
            sent: bytes | None = None
            # A restart: serve the last routes before taking requests (again if they
            # changed while it applied them).
            while self._snapshot is not None and self._snapshot is not sent:
                sent = self._snapshot
                self._write(sent)
                reply = msgspec.json.decode(await proc.stdout.readline(), type=Reply)
                log.info("mesh worker %d applied %s", self.index, reply.decision)
            self._ready = True
            self._started.set()
            while line := await proc.stdout.readline():
                reply = msgspec.json.decode(line, type=Reply)
                fut = self._pending.pop(reply.id, None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        finally:
            self._ready = False
            self._started.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_result(None)  # a dead worker serves nothing: nothing to wait for
            self._pending.clear()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            code = await proc.wait()
            if not self._stopping:
                log.error("mesh worker %d (pid %d) exited with code %s", self.index, proc.pid, code)

    def _write(self, line: bytes) -> None:
        proc = self._proc
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.write(line)

    async def call(self, cmd: Command | RawApply) -> Reply | None:
        """Send ``cmd`` (its id is replaced); None if the worker is not running."""
        if not self.alive:
            return None
        msg_id = self._next_id
        self._next_id += 1
        line = msgspec.json.encode(msgspec.structs.replace(cmd, id=msg_id)) + b"\n"
        if isinstance(cmd, RawApply):
            self._snapshot = line
        fut: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        self._write(line)
        return await fut

    def remember(self, snapshot_line: bytes) -> None:
        """The snapshot a (re)starting worker applies first, when it missed the last Apply."""
        self._snapshot = snapshot_line

    async def stop(self, grace: float) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None and self._ready:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.call(Stop(id=0, grace=grace)), grace + 3.0)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        supervisor = self._supervisor
        if supervisor is not None:
            # It reaps the process; cancelled only if that hangs or it is sleeping.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(supervisor), 3.0)
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor


class MeshWorkers:
    """This process's ``MeshProxy`` and ``extra`` worker processes, as one mesh."""

    def __init__(self, local: MeshProxy, extra: int) -> None:
        self.local = local
        self.workers = [
            WorkerProcess(i + 1, local.local_node_id, local.bind_host) for i in range(extra)
        ]

    async def start(self) -> None:
        await self.local.start()
        if self.workers:
            log.info("mesh: net.ipv4.tcp_migrate_req %s", migrate_requests())
        for w in self.workers:
            w.start()
        # Not waited for: until a worker listens, the kernel gives its share to the others.

    async def wait_workers(self, timeout: float = READY_TIMEOUT) -> int:
        """Wait for the workers' first start; returns how many are running."""
        got = await asyncio.gather(*(w.wait_started(timeout) for w in self.workers))
        return sum(got)

    async def apply(self, snapshot: RoutesSnapshot) -> str:
        if not self.workers:
            return await self.local.apply(snapshot)
        cmd = RawApply(id=0, snapshot=msgspec.Raw(msgspec.json.encode(snapshot)))
        for w in self.workers:
            if not w.alive:
                w.remember(msgspec.json.encode(cmd) + b"\n")
        local_apply = asyncio.ensure_future(self.local.apply(snapshot))
        replies = await asyncio.gather(*(w.call(cmd) for w in self.workers if w.alive))
        local = await local_apply
        served = 1 + sum(r is not None for r in replies)
        decision = f"{local} loops={served}/{1 + len(self.workers)}"
        # Each worker logs its own failed listeners; the count says some loop has them.
        failed = sum(r.errors for r in replies if r is not None)
        if failed:
            decision += f" worker_errors={failed}"
        if failed or served <= len(self.workers):
            log.warning("mesh applied %s", decision)
        return decision

    async def drained(self, task_id: str, timeout: float) -> bool:
        ask = Drained(id=0, task_id=task_id, timeout=timeout)
        local = asyncio.ensure_future(self.local.drained(task_id, timeout))
        replies = await asyncio.gather(*(w.call(ask) for w in self.workers))
        # A worker not running has nothing in flight.
        return await local and all(r is None or r.drained for r in replies)

    async def stop(self, grace: float = 5.0) -> None:
        await asyncio.gather(self.local.stop(grace), *(w.stop(grace) for w in self.workers))
