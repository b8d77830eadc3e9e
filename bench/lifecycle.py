"""lifecycle: a rolling update (swarmlite vs Docker Swarm) and a secret change, one node.

Rolling update: 10 replicas of demo-web with a 1 s healthcheck, ``update_config:
{parallelism: 2, delay: 0s}``, updated by redeploying with a changed environment; the
clock runs from the deploy command to 10 new containers healthy and no old one running.
swarmlite is probed through its mesh at 50 req/s meanwhile. Secret change: two services
using one secret; ``swarmlite secret update`` until every replica reads the new content.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time

from bench.common import (
    HEALTH_INTERVAL_S,
    HEALTH_RETRIES,
    HEALTH_TEST,
    HEALTH_TIMEOUT_S,
    Bench,
    Row,
    ScenarioResult,
    containers,
    http_get,
    log,
    median,
    not_measured,
    runs_text,
)

NAME = "lifecycle"
TITLE = "Rolling update and secret change"
IMAGE = "swarmlite/demo-web:1"
PORT = 18430
REPLICAS = 10
CLIENT_RATE = 50.0
TIMEOUT = 120.0

METHOD = [
    f"Rolling update: {REPLICAS} replicas of `{IMAGE}`, healthcheck `/health` over `nc` (interval "
    f"{HEALTH_INTERVAL_S}s, timeout {HEALTH_TIMEOUT_S}s, retries {HEALTH_RETRIES}), "
    "`update_config: {parallelism: 2, delay: 0s}` (other settings default on both), the same "
    "for both contenders; the update is a redeploy of the same file with `MESSAGE` changed. The "
    "clock starts just before the deploy command and stops when the Docker API lists "
    f"{REPLICAS} running, healthy containers created after the update and none from before "
    "(polled every ~100 ms). swarmlite: `swarmlite deploy --detach`, the service published by "
    f"the mesh on {PORT}. Swarm: `docker stack deploy --resolve-image never`, `endpoint_mode: "
    "dnsrr` and no published port (no IPVS here, and 10 host-mode ports on one node would "
    "collide), so only its update time is measured. Runs alternate; median of 3 (1 with --quick).",
    f"Failed requests: during each swarmlite update a client sends `GET /` to the mesh at "
    f"{CLIENT_RATE:.0f} req/s (a fresh connection each, 2 s timeout) from the deploy command "
    "until 1 s after the update finished; any error or non-200 answer counts as failed.",
    "Secret change: services `a` and `b` (busybox `sleep`, 2 replicas each, `stop_grace_period: "
    "1s`) use the global secret `bsec`; the clock starts just before `swarmlite secret update "
    "bsec FILE` and stops when all 4 running containers of the two services read the new content "
    "from `/run/secrets/bsec` (read with `docker exec cat`, polled). Median of 3 (1 with --quick).",
]


def sl_compose(message: str) -> str:
    return f"""\
services:
  web:
    image: {IMAGE}
    environment:
      MESSAGE: "{message}"
    ports:
      - "{PORT}:8080"
    healthcheck:
      test: ["CMD-SHELL", {json.dumps(HEALTH_TEST)}]
      interval: {HEALTH_INTERVAL_S}s
      timeout: {HEALTH_TIMEOUT_S}s
      retries: {HEALTH_RETRIES}
    deploy:
      replicas: {REPLICAS}
      update_config:
        parallelism: 2
        delay: 0s
"""


def swarm_compose(message: str) -> str:
    return f"""\
version: "3.8"
services:
  web:
    image: {IMAGE}
    environment:
      MESSAGE: "{message}"
    healthcheck:
      test: ["CMD-SHELL", {json.dumps(HEALTH_TEST)}]
      interval: {HEALTH_INTERVAL_S}s
      timeout: {HEALTH_TIMEOUT_S}s
      retries: {HEALTH_RETRIES}
    deploy:
      replicas: {REPLICAS}
      endpoint_mode: dnsrr
      update_config:
        parallelism: 2
        delay: 0s
"""


SECRET_COMPOSE = """\
services:
  a:
    image: swarmlite/busybox:1
    command: ["sleep", "36000"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
    secrets: [bsec]
  b:
    image: swarmlite/busybox:1
    command: ["sleep", "36000"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
    secrets: [bsec]
secrets:
  bsec:
    external: true
"""


class Client(threading.Thread):
    """GET / at a fixed rate (bounded by ``stop`` and a hard cap of 10 minutes)."""

    def __init__(self, port: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.port, self.rate = port, rate
        self.ok = 0
        self.failed = 0
        self.bodies: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        k = 0
        while not self.stop.is_set() and time.perf_counter() - t0 < 600:
            body = http_get(self.port, timeout=2.0)
            if body is None:
                self.failed += 1
            else:
                self.ok += 1
                self.bodies.add(body.rsplit(" ", 1)[0])
            k += 1
            time.sleep(max(0.0, t0 + k / self.rate - time.perf_counter()))


def _wait_replaced(bench: Bench, label: str, old: set[str]) -> float:
    """Seconds (from now's caller clock) until REPLICAS new healthy and no old running."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < TIMEOUT:
        running = containers(bench.api, label)
        ids = {c["Id"] for c in running}
        healthy = {c["Id"] for c in containers(bench.api, label, health="healthy")}
        new_healthy = healthy - old
        if len(new_healthy) >= REPLICAS and not (ids & old):
            return time.perf_counter()
        time.sleep(0.1)
    raise TimeoutError(f"update not done in {TIMEOUT:.0f}s")


def _wait_healthy(bench: Bench, label: str) -> set[str]:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < TIMEOUT:
        healthy = {c["Id"] for c in containers(bench.api, label, health="healthy")}
        if len(healthy) == REPLICAS and len(containers(bench.api, label)) == REPLICAS:
            return healthy
        time.sleep(0.2)
    raise TimeoutError(f"{REPLICAS} healthy not reached in {TIMEOUT:.0f}s")


def _sl_update(bench: Bench, stack: str, k: int) -> tuple[float, int, int]:
    node = bench.node()
    label = [f"swarmlite.node={node.node_id}", f"swarmlite.stack={stack}"]
    old = _wait_healthy(bench, label)
    path = bench.write(f"lc-sl-{k}.yml", sl_compose(f"v{k + 2}"))
    client = Client(PORT, CLIENT_RATE)
    client.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    out = node.cli("deploy", "-f", str(path), "--stack", stack, "--detach")
    if out.returncode != 0:
        client.stop.set()
        raise RuntimeError(f"deploy failed: {out.stderr.strip()[-300:]}")
    done = _wait_replaced(bench, label, old)
    time.sleep(1.0)
    client.stop.set()
    client.join(5)
    return done - t0, client.failed, client.ok


def _swarm_update(bench: Bench, stack: str, k: int) -> float:
    label = f"com.docker.stack.namespace={stack}"
    old = _wait_healthy(bench, label)
    path = bench.write(f"lc-sw-{k}.yml", swarm_compose(f"v{k + 2}"))
    t0 = time.perf_counter()
    bench.swarm.deploy(path, stack)
    return _wait_replaced(bench, label, old) - t0


def _secret_round(bench: Bench, stack: str, k: int) -> float:
    node = bench.node()
    content = f"bench-secret-{bench.run_id}-{k + 2}"
    path = bench.write("bsec.txt", content)
    labels = [
        [f"swarmlite.node={node.node_id}", f"swarmlite.service={stack}_{s}"] for s in ("a", "b")
    ]

    def read_all() -> list[str] | None:
        ids = [c["Id"] for lab in labels for c in containers(bench.api, lab)]
        if len(ids) != 4:
            return None
        got = []
        for cid in ids:
            out = subprocess.run(
                ["docker", "exec", cid, "cat", "/run/secrets/bsec"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            got.append(out.stdout if out.returncode == 0 else "")
        return got

    t0 = time.perf_counter()
    out = node.cli("secret", "update", "bsec", str(path))
    if out.returncode != 0:
        raise RuntimeError(f"secret update failed: {out.stderr.strip()[-300:]}")
    while time.perf_counter() - t0 < TIMEOUT:
        got = read_all()
        if got and all(g.strip() == content for g in got):
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise TimeoutError(f"not all replicas read the new secret in {TIMEOUT:.0f}s")


def run(bench: Bench) -> ScenarioResult:
    n = 1 if bench.quick else 3
    result = ScenarioResult(NAME, TITLE, METHOD)
    try:
        node = bench.node()
    except Exception as exc:
        return not_measured(NAME, TITLE, METHOD, f"swarmlite node did not start: {exc}")
    stack, sstack = f"blc{bench.run_id}", f"blcs{bench.run_id}"
    sl_times: list[float] = []
    failed: list[int] = []
    served: list[int] = []
    sw_times: list[float] = []
    swarm_reason = ""
    sl_ready = sw_ready = False
    try:
        bench.sl_deploy(bench.write("lc-sl-0.yml", sl_compose("v1")), stack)
        sl_ready = True
    except Exception as exc:
        result.notes.append(f"swarmlite deploy: {exc}"[:300])
    if bench.swarm.ensure():
        try:
            bench.swarm.deploy(bench.write("lc-sw-0.yml", swarm_compose("v1")), sstack)
            sw_ready = True
        except Exception as exc:
            swarm_reason = f"Swarm deploy failed: {exc}"[:200]
    else:
        swarm_reason = bench.swarm.unavailable
    try:
        for k in range(n):
            if sl_ready:
                try:
                    secs, bad, ok = _sl_update(bench, stack, k)
                    sl_times.append(secs)
                    failed.append(bad)
                    served.append(ok)
                    log(
                        f"lifecycle: swarmlite update {k + 1}: {secs:.2f}s, "
                        f"{bad} of {bad + ok} failed"
                    )
                except Exception as exc:
                    result.notes.append(f"swarmlite update {k + 1}: {exc}"[:300])
                    log(f"lifecycle: swarmlite update {k + 1} failed: {exc}")
            if sw_ready:
                try:
                    secs = _swarm_update(bench, sstack, k)
                    sw_times.append(secs)
                    log(f"lifecycle: swarm update {k + 1}: {secs:.2f}s")
                except Exception as exc:
                    result.notes.append(f"swarm update {k + 1}: {exc}"[:300])
                    log(f"lifecycle: swarm update {k + 1} failed: {exc}")
    finally:
        if sl_ready or stack in bench._swarmlite_stacks:
            bench.sl_remove(stack)
        if sw_ready:
            bench.swarm.remove(sstack, bench.api)

    sl_m = median(sl_times) if sl_times else None
    sw_m = median(sw_times) if sw_times else None
    result.rows.append(
        Row(
            f"rolling update {REPLICAS} replicas, parallelism 2 -> all new healthy",
            f"{sl_m:.2f} s" if sl_m is not None else "n/a",
            f"Swarm {sw_m:.2f} s" if sw_m is not None else "Swarm",
            f"{sl_m / sw_m:.2f}x" if sl_m and sw_m else "-",
            "-",
            "-" if sl_m and sw_m else f"not measured: {swarm_reason or 'see notes'}",
        )
    )
    result.rows.append(
        Row(
            f"failed requests during the update ({CLIENT_RATE:.0f} req/s via the mesh)",
            f"{sum(failed)} of {sum(failed) + sum(served)}" if failed else "n/a",
            "Swarm: -",
            "-",
            "0",
            ("PASS" if not sum(failed) else "MISS") if failed else "not measured: see notes",
        )
    )
    result.rows.append(
        Row(
            "failed requests during the update (Swarm)",
            "-",
            "Swarm: -",
            "-",
            "-",
            "not measured: no IPVS here, so no ingress or VIP, and the Swarm service has no "
            "published port (10 host-mode replicas on one node would collide)",
        )
    )
    result.notes.append(
        f"runs (s): swarmlite [{runs_text(sl_times)}] (failed requests {failed} of "
        f"{[f + s for f, s in zip(failed, served, strict=True)]}); swarm [{runs_text(sw_times)}]"
    )

    # -- secret change ---------------------------------------------------------------------
    sec_stack = f"blcsec{bench.run_id}"
    sec_times: list[float] = []
    created = False
    try:
        first = bench.write("bsec.txt", f"bench-secret-{bench.run_id}-1")
        out = node.cli("secret", "create", "bsec", str(first))
        if out.returncode != 0:
            raise RuntimeError(f"secret create failed: {out.stderr.strip()[-300:]}")
        created = True
        bench.sl_deploy(bench.write("lc-sec.yml", SECRET_COMPOSE), sec_stack)
        for k in range(n):
            try:
                secs = _secret_round(bench, sec_stack, k)
                sec_times.append(secs)
                log(f"lifecycle: secret change {k + 1}: {secs:.2f}s")
            except Exception as exc:
                result.notes.append(f"secret change {k + 1}: {exc}"[:300])
                log(f"lifecycle: secret change {k + 1} failed: {exc}")
    except Exception as exc:
        result.notes.append(f"secret change: {exc}"[:300])
    finally:
        if sec_stack in bench._swarmlite_stacks:
            bench.sl_remove(sec_stack)
        if created:
            node.cli("secret", "rm", "bsec")
        with contextlib.suppress(Exception):
            from swarmlite.agent.secrets import DEFAULT_BASE

            leftover = DEFAULT_BASE / node.node_id[:12]
            if leftover.exists() and any(leftover.rglob("bsec*")):
                bench.leaks.append(f"secret files left under {leftover} after `stack rm` (removed)")
                shutil.rmtree(leftover, ignore_errors=True)
    result.rows.append(
        Row(
            "secret updated -> all 4 replicas (2 services) read it",
            f"{median(sec_times):.2f} s" if sec_times else "n/a",
            "-",
            "-",
            "-",
            "-" if sec_times else "not measured: see notes",
        )
    )
    result.notes.append(f"runs (s): secret change [{runs_text(sec_times)}]")
    return result
