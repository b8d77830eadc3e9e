"""deploy: 20 replicas of demo-web, from nothing to all healthy (and, for swarmlite, routed).

Contenders, interleaved, median of 5 runs (1 with --quick):
  swarmlite       ``swarmlite deploy`` of a compose file with a published port;
  limit           the same 20 containers created and started by the Docker SDK in 20
                  threads, no orchestrator: a network of their own (as a stack gets),
                  attached at create, DNS at its gateway;
  limit (bridge)  the same, on Docker's default bridge (no network to set up);
  docker-compose  ``docker-compose up -d`` of the same service (it creates a network too);
  Docker Swarm    ``docker stack deploy --resolve-image never`` of the same service.
All use the same healthcheck (demo-web's /health over nc, interval 1 s). One observer
times them all: the Docker API's count of running+healthy containers.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from typing import Any

import docker

from bench.common import (
    HEALTH_INTERVAL_S,
    HEALTH_RETRIES,
    HEALTH_TEST,
    HEALTH_TIMEOUT_S,
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
    settle,
)
from bench.common import (
    run as run_cmd,
)

NAME = "deploy"
TITLE = "Deploy 20 replicas until all are routable"
REPLICAS = 20
PORT = 18400
TIMEOUT = 60.0
IMAGE = "swarmlite/demo-web:1"

METHOD = [
    f"{REPLICAS} replicas of `{IMAGE}`, each with the same healthcheck for every contender "
    f"(`/health` over `nc`, interval {HEALTH_INTERVAL_S}s, timeout {HEALTH_TIMEOUT_S}s, "
    f"retries {HEALTH_RETRIES}); the clock starts just before the deploy command (or the first "
    "SDK call).",
    "**Healthy** (every contender): the Docker API lists all 20 containers running and "
    "healthy, polled every ~50 ms. "
    "**Routable** (swarmlite only): 20 distinct hostnames answered `GET /` at the mesh's "
    f"published port {PORT}, probed in the same ~50 ms rounds (20 concurrent `GET`s a round, "
    "timed at the answer that completes the 20) from the moment all 20 are healthy. "
    "The mesh routes a replica only once it is healthy, so "
    "routable cannot come sooner; probing from the start loaded the deploy it timed (each "
    "`GET` forks a busybox httpd child): 4 A/B pairs here took 6.69 s with it against 6.11 s "
    "without (medians).",
    "Limit: the same 20 containers created and started through the Docker SDK in 20 threads, no "
    "orchestrator, attached like swarmlite's to a bridge network of their own (created inside the "
    "timed window, as a stack's is) with DNS at its gateway. Limit (bridge): the same on Docker's "
    "default bridge, which has no network to set up and no embedded DNS; on this machine that "
    "alone starts 20 containers about 1 s sooner. "
    "docker-compose: `docker-compose up -d` of the same service (`deploy.replicas: 20`, no "
    "published port), timed to healthy. "
    "Swarm: `docker stack deploy --resolve-image never`, `endpoint_mode: dnsrr`, no published port "
    "(no IPVS here, and 20 host-mode ports on one node would collide), so Swarm is timed to "
    "healthy only.",
    "Runs interleaved (5 rounds, order rotated each round), median reported; stacks removed "
    "between runs, untimed, and each run starts once the CPUs were at least 80% idle for "
    "0.5 s (at most 15 s of waiting), so no run pays for the clean-up Docker still does after "
    "the previous one.",
]


def _healthcheck_yaml(indent: str) -> str:
    return (
        f"{indent}healthcheck:\n"
        f'{indent}  test: ["CMD-SHELL", {json.dumps(HEALTH_TEST)}]\n'
        f"{indent}  interval: {HEALTH_INTERVAL_S}s\n"
        f"{indent}  timeout: {HEALTH_TIMEOUT_S}s\n"
        f"{indent}  retries: {HEALTH_RETRIES}\n"
    )


def swarmlite_compose(*, published: bool = True) -> str:
    """The service; without ``published`` (docker-compose), no host port: 20 replicas
    on one host port would collide."""
    ports = f'    ports:\n      - "{PORT}:8080"\n' if published else ""
    return (
        "services:\n  web:\n"
        f"    image: {IMAGE}\n"
        + ports
        + _healthcheck_yaml("    ")
        + f"    deploy:\n      replicas: {REPLICAS}\n"
    )


def swarm_compose() -> str:
    return (
        'version: "3.8"\nservices:\n  web:\n'
        f"    image: {IMAGE}\n"
        + _healthcheck_yaml("    ")
        + f"    deploy:\n      replicas: {REPLICAS}\n      endpoint_mode: dnsrr\n"
    )


def _probe_round(port: int, names: set[str], t0: float) -> float | None:
    """One round of REPLICAS concurrent ``GET``s at the mesh; adds the hostnames that
    answered to ``names`` and returns the time (from t0) of the answer that made them
    REPLICAS distinct, or None. Concurrent, and timed at that answer rather than at the
    round's end: a sequential round of 20 fresh connections (each a busybox fork) took
    0.1-0.4 s here, which the result then counted as routing time."""
    completed: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        body = http_get(port, timeout=0.3)
        if not body:
            return
        with lock:
            names.add(body.split()[-1])
            if len(names) >= REPLICAS and not completed:
                completed.append(time.perf_counter() - t0)

    probes = [threading.Thread(target=one) for _ in range(REPLICAS)]
    for p in probes:
        p.start()
    for p in probes:
        p.join()
    return completed[0] if completed else None


def _wait_healthy(
    bench: Bench, label: str | list[str], t0: float, routed_port: int | None = None
) -> tuple[float, float | None]:
    """Seconds from t0 until REPLICAS healthy containers (and, with a port, 20 hostnames)."""
    healthy_at: float | None = None
    routed_at: float | None = None
    names: set[str] = set()
    deadline = t0 + TIMEOUT
    while time.perf_counter() < deadline:
        if healthy_at is None and len(containers(bench.api, label, health="healthy")) >= REPLICAS:
            healthy_at = time.perf_counter() - t0
        # Probed only once all are healthy: the mesh routes a replica only when it is
        # healthy, so routable cannot come sooner, and 20 probes every 50 ms during the
        # deploy (each one a busybox fork) slowed the very deploy they timed by ~0.5 s.
        if routed_port is not None and routed_at is None and healthy_at is not None:
            routed_at = _probe_round(routed_port, names, t0)
        # The same ~50 ms cadence with or without a port: a probe that spun would take
        # the CPU the deploy itself needs.
        time.sleep(0.05)
        if healthy_at is not None and (routed_port is None or routed_at is not None):
            return healthy_at, routed_at
    n_healthy = len(containers(bench.api, label, health="healthy"))
    raise TimeoutError(
        f"not all {REPLICAS} healthy/routed within {TIMEOUT:.0f}s: Docker lists "
        f"{n_healthy}/{REPLICAS} healthy, {len(names)}/{REPLICAS} hostnames answered"
    )


def run_swarmlite(bench: Bench, i: int) -> tuple[float, float | None]:
    stack = f"bdep{i}{bench.run_id}"
    compose = bench.write("deploy-swarmlite.yml", swarmlite_compose())
    t0 = time.perf_counter()
    try:
        bench.sl_deploy(compose, stack)
        return _wait_healthy(bench, f"swarmlite.stack={stack}", t0, routed_port=PORT)
    finally:
        bench.sl_remove(stack)


def run_limit(bench: Bench, i: int, *, own_network: bool = True) -> tuple[float, float | None]:
    from bench.common import docker_client

    kind = "limit" if own_network else "bridge"
    label = f"swarmlite-bench.deploy={kind}{i}"
    net_name = f"bdl{i}{bench.run_id}"
    clients = [docker_client() for _ in range(REPLICAS)]
    errors: list[BaseException] = []
    healthcheck = {
        "test": ["CMD-SHELL", HEALTH_TEST],
        "interval": HEALTH_INTERVAL_S * 1_000_000_000,
        "timeout": HEALTH_TIMEOUT_S * 1_000_000_000,
        "retries": HEALTH_RETRIES,
    }
    attach: dict[str, Any] = {}

    def one(api: docker.APIClient) -> None:
        try:
            c = api.create_container(
                IMAGE,
                labels={"swarmlite-bench.deploy": f"{kind}{i}"},
                healthcheck=healthcheck,
                **attach,
            )
            api.start(c["Id"])
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    t0 = time.perf_counter()
    try:
        if own_network:
            net = bench.api.create_network(
                net_name, driver="bridge", labels={"swarmlite-bench": "1"}
            )
            ipam = bench.api.inspect_network(net["Id"])["IPAM"]["Config"][0]
            attach["host_config"] = bench.api.create_host_config(
                network_mode=net_name, dns=[ipam["Gateway"]]
            )
            attach["networking_config"] = {"EndpointsConfig": {net_name: {}}}
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        if errors:
            raise RuntimeError(f"docker create/start failed: {errors[0]}")
        return _wait_healthy(bench, label, t0)
    finally:
        for c in bench.api.containers(all=True, filters={"label": label}):
            bench.api.remove_container(c["Id"], force=True, v=True)
        if own_network:
            for n in bench.api.networks(names=[net_name]):
                bench.api.remove_network(n["Id"])
        for c in clients:
            c.close()


def run_limit_bridge(bench: Bench, i: int) -> tuple[float, float | None]:
    return run_limit(bench, i, own_network=False)


def run_compose(bench: Bench, i: int) -> tuple[float, float | None]:
    project = f"bdc{i}{bench.run_id}"
    compose = bench.write("deploy-compose.yml", swarmlite_compose(published=False))
    cmd = ["docker-compose", "--project-name", project, "--file", str(compose)]
    t0 = time.perf_counter()
    try:
        run_cmd([*cmd, "up", "--detach"], timeout=TIMEOUT)
        return _wait_healthy(bench, f"com.docker.compose.project={project}", t0)
    finally:
        run_cmd([*cmd, "down", "--volumes", "--timeout", "1"], timeout=TIMEOUT, check=False)


def run_swarm(bench: Bench, i: int) -> tuple[float, float | None]:
    stack = f"bswd{i}{bench.run_id}"
    compose = bench.write("deploy-swarm.yml", swarm_compose())
    t0 = time.perf_counter()
    try:
        bench.swarm.deploy(compose, stack)
        return _wait_healthy(bench, f"com.docker.stack.namespace={stack}", t0)
    finally:
        bench.swarm.remove(stack, bench.api)


def run(bench: Bench) -> ScenarioResult:
    rounds = 1 if bench.quick else 5  # 5: single runs here spread over ~1.5 s
    contenders = {
        "swarmlite": run_swarmlite,
        "limit": run_limit,
        "bridge": run_limit_bridge,
    }
    compose_reason = ""
    if shutil.which("docker-compose"):
        contenders["compose"] = run_compose
    else:
        compose_reason = "docker-compose is not installed"
    swarm_reason = ""
    if bench.swarm.ensure():
        contenders["swarm"] = run_swarm
    else:
        swarm_reason = bench.swarm.unavailable
    healthy: dict[str, list[float]] = {k: [] for k in contenders}
    routed: list[float] = []
    failures: list[str] = []
    try:
        bench.node()
    except Exception as exc:
        return not_measured(NAME, TITLE, METHOD, f"swarmlite node did not start: {exc}")
    for i in range(rounds):
        names = list(contenders)
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            settle()
            try:
                h, r = contenders[name](bench, i)
            except Exception as exc:
                failures.append(f"{name} run {i + 1}: {exc}")
                log(f"deploy: {name} run {i + 1} failed: {exc}")
                continue
            healthy[name].append(h)
            if r is not None:
                routed.append(r)
            log(
                f"deploy: {name} run {i + 1}: healthy {h:.2f}s"
                + (f", routable {r:.2f}s" if r else "")
            )

    result = ScenarioResult(NAME, TITLE, METHOD)
    result.notes += failures

    def med(name: str) -> float | None:
        return median(healthy[name]) if healthy.get(name) else None

    lim, bridge, dc, sw = med("limit"), med("bridge"), med("compose"), med("swarm")
    sl_r = median(routed) if routed else None
    sl_h = med("swarmlite")
    labels = {"limit": "limit", "bridge": "limit (bridge)", "compose": "docker-compose"}
    result.notes.append(
        f"runs (s): swarmlite routable [{runs_text(routed)}], "
        + ", ".join(
            f"{labels.get(name, name)} [{runs_text(values)}]" for name, values in healthy.items()
        )
    )

    def row(
        metric: str,
        mine: float | None,
        ref_name: str,
        ref: float | None,
        target: str,
        limit_ratio: float | None,
        strict: bool,
    ) -> Row:
        if mine is None or ref is None:
            why = "swarmlite run failed" if mine is None else f"{ref_name} run failed"
            return Row(
                metric, fmt_s(mine), f"{ref_name} {fmt_s(ref)}", "-", target, f"not measured: {why}"
            )
        ratio = mine / ref
        verdict = "-"
        if limit_ratio is not None:
            ok = ratio < limit_ratio if strict else ratio <= limit_ratio
            verdict = "PASS" if ok else "MISS"
            # A run that never became routable is a miss, whatever the other runs' median says.
            if sl_failed:
                verdict = (
                    f"MISS ({sl_failed} of {rounds} swarmlite runs not routable in {TIMEOUT:.0f} s)"
                )
        return Row(
            metric, fmt_s(mine), f"{ref_name} {fmt_s(ref)}", f"{ratio:.2f}x", target, verdict
        )

    sl_failed = sum(1 for f in failures if f.startswith("swarmlite"))
    limit_name = "docker SDK, 20 threads, own network"
    rows = result.rows
    rows.append(
        row("routable (swarmlite) vs healthy (limit)", sl_r, limit_name, lim, "<= 1.3x", 1.3, False)
    )
    if "swarm" in healthy:
        rows.append(
            row(
                "routable (swarmlite) vs healthy (Swarm)",
                sl_r,
                "docker stack deploy",
                sw,
                "< 1.0x (faster)",
                1.0,
                True,
            )
        )
    else:
        rows.append(
            Row(
                "routable (swarmlite) vs healthy (Swarm)",
                fmt_s(sl_r),
                "Docker Swarm",
                "-",
                "< 1.0x (faster)",
                f"not measured: {swarm_reason}",
            )
        )
    if "compose" in healthy:
        rows.append(
            row(
                "routable (swarmlite) vs healthy (docker-compose)",
                sl_r,
                "docker-compose up",
                dc,
                "-",
                None,
                False,
            )
        )
    else:
        rows.append(
            Row(
                "routable (swarmlite) vs healthy (docker-compose)",
                fmt_s(sl_r),
                "docker-compose",
                "-",
                "-",
                f"not measured: {compose_reason}",
            )
        )
    rows.append(row("healthy vs healthy (limit)", sl_h, limit_name, lim, "-", None, False))
    if "swarm" in healthy:
        rows.append(
            row("healthy vs healthy (Swarm)", sl_h, "docker stack deploy", sw, "-", None, False)
        )
    rows.append(
        row(
            "routable (swarmlite) vs healthy (limit on the default bridge)",
            sl_r,
            "docker SDK, 20 threads, default bridge",
            bridge,
            "-",
            None,
            False,
        )
    )
    return result
