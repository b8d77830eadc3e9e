"""schedule: 10,000 replicas onto 200 simulated nodes through the real store.

In-process and cheap: a fresh single-member etcd (plain http on 127.0.0.1), swarmlite's
``Store``, ``StateCache``, ``Orchestrator`` and ``SchedulerLoop`` exactly as a leader
runs them, 200 ``Node`` objects written straight into etcd (ready, active, 4 CPUs,
64 GiB) and no agent at all: nothing runs the tasks, so they stay ASSIGNED.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import tempfile
import time
from pathlib import Path

from bench.common import Bench, Row, ScenarioResult, log, median, not_measured, runs_text

NAME = "schedule"
TITLE = "Place 10,000 tasks on 200 simulated nodes"
NODES = 200
REPLICAS = 10_000
TARGET = 2000.0  # tasks/s
TIMEOUT = 120.0

METHOD = [
    f"In one process: a fresh single-member etcd (Debian's etcd 3.4, fsync on, plain http on "
    f"127.0.0.1), and swarmlite's `Store`, `StateCache`, `Orchestrator` and `SchedulerLoop` as "
    f"the leader wires them (no fence). {NODES} `Node` objects (ready, active, 4 CPUs, 64 GiB) "
    "are written straight into etcd; no agent runs, so placed tasks stay ASSIGNED.",
    f"The clock starts just before one service with {REPLICAS:,} replicas (64 MiB reserved each, "
    "constraint `node.role==worker`) is created in etcd. It stops when the cache, fed by the etcd "
    f"watch, shows all {REPLICAS:,} tasks ASSIGNED; then every task is read back from etcd "
    "(`Store.all(Task)`) and counted, so the number is what etcd holds, not what a loop meant to "
    "write. Also timed: when all tasks existed (the orchestrator's share).",
    "A fresh etcd per round; median of 3 rounds (1 with --quick).",
    "Context, not measured here: Kubernetes' scheduler_perf floor on 5,000 nodes is 680-810 "
    "pods/s; Nomad's C1M ran 3,750 placements/s.",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _round(workdir: Path, extra: list[int]) -> tuple[float, float, str]:
    """(seconds to all tasks created, seconds to all ASSIGNED, a note) for one fresh etcd."""
    from swarmlite.manager.orchestrator import Orchestrator
    from swarmlite.manager.scheduling import SchedulerLoop
    from swarmlite.spec.objects import (
        Node,
        NodeResources,
        NodeStatus,
        Service,
        Task,
        TaskState,
    )
    from swarmlite.spec.service import Placement, ResourceAmounts, Resources, ServiceSpec
    from swarmlite.store.cache import StateCache
    from swarmlite.store.etcd_member import EtcdConfig, EtcdMember
    from swarmlite.store.store import Put, Store, commit_chunked

    cfg = EtcdConfig(
        name="bench",
        data_dir=workdir / "etcd",
        client_port=_free_port(),
        peer_port=_free_port(),
    )
    member = EtcdMember(cfg, log_path=workdir / "etcd.log")
    await member.start(timeout=30)
    client = cfg.connect(timeout=30)
    store = Store(client)
    cache = StateCache(store)
    loops: list[Orchestrator | SchedulerLoop] = []
    try:
        now = time.time()
        nodes = [
            Node(
                id=f"sim{i:03d}",
                hostname=f"sim{i:03d}",
                addr=f"10.99.{i // 250}.{i % 250 + 1}",
                api_port=4377,
                resources=NodeResources(cpus=4.0, memory=64 * 1024**3),
                status=NodeStatus(state="ready", changed_at=now),
                created_at=now,
            )
            for i in range(NODES)
        ]
        await commit_chunked(store, [Put(n, 0) for n in nodes])
        await cache.start()
        loops = [Orchestrator(store, cache), SchedulerLoop(store, cache)]
        for loop in loops:
            await loop.start()
        spec = ServiceSpec(
            name="web",
            stack="bsched",
            image="swarmlite/busybox:1",
            replicas=REPLICAS,
            networks=(),
            resources=Resources(reservations=ResourceAmounts(memory=64 * 1024**2)),
            placement=Placement(constraints=("node.role==worker",)),
        )
        t0 = time.perf_counter()
        await store.create(Service(id="bsched-web", spec=spec, created_at=time.time()))
        created_at: float | None = None
        deadline = t0 + TIMEOUT
        seen = -1
        while time.perf_counter() < deadline:
            seen = await cache.wait_changed(seen, timeout=1.0)
            tasks = cache.view().tasks
            if created_at is None and len(tasks) >= REPLICAS:
                created_at = time.perf_counter() - t0
            if len(tasks) >= REPLICAS and all(
                v.value.status.state == TaskState.ASSIGNED for v in tasks.values()
            ):
                break
            await asyncio.sleep(0.02)  # count at most ~50 times a second
        else:
            raise TimeoutError(f"not all {REPLICAS} tasks ASSIGNED within {TIMEOUT:.0f}s")
        assigned_at = time.perf_counter() - t0
        # Read back with a client whose gRPC receive limit fits 10,000 tasks (~14 MB):
        # swarmlite's own client keeps gRPC's 4 MiB default (see the notes).
        import aetcd

        big = aetcd.Client(
            "127.0.0.1", cfg.client_port, timeout=30,
            options={"grpc.max_receive_message_length": 256 * 1024**2},
        )  # fmt: skip
        try:
            stored = await Store(big).all(Task)
        finally:
            await big.close()
        placed = [t for t in stored if t.value.status.state == TaskState.ASSIGNED]
        on_nodes = {t.value.node_id for t in placed}
        slots = {t.value.slot for t in placed}
        if len(slots) != REPLICAS or not on_nodes <= {n.id for n in nodes}:
            raise RuntimeError(
                f"etcd holds {len(stored)} tasks, {len(placed)} ASSIGNED covering {len(slots)} "
                f"slots, on {len(on_nodes)} nodes"
            )
        per_node = [sum(1 for t in placed if t.value.node_id == n.id) for n in nodes]
        note = (
            f"etcd: {len(stored)} tasks for {len(slots)} slots ({len(stored) - len(slots)} extra), "
            f"{len(placed)} ASSIGNED on {len(on_nodes)} nodes, {min(per_node)}-{max(per_node)} "
            "per node"
        )
        extra.append(len(stored) - len(slots))
        # Would a manager that starts now (a new leader) load this state? Its cache
        # begins with one snapshot read of every object through swarmlite's client.
        fresh = StateCache(Store(cfg.connect(timeout=30)))
        try:
            await asyncio.wait_for(fresh.start(), 10)
            note += "; a fresh StateCache loaded the state"
        except Exception as exc:
            note += f"; a fresh StateCache did NOT load the state in 10 s ({type(exc).__name__})"
        finally:
            await fresh.stop()
            await fresh._store.client.close()
        return created_at or assigned_at, assigned_at, note
    finally:
        for loop in reversed(loops):
            await loop.stop()
        await cache.stop()
        await client.close()
        await member.stop()


def run(bench: Bench) -> ScenarioResult:
    rounds = 1 if bench.quick else 3
    result = ScenarioResult(NAME, TITLE, METHOD)
    created: list[float] = []
    assigned: list[float] = []
    extra: list[int] = []  # tasks beyond one per slot, per round
    # The loops log one INFO line per pass; keep the benchmark's output readable.
    for name in ("swarmlite.orchestrator", "swarmlite.scheduler", "swarmlite.etcd"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for k in range(rounds):
        workdir = Path(tempfile.mkdtemp(prefix="swarmlite-bench-sched-", dir=bench.tmp))
        try:
            c, a, note = asyncio.run(_round(workdir, extra))
        except Exception as exc:
            result.notes.append(f"round {k + 1}: {exc!r}")
            log(f"schedule: round {k + 1} failed: {exc!r}")
            continue
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        created.append(c)
        assigned.append(a)
        result.notes.append(f"round {k + 1}: {note}")
        log(f"schedule: round {k + 1}: all created {c:.2f}s, all ASSIGNED {a:.2f}s ({note})")
    if not assigned:
        return not_measured(NAME, TITLE, METHOD, "every round failed: " + "; ".join(result.notes))
    secs = median(assigned)
    rate = REPLICAS / secs
    result.rows.append(
        Row(
            f"{REPLICAS:,} tasks x {NODES} nodes -> ASSIGNED in etcd",
            f"{rate:,.0f} tasks/s ({secs:.2f} s)",
            "k8s scheduler_perf 680-810/s (documented); Nomad C1M 3,750/s (documented)",
            f"{rate / 810:.1f}x k8s high; {rate / 3750:.2f}x Nomad",
            f">= {TARGET:,.0f} tasks/s",
            "PASS" if rate >= TARGET else "MISS",
        )
    )
    result.rows.append(
        Row(
            "of which: all tasks created (orchestrator)",
            f"{median(created):.2f} s",
            "-",
            f"{median(created) / secs:.2f} of the total",
            "-",
            "-",
        )
    )
    result.rows.append(
        Row(
            "extra tasks created (beyond one per slot)",
            ", ".join(str(e) for e in extra) + " per round",
            "-",
            "-",
            "0",
            "PASS" if not any(extra) else "MISS",
        )
    )
    result.notes.append(
        f"runs (s): all ASSIGNED [{runs_text(assigned)}], all created [{runs_text(created)}]"
    )
    result.notes.append(
        "The Kubernetes and Nomad figures are their published results on their own hardware and "
        "cluster sizes, not measured here: they place the number in context, they are not a "
        "like-for-like comparison."
    )
    return result
