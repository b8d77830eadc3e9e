"""cluster: node failures and write latency on a 3-manager + 3-worker cluster.

Node containers on a private Docker network (``tests/cluster/harness.py``), each running
the daemon of this checkout (or the ``--ref`` export). Measured from inside a manager's
container by ``bench/cluster_probe.py`` (its own node's API with the admin credential,
and the mesh at its own address), so no CLI start-up is inside any timing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Bench, Row, ScenarioResult, log, median, not_measured, runs_text

NAME = "cluster"
TITLE = "Node failures and API write latency across nodes"
PORTS = {"bcl_wa": 18080, "bcl_wb": 18081}
PARKED = "bcl_parked"
REPLICAS = 2
WRITES, WRITE_RATE = 500, 50.0
SWARM_DOWN_S = 15.0  # documented: 5 s dispatcher heartbeat x 3 grace

METHOD = [
    "6 node containers (3 managers, 3 workers) on a private Docker network, formed with the "
    "join commands `init` prints; tasks run as sibling containers in their node's network "
    "namespace (the cluster harness's node mode), so `docker kill` of a node takes its tasks "
    "with it.",
    "Services: `wa` and `wb` (`swarmlite/demo-web:1` listening on 8080 and 8081, published 18080 "
    "and 18081, 2 replicas each, "
    "`node.role==worker`, `max_replicas_per_node: 1` because replicas in one node namespace share "
    "its ports, no healthcheck); `parked` (1 replica constrained to a label no node has, so it "
    "stays pending: its scale writes start no container).",
    "**Worker killed**: `docker kill` of the worker holding the most replicas; the clock starts "
    "just before the kill. Stops when the API of a surviving manager lists 2 running tasks of each "
    "service with none on the dead node **and** that manager's mesh answers 8 probes in a row on "
    "each port, none from the dead node (answers name the node). The worker is restarted between "
    "rounds. Median of 5 (2 with --quick).",
    "**Leader killed**: the leader from `node ls`; a surviving manager writes `scale parked=1|2` "
    "back to back through its own API (each bounded by 2 s); time from just before `docker kill` "
    "to the end of the first acknowledged write among those started after `docker kill` "
    "returned (so none the old leader could have taken). Also: when that "
    "manager's API first named a new leader, and when a scale written after that (to 3, 4, ... "
    "replicas, a slot that never existed) had been acted on (a task exists for the new slot: "
    "only the leader's orchestrator makes it; the writes go on until a new leader is named and "
    "3 were acknowledged after the kill). Whether the killed "
    "manager was also etcd's raft leader is noted per round. The old leader is restarted "
    "between rounds. "
    "Median of 5 (2 with --quick).",
    f"**Write latency**: {WRITES} `scale parked=1|2` calls at {WRITE_RATE:.0f}/s, open loop (each "
    "starts on schedule, whatever earlier ones do), through a follower manager's API over mutual "
    "TLS, timed in the client.",
    "Docker Swarm cannot be measured here (a multi-engine Swarm needs Docker-in-Docker, refused "
    "on this host): its figure is the documented default, 5 s dispatcher heartbeat x 3 = 15 s "
    "before a node is marked down, then rescheduling.",
]


def _harness() -> Any:
    from tests.cluster import harness

    return harness


def _join_commands(text: str) -> list[str]:
    return re.findall(r"^\s*(swarmlite join --token \S+ \S+)\s*$", text, re.MULTILINE)


def _compose() -> str:
    web = ""
    for full, port in PORTS.items():
        # Tasks share their node's namespace: each service listens on its own port.
        listen = port - 10000
        web += f"""\
  {full.split("_", 1)[1]}:
    image: swarmlite/demo-web:1
    environment:
      PORT: "{listen}"
    ports:
      - target: {listen}
        published: {port}
        protocol: tcp
    deploy:
      replicas: {REPLICAS}
      restart_policy:
        condition: any
        delay: 0s
      placement:
        constraints: ["node.role == worker"]
        max_replicas_per_node: 1
"""
    return (
        "services:\n"
        + web
        + """\
  parked:
    image: swarmlite/busybox:1
    command: ["sleep", "36000"]
    deploy:
      replicas: 1
      placement:
        constraints: ["node.labels.bench == never"]
"""
    )


class Probe:
    """``cluster_probe.py`` running inside one node container."""

    def __init__(self, cluster: Any, node: Any, script: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["docker", "exec", "-i", node.name, sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == "READY":
                return
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        err = self.proc.stderr.read()[-400:] if self.proc.stderr else ""
        raise RuntimeError(f"probe never ready: {err}")

    def go(self, stamp: float | str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{stamp}\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise RuntimeError("probe did not finish in time") from None
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"probe failed ({self.proc.returncode}): {err.strip()[-400:]}")
        return dict(json.loads(lines[-1]))


def _start_daemon(h: Any, cluster: Any, node: Any) -> None:
    cluster.sh(node, f"rm -f {h.DATA_DIR}/daemon.pid {h.DATA_DIR}/etcd.pid", check=True)
    cli = " ".join([sys.executable, "-m", "swarmlite.cli.main", "daemon"])
    h.docker("exec", "-d", node.name, "sh", "-c", f"exec {cli} >>{h.DATA_DIR}/daemon.log 2>&1")


def _restart(h: Any, cluster: Any, node: Any, via: Any, total: int) -> None:
    h.docker("start", node.name)
    cluster._point_resolver(node)
    _start_daemon(h, cluster, node)
    _wait_all_ready(h, cluster, via, total)


def _wait_all_ready(h: Any, cluster: Any, via: Any, total: int) -> None:
    h.wait_until(lambda: _all_ready(cluster, via, total), timeout=90, what="all nodes ready")


def _wait_slots(h: Any, cluster: Any, via: Any, service: str, duplicates: list[str]) -> None:
    """Wait until each slot of ``service`` has a running task; note a slot running twice."""

    def check() -> list[Any] | None:
        running = cluster.running(via, service)
        slots = [t["slot"] for t in running]
        return running if set(slots) == set(range(1, REPLICAS + 1)) else None

    running = h.wait_until(check, timeout=60, what=f"every slot of {service} running")
    slots = [t["slot"] for t in running]
    twice = sorted({s for s in slots if slots.count(s) > 1})
    if twice:
        where = [
            f"{t['id'][:10]} on {t['node_id'][:6]} created {t['created_at']:.1f}"
            for t in running
            if t["slot"] in twice
        ]
        text = f"{service} slot(s) {twice} running twice: {where}"
        if text not in duplicates:
            duplicates.append(text)
            log(f"cluster: {text}")


def _all_ready(cluster: Any, via: Any, total: int) -> bool:
    nodes = cluster.node_ls(via)
    return len(nodes) == total and all(n["status"]["state"] == "ready" for n in nodes)


def _leader(cluster: Any, via: Any) -> str:
    """The hostname ``node ls`` marks Leader (its row may carry a ``*`` for "this node")."""
    names = {n.hostname for n in cluster.nodes}
    out = cluster.exec(via, "node", "ls", check=True, timeout=20).stdout
    for line in out.splitlines()[1:]:
        cells = line.split()
        if cells and cells[-1] == "Leader":
            return next((c for c in cells if c in names), "")
    return ""


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def run(bench: Bench) -> ScenarioResult:
    h = _harness()
    rounds = 2 if bench.quick else 5
    result = ScenarioResult(NAME, TITLE, METHOD)
    notes = result.notes
    script_dir = h.REPO / ".cache" / "bench-cluster"  # mounted read-only in every node
    script_dir.mkdir(parents=True, exist_ok=True)
    script = script_dir / f"probe-{bench.run_id}.py"
    shutil.copy(Path(__file__).with_name("cluster_probe.py"), script)
    compose = script_dir / f"stack-{bench.run_id}.yml"
    compose.write_text(_compose())
    if Path(h.REPO).resolve() != Path(__file__).resolve().parents[1]:
        # --ref: the nodes run an export, and the venv's editable install points at the
        # working tree, which is not mounted: put the export first on their path.
        mounts = h._mounts
        h._mounts = lambda: [*mounts(), "-e", f"PYTHONPATH={h.REPO}"]
    cluster = h.Cluster()
    try:
        with cluster:
            try:
                rows = _measure(h, cluster, script, compose, rounds, notes)
            except Exception as exc:
                log(f"cluster: failed: {exc!r}")
                return not_measured(NAME, TITLE, METHOD, f"cluster run failed: {exc!r}"[:400])
            result.rows += rows
    finally:
        script.unlink(missing_ok=True)
        compose.unlink(missing_ok=True)
        _sweep(h, cluster, bench)
    return result


def _sweep(h: Any, cluster: Any, bench: Bench) -> None:
    """Task containers an agent started after the harness listed them but before their node
    container was removed outlive ``Cluster.close``: remove them, and say so."""
    time.sleep(1.0)
    for node in cluster.nodes:
        if not node.node_id:
            continue
        ids = h.docker(
            "ps", "-aq", "--filter", f"label=swarmlite.node={node.node_id}", check=False
        ).stdout.split()
        if ids:
            h.docker("rm", "-f", "-v", *ids, check=False)
            bench.leaks.append(
                f"{len(ids)} task container(s) of {node.hostname} outlived `Cluster.close()` "
                "(started while it ran; removed by the benchmark)"
            )


def _measure(
    h: Any, cluster: Any, script: Path, compose: Path, rounds: int, notes: list[str]
) -> list[Row]:
    t = time.monotonic()
    first = cluster.add_node()
    joins = _join_commands(cluster.init(first))
    worker_cmd, manager_cmd = joins
    managers, workers = [first], []
    for role, cmd, group in (("manager", manager_cmd, managers), ("worker", worker_cmd, workers)):
        for _ in range(2 if role == "manager" else 3):
            node = cluster.add_node()
            token, addr = cmd.split()[3], cmd.split()[4]
            cluster.join(node, token, addr.rsplit(":", 1)[0])
            group.append(node)
    total = len(managers) + len(workers)
    h.wait_until(lambda: _all_ready(cluster, first, total), timeout=90, what="6 nodes ready")
    cluster.exec(first, "deploy", "-f", str(compose), "--stack", "bcl", "--detach", check=True)
    for svc in PORTS:
        cluster.wait_running(first, svc, REPLICAS, timeout=120)
    log(f"cluster: 3 managers + 3 workers up, stack running ({time.monotonic() - t:.0f}s)")
    rows: list[Row] = []

    # -- write latency, through a follower ------------------------------------------
    leader_host = _leader(cluster, first)
    follower = next(m for m in managers if m.hostname != leader_host)
    probe = Probe(cluster, follower, script, "rate", PARKED, str(WRITES), str(WRITE_RATE))
    out = probe.result(timeout=120)
    lat = out["lat_ms"]
    if lat:
        p50, p99 = _pct(lat, 0.5), _pct(lat, 0.99)
        rows.append(
            Row(
                f"API write p50 / p99, {WRITES} scales at {WRITE_RATE:.0f}/s",
                f"{p50:.1f} / {p99:.1f} ms",
                "-",
                "-",
                "p99 < 50 ms",
                ("PASS" if p99 < 50 and not out["n_errors"] else "MISS")
                + (f" ({out['n_errors']} errors)" if out["n_errors"] else ""),
            )
        )
        notes.append(
            f"writes: {len(lat)} acknowledged, {out['n_errors']} failed {out['errors']}, in "
            f"{out['seconds']:.1f} s; max {max(lat):.1f} ms, p90 {_pct(lat, 0.9):.1f} ms "
            f"(via {follower.hostname}; leader {leader_host})"
        )
    log(f"cluster: writes p50/p99 {out.get('lat_ms') and (_pct(lat, 0.5), _pct(lat, 0.99))}")

    # -- worker killed ---------------------------------------------------------------------
    targets = ",".join(f"{s}:{p}" for s, p in PORTS.items())
    routed: list[float] = []
    running: list[float] = []
    duplicates: list[str] = []
    for k in range(rounds):
        try:
            for svc in PORTS:
                _wait_slots(h, cluster, first, svc, duplicates)
            per: dict[str, int] = {}
            for svc in PORTS:
                for task in cluster.running(first, svc):
                    per[task["node_id"]] = per.get(task["node_id"], 0) + 1
            victim = max(workers, key=lambda w: per.get(w.node_id, 0))
            via = managers[k % len(managers)]
            probe = Probe(
                cluster,
                via,
                script,
                "moved",
                victim.node_id,
                victim.hostname,
                via.ip,
                targets,
                str(REPLICAS),
                "40",
            )
            probe.wait_ready()
            stamp = time.time()
            cluster.kill(victim)
            probe.go(stamp)
            out = probe.result(timeout=60)
            if out["routed_s"] is None:
                raise RuntimeError(f"not moved and routed in 40 s: {out}")
            running.append(out["running_s"])
            routed.append(out["routed_s"])
            log(
                f"cluster: worker kill {k + 1} ({victim.hostname}, {per.get(victim.node_id, 0)} "
                f"replicas): running {out['running_s']:.2f}s, routed {out['routed_s']:.2f}s"
            )
            notes.append(
                f"worker kill {k + 1}: {victim.hostname} held {per.get(victim.node_id, 0)} "
                f"replicas; answers afterwards {out['answers']}"
            )
            _restart(h, cluster, victim, first, total)
        except Exception as exc:
            notes.append(f"worker kill {k + 1}: {exc!r}"[:400])
            log(f"cluster: worker kill {k + 1} failed: {exc!r}")
            for w in workers:  # bring back anything left down
                if h.docker("inspect", "-f", "{{.State.Running}}", w.name).stdout.strip() != "true":
                    _restart(h, cluster, w, first, total)
    rows.append(
        Row(
            "slots seen running twice (before a worker kill round)",
            str(len(duplicates)),
            "-",
            "-",
            "0",
            "PASS" if not duplicates else "MISS (see notes)",
        )
    )
    notes.extend(duplicates)
    if routed:
        m = median(routed)
        rows.append(
            Row(
                "worker killed -> its replicas running and routed elsewhere",
                f"{m:.2f} s"
                + (f" ({len(routed)} of {rounds} rounds)" if len(routed) < rounds else ""),
                f"Swarm {SWARM_DOWN_S:.0f} s before the node is even marked down (documented)",
                f"{m / SWARM_DOWN_S:.2f}x",
                "< 6 s",
                "PASS" if m < 6 else "MISS",
            )
        )
        rows.append(
            Row(
                "worker killed -> replacements running (API)",
                f"{median(running):.2f} s",
                "-",
                "-",
                "-",
                "-",
            )
        )
        notes.append(
            f"runs (s): worker routed [{runs_text(routed)}], running [{runs_text(running)}]"
        )
    else:
        rows.append(
            Row(
                "worker killed -> replicas routed elsewhere",
                "n/a",
                "-",
                "-",
                "< 6 s",
                "not measured: every round failed (see notes)",
            )
        )

    # -- leader killed ---------------------------------------------------------------------
    acked: list[float] = []
    seen_new: list[float] = []
    acted: list[float] = []
    for k in range(rounds):
        try:
            leader_host = h.wait_until(
                lambda: _leader(cluster, managers[-1]), timeout=30, what="a leader"
            )
            leader = next(m for m in managers if m.hostname == leader_host)
            via = next(m for m in managers if m is not leader)
            probe = Probe(cluster, via, script, "writer", PARKED, "20", str(3 + k))
            probe.wait_ready()
            time.sleep(0.5)
            stamp = time.time()
            cluster.kill(leader)
            probe.go(f"{stamp} {time.time()}")
            out = probe.result(timeout=60)
            if out["first_ack_s"] is None:
                raise RuntimeError(f"no write acknowledged in 20 s: {out}")
            acked.append(out["first_ack_s"])
            old_id = leader.node_id[:12]
            changes = [t for t, lid in out["leaders"] if t > 0 and lid and lid != old_id]
            if changes:
                seen_new.append(changes[0])
            if out["acted_s"] is not None:
                acted.append(out["acted_s"])
            raft = "was" if out["etcd_leader"] == old_id else "was not"
            log(
                f"cluster: leader kill {k + 1} ({leader_host}, {raft} etcd's raft leader): "
                f"first ack {out['first_ack_s']:.2f}s, "
                f"new leader seen {changes[0] if changes else None}, "
                f"scale to {3 + k} acted on {out['acted_s']}"
            )
            notes.append(
                f"leader kill {k + 1}: {leader_host} ({raft} etcd's raft leader); "
                f"{out['failed_after_kill']} writes refused or timed out after the kill "
                f"{out['failures']}; leader seen by {via.hostname} (s after kill, id): "
                f"{out['leaders']}; last write acked {out['last_ack_s']}, "
                f"scale to {3 + k} acted on {out['acted_s']}"
            )
            cluster.start(leader)
            _wait_all_ready(h, cluster, via, total)
        except Exception as exc:
            notes.append(f"leader kill {k + 1}: {exc!r}"[:400])
            log(f"cluster: leader kill {k + 1} failed: {exc!r}")
            for m in managers:
                if h.docker("inspect", "-f", "{{.State.Running}}", m.name).stdout.strip() != "true":
                    cluster.start(m)
    if acked:
        m = median(acked)
        rows.append(
            Row(
                "leader killed -> first acknowledged write",
                f"{m:.2f} s",
                "-",
                "-",
                "< 3 s",
                "PASS" if m < 3 else "MISS",
            )
        )
        if seen_new:
            rows.append(
                Row(
                    "leader killed -> a new leader named by the API",
                    f"{median(seen_new):.2f} s",
                    "-",
                    "-",
                    "-",
                    "-",
                )
            )
        if acted:
            rows.append(
                Row(
                    "leader killed -> a later scale acted on (the new leader's orchestrator)",
                    f"{median(acted):.2f} s"
                    + (
                        f" ({len(acted)} of {len(acked)} rounds)" if len(acted) < len(acked) else ""
                    ),
                    "-",
                    "-",
                    "-",
                    "-",
                )
            )
        notes.append(
            f"runs (s): leader first ack [{runs_text(acked)}], "
            f"new leader seen [{runs_text(seen_new)}], scale acted on [{runs_text(acted)}]"
        )
    else:
        rows.append(
            Row(
                "leader killed -> first acknowledged write",
                "n/a",
                "-",
                "-",
                "< 3 s",
                "not measured: every round failed (see notes)",
            )
        )
    return rows
