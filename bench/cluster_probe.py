"""Run inside a manager's node container by bench/cluster.py: timed API calls there.

Talks only to its own node's API (``/data``'s admin credential) and to the mesh at
its own node's address. Prints one JSON line; "READY" first when the caller must act.
Every mode is bounded in time. Wall-clock (time.time) stamps: the node containers
share the host's clock, so the caller's kill stamp and these compare directly.

    python cluster_probe.py rate SERVICE COUNT PER_S
    python cluster_probe.py writer SERVICE SECONDS FRESH      (reads the kill stamps on stdin)
    python cluster_probe.py moved DEAD_ID DEAD_HOST IP SVC:PORT,... REPLICAS SECONDS   (stdin)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())  # the node runs in the repository (the harness's -w)

from swarmlite.api.client import ApiClient

RUNNING = 5


def client() -> ApiClient:
    return ApiClient.for_data_dir(Path("/data"), timeout=5)


async def stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def rate(service: str, count: int, per_s: float) -> dict[str, object]:
    """Open loop: write k starts at t0 + k/per_s whatever the earlier ones do."""
    api = client()
    await api.scale(service, 1)  # warm the TLS session
    lat: list[float] = []
    errors: list[str] = []

    async def one(k: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        t = time.perf_counter()
        try:
            await asyncio.wait_for(api.scale(service, 1 + k % 2), 5)
            lat.append((time.perf_counter() - t) * 1000)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {str(exc)[:80]}")

    t0 = time.perf_counter() + 0.2
    await asyncio.gather(*(one(k, t0 + k / per_s) for k in range(count)))
    took = time.perf_counter() - t0
    await api.close()
    return {"lat_ms": lat, "errors": errors[:5], "n_errors": len(errors), "seconds": took}


async def etcd_leader() -> str:
    """The node id of etcd's raft leader, as this node's etcd member reports it."""
    from swarmlite.config import load_config
    from swarmlite.store.etcd_member import EtcdConfig

    try:
        config = load_config(Path("/data"))
        etcd = EtcdConfig(
            name=config.node_id,
            data_dir=Path("/data/etcd"),
            client_port=config.etcd_client_port,
            tls_dir=Path("/data/certs"),
        ).connect(timeout=2)
        try:
            status = await asyncio.wait_for(etcd.status(), 3)
            return str(status.leader.name) if status.leader else "?"
        finally:
            await etcd.close()
    except Exception as exc:
        return f"? ({type(exc).__name__})"


async def writer(service: str, seconds: float, fresh: int) -> dict[str, object]:
    """Scale writes back to back (each bounded by 2 s), and the leader as this API sees it."""
    api = client()
    calls: list[tuple[float, float, bool, str]] = []
    leaders: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def writes() -> None:
        while not stop.is_set():
            k = 1 + sum(1 for c in calls if c[2])  # the value depends on acks only
            t = time.time()
            try:
                await asyncio.wait_for(api.scale(service, 1 + k % 2), 2)
                calls.append((t, time.time(), True, ""))
            except Exception as exc:
                calls.append((t, time.time(), False, f"{type(exc).__name__}: {str(exc)[:60]}"))
                await asyncio.sleep(0.02)

    async def leader() -> None:
        while not stop.is_set():
            try:
                info = await asyncio.wait_for(api.info(), 1)
                if not leaders or leaders[-1][1] != info.leader_id:
                    leaders.append((time.time(), info.leader_id))
            except Exception:
                pass
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(writes()), asyncio.create_task(leader())]
    deadline = time.time() + 30
    while not any(c[2] for c in calls) and time.time() < deadline:
        await asyncio.sleep(0.05)
    raft_leader = await etcd_leader()
    print("READY", flush=True)
    # Two stamps: just before `docker kill` (the clock) and once it returned (the leader is
    # dead): only writes started after the second one count, so a write the old leader
    # committed while the kill was on its way is not taken for one the new one took.
    killed, dead = (float(x) for x in (await stdin_line()).split())
    end = killed + seconds

    def new_leader() -> bool:
        return any(t > killed and lid and lid != leaders[0][1] for t, lid in leaders)

    while time.time() < end:
        if sum(1 for c in calls if c[2] and c[0] >= dead) >= 3 and new_leader():
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    # A scale takes effect only through the (new) leader's orchestrator: one more write,
    # to ``fresh`` replicas (a slot no earlier write or round created; retried until
    # acknowledged), then wait until a task exists for that slot. (Not "until the live
    # task count matches": a scaled-down slot whose task was never assigned stays
    # blocked, its replacement "waiting for" a task no agent will ever stop.)
    acted_at = None
    acked_3 = False
    seen_live: object = None
    while time.time() < end:
        try:
            if not acked_3:
                await asyncio.wait_for(api.scale(service, fresh), 2)
                acked_3 = True
            tasks_now = await asyncio.wait_for(api.tasks(service=service), 2)
            seen_live = [(t.slot, int(t.desired_state), int(t.status.state)) for t in tasks_now]
            if any(t.slot == fresh and t.desired_state <= RUNNING for t in tasks_now):
                acted_at = time.time() - killed
                break
        except Exception as exc:
            seen_live = f"{type(exc).__name__}: {str(exc)[:80]}"
        await asyncio.sleep(0.05)
    await api.close()
    after = [c for c in calls if c[2] and c[0] >= dead]
    failed = [c[3] for c in calls if not c[2] and c[0] >= dead]
    return {
        "kill_took_s": dead - killed,
        "first_ack_s": after[0][1] - killed if after else None,
        "last_ack_s": after[-1][1] - killed if after else None,
        "acted_s": acted_at,
        "leaders": [(round(t - killed, 3), lid[:12]) for t, lid in leaders],
        "failed_after_kill": len(failed),
        "failures": sorted(set(failed))[:4],
        "etcd_leader": raft_leader[:12],
        "acted_last_seen": None if acted_at else seen_live,
    }


def mesh_body(ip: str, port: int) -> str | None:
    try:
        with socket.create_connection((ip, port), timeout=0.5) as sock:
            sock.settimeout(0.5)
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return body.decode(errors="replace").strip() if b" 200 " in head.split(b"\r\n")[0] else None


async def moved(
    dead_id: str, dead_host: str, ip: str, targets: str, replicas: int, seconds: float
) -> dict[str, object]:
    """Until every slot of every service has a running task, none on the dead node (a slot
    running twice, a product bug, still counts once), and the mesh
    here answers 8 probes in a row per port, none from the dead node."""
    api = client()
    ports = [(s, int(p)) for s, p in (t.split(":") for t in targets.split(","))]
    print("READY", flush=True)
    killed = float(await stdin_line())
    running_at = routed_at = None
    seen: set[str] = set()
    last: object = None
    while time.time() < killed + seconds:
        if running_at is None:
            ok = True
            for service, _ in ports:
                try:
                    tasks = await asyncio.wait_for(api.tasks(service=service), 2)
                except Exception as exc:
                    last = f"{service}: {type(exc).__name__}"
                    ok = False
                    break
                live = [
                    t for t in tasks if t.status.state == RUNNING and t.desired_state == RUNNING
                ]
                slots = {t.slot for t in live if t.node_id != dead_id}
                if slots != set(range(1, replicas + 1)) or any(t.node_id == dead_id for t in live):
                    last = {
                        service: sorted(
                            f"{t.slot}:{t.node_id[:6]}:{int(t.status.state)}" for t in tasks
                        )
                    }
                    ok = False
                    break
            if ok:
                running_at = time.time() - killed
        if running_at is not None:
            good = True
            for _, port in ports:
                for _ in range(8):
                    body = await asyncio.get_running_loop().run_in_executor(
                        None, mesh_body, ip, port
                    )
                    if body is None or body.endswith(" " + dead_host):
                        good = False
                        break
                    seen.add(body)
                if not good:
                    break
            if good:
                routed_at = time.time() - killed
                break
        await asyncio.sleep(0.05)
    await api.close()
    return {
        "running_s": running_at,
        "routed_s": routed_at,
        "answers": sorted(seen),
        "last": None if routed_at else last,
    }


async def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "rate":
        out = await rate(argv[1], int(argv[2]), float(argv[3]))
    elif mode == "writer":
        out = await writer(argv[1], float(argv[2]), int(argv[3]))
    elif mode == "moved":
        out = await moved(argv[1], argv[2], argv[3], argv[4], int(argv[5]), float(argv[6]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
