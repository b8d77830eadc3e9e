"""kill: ``docker kill`` one replica; seconds until its replacement is running and routed.

swarmlite: 3 replicas of demo-web behind the mesh's published port. Docker Swarm: the
same service with one replica on a host-mode port (no IPVS here, so no ingress, and
host-mode ports of several replicas on one node collide). Both ``restart_policy:
condition: any, delay: 0s``, no healthcheck. Median of 5 kills (2 with --quick).
"""

from __future__ import annotations

import time

from bench.common import (
    Bench,
    Row,
    ScenarioResult,
    containers,
    fmt_s,
    http_get,
    log,
    median,
    not_measured,
    runs_text,
    wait_for,
)

NAME = "kill"
TITLE = "Replace a killed replica"
IMAGE = "swarmlite/demo-web:1"
SL_PORT = 18420
SWARM_PORT = 18421
SL_REPLICAS = 3
TIMEOUT = 30.0

METHOD = [
    f"swarmlite: {SL_REPLICAS} replicas of `{IMAGE}` behind the mesh (port {SL_PORT}); Swarm: 1 "
    "replica on a "
    f"`mode: host` port {SWARM_PORT} (no IPVS for ingress; host ports of several replicas would "
    "collide). "
    "Both `restart_policy: {condition: any, delay: 0s}`, no healthcheck (so a replacement is "
    "routable once running).",
    "The clock starts just before `kill` through the Docker API. **Running**: Docker lists a new "
    "running container "
    "of the service. **Routed**: `GET /` at the published port answers with a hostname that did "
    "not exist before "
    "the kill (fresh connection per probe, probes back to back).",
    "Between kills the service is left to settle back to full strength. Median of 5 kills.",
]

RESTART = "      restart_policy:\n        condition: any\n        delay: 0s\n"


def swarmlite_compose() -> str:
    return (
        f"services:\n  web:\n    image: {IMAGE}\n"
        f'    ports:\n      - "{SL_PORT}:8080"\n'
        f"    deploy:\n      replicas: {SL_REPLICAS}\n" + RESTART
    )


def swarm_compose() -> str:
    return (
        f'version: "3.8"\nservices:\n  web:\n    image: {IMAGE}\n'
        "    ports:\n      - target: 8080\n"
        f"        published: {SWARM_PORT}\n        protocol: tcp\n        mode: host\n"
        "    deploy:\n      replicas: 1\n      endpoint_mode: dnsrr\n" + RESTART
    )


def _ready(bench: Bench, label: str, replicas: int, port: int) -> list[str]:
    """Wait until exactly ``replicas`` containers run and each one's hostname answers."""

    def check() -> list[str] | None:
        ids = [c["Id"] for c in containers(bench.api, label)]
        if len(ids) != replicas:
            return None
        want = {i[:12] for i in ids}
        seen: set[str] = set()
        for _ in range(4 * replicas):
            body = http_get(port, timeout=0.5)
            if body:
                seen.add(body.split()[-1])
        return ids if want <= seen else None

    return wait_for(check, 60, 0.2, f"{replicas} routed replicas on port {port}")


def _one_kill(bench: Bench, label: str, replicas: int, port: int) -> tuple[float, float]:
    before = _ready(bench, label, replicas, port)
    time.sleep(0.5)  # let the mesh and the orchestrator settle
    old = {i[:12] for i in before}
    old_ids = set(before)
    t0 = time.perf_counter()
    bench.api.kill(before[0])
    running_at: float | None = None
    routed_at: float | None = None
    next_docker = 0.0
    while time.perf_counter() - t0 < TIMEOUT:
        now = time.perf_counter()
        if running_at is None and now >= next_docker:
            if any(c["Id"] not in old_ids for c in containers(bench.api, label)):
                running_at = time.perf_counter() - t0
            next_docker = now + 0.05
        if routed_at is None:
            body = http_get(port, timeout=0.3)
            if body and body.split()[-1] not in old:
                routed_at = time.perf_counter() - t0
            elif body is None:
                time.sleep(0.005)
        if running_at is not None and routed_at is not None:
            return running_at, routed_at
    raise TimeoutError(f"no routed replacement within {TIMEOUT:.0f}s (running after {running_at})")


def _series(
    bench: Bench, who: str, label: str, replicas: int, port: int, n: int, failures: list[str]
) -> tuple[list[float], list[float]]:
    running: list[float] = []
    routed: list[float] = []
    for k in range(n):
        try:
            r, t = _one_kill(bench, label, replicas, port)
        except Exception as exc:
            failures.append(f"{who} kill {k + 1}: {exc}")
            log(f"kill: {who} kill {k + 1} failed: {exc}")
            continue
        running.append(r)
        routed.append(t)
        log(f"kill: {who} kill {k + 1}: running {r:.2f}s, routed {t:.2f}s")
    return running, routed


def run(bench: Bench) -> ScenarioResult:
    n = 2 if bench.quick else 5
    failures: list[str] = []
    result = ScenarioResult(NAME, TITLE, METHOD)
    try:
        bench.node()
    except Exception as exc:
        return not_measured(NAME, TITLE, METHOD, f"swarmlite node did not start: {exc}")

    stack = f"bkill{bench.run_id}"
    try:
        bench.sl_deploy(bench.write("kill-swarmlite.yml", swarmlite_compose()), stack)
        sl_run, sl_routed = _series(
            bench, "swarmlite", f"swarmlite.stack={stack}", SL_REPLICAS, SL_PORT, n, failures
        )
    except Exception as exc:
        failures.append(f"swarmlite: {exc}")
        sl_run, sl_routed = [], []
    finally:
        bench.sl_remove(stack)

    sw_run: list[float] = []
    sw_routed: list[float] = []
    swarm_reason = ""
    if bench.swarm.ensure():
        sstack = f"bswk{bench.run_id}"
        try:
            bench.swarm.deploy(bench.write("kill-swarm.yml", swarm_compose()), sstack)
            sw_run, sw_routed = _series(
                bench, "swarm", f"com.docker.stack.namespace={sstack}", 1, SWARM_PORT, n, failures
            )
        except Exception as exc:
            failures.append(f"swarm: {exc}")
        finally:
            bench.swarm.remove(sstack, bench.api)
        if not sw_routed:
            swarm_reason = "every Swarm kill failed (see notes)"
    else:
        swarm_reason = bench.swarm.unavailable

    result.notes += failures
    result.notes.append(
        f"runs (s): swarmlite routed [{runs_text(sl_routed)}], running [{runs_text(sl_run)}]; "
        f"swarm routed [{runs_text(sw_routed)}], running [{runs_text(sw_run)}]"
    )
    sl_r = median(sl_routed) if sl_routed else None
    sw_r = median(sw_routed) if sw_routed else None
    if sl_r is None:
        result.rows.append(
            Row(
                "killed -> replacement routed",
                "n/a",
                "-",
                "-",
                "< 2 s",
                "not measured: every swarmlite kill failed (see notes)",
            )
        )
    else:
        result.rows.append(
            Row(
                "killed -> replacement routed",
                fmt_s(sl_r),
                "-",
                "-",
                "< 2 s",
                "PASS" if sl_r < 2.0 else "MISS",
            )
        )
    if sl_r is not None and sw_r is not None:
        result.rows.append(
            Row(
                "routed vs Swarm (delay 0s both)",
                fmt_s(sl_r),
                f"Swarm {fmt_s(sw_r)}",
                f"{sl_r / sw_r:.2f}x",
                "-",
                "-",
            )
        )
    else:
        result.rows.append(
            Row(
                "routed vs Swarm (delay 0s both)",
                fmt_s(sl_r),
                "Swarm",
                "-",
                "-",
                f"not measured: {swarm_reason or 'no swarmlite result'}",
            )
        )
    if sl_run and sw_run:
        result.rows.append(
            Row(
                "killed -> replacement running",
                fmt_s(median(sl_run)),
                f"Swarm {fmt_s(median(sw_run))}",
                f"{median(sl_run) / median(sw_run):.2f}x",
                "-",
                "-",
            )
        )
    return result
