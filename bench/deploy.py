"""deploy: 20 replicas of demo-web, from nothing to all healthy (and, for swarmlite, routed).

Three contenders, interleaved, median of 3 runs (1 with --quick):
  swarmlite     ``swarmlite deploy`` of a compose file with a published port;
  docker (limit) the same 20 containers created and started by the Docker SDK in 20
                threads, no orchestrator;
  Docker Swarm  ``docker stack deploy --resolve-image never`` of the same service.
All three use the same healthcheck (demo-web's /health over nc, interval 1 s). One
observer times all three: the Docker API's count of running+healthy containers.
"""

from __future__ import annotations

import json
import threading
import time

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
    "**Healthy** (all three): the Docker API lists all 20 containers running and healthy, polled "
    "every ~50 ms. "
    "**Routable** (swarmlite only): 20 distinct hostnames answered `GET /` at the mesh's "
    f"published port {PORT}.",
    "Limit: the same 20 containers created and started through the Docker SDK in 20 threads, no "
    "orchestrator. "
    "Swarm: `docker stack deploy --resolve-image never`, `endpoint_mode: dnsrr`, no published port "
    "(no IPVS here, and 20 host-mode ports on one node would collide), so Swarm is timed to "
    "healthy only.",
    "Runs interleaved (order rotated each round), median reported; stacks removed between runs, "
    "untimed.",
]


def _healthcheck_yaml(indent: str) -> str:
    return (
        f"{indent}healthcheck:\n"
        f'{indent}  test: ["CMD-SHELL", {json.dumps(HEALTH_TEST)}]\n'
        f"{indent}  interval: {HEALTH_INTERVAL_S}s\n"
        f"{indent}  timeout: {HEALTH_TIMEOUT_S}s\n"
        f"{indent}  retries: {HEALTH_RETRIES}\n"
    )


def swarmlite_compose() -> str:
    return (
        "services:\n  web:\n"
        f"    image: {IMAGE}\n"
        f'    ports:\n      - "{PORT}:8080"\n'
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
        if routed_port is not None and routed_at is None:
            for _ in range(REPLICAS):
                body = http_get(routed_port, timeout=0.3)
                if body:
                    names.add(body.split()[-1])
            if len(names) >= REPLICAS:
                routed_at = time.perf_counter() - t0
        else:
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


def run_limit(bench: Bench, i: int) -> tuple[float, float | None]:
    from bench.common import docker_client

    label = f"swarmlite-bench.deploy=limit{i}"
    clients = [docker_client() for _ in range(REPLICAS)]
    errors: list[BaseException] = []
    healthcheck = {
        "test": ["CMD-SHELL", HEALTH_TEST],
        "interval": HEALTH_INTERVAL_S * 1_000_000_000,
        "timeout": HEALTH_TIMEOUT_S * 1_000_000_000,
        "retries": HEALTH_RETRIES,
    }

    def one(api: docker.APIClient) -> None:
        try:
            c = api.create_container(
                IMAGE,
                labels={"swarmlite-bench.deploy": f"limit{i}"},
                healthcheck=healthcheck,
            )
            api.start(c["Id"])
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    t0 = time.perf_counter()
    try:
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
        for c in clients:
            c.close()


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
    rounds = 1 if bench.quick else 3
    contenders = {"swarmlite": run_swarmlite, "limit": run_limit}
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
    lim = median(healthy["limit"]) if healthy["limit"] else None
    sw = median(healthy["swarm"]) if healthy.get("swarm") else None
    sl_r = median(routed) if routed else None
    sl_h = median(healthy["swarmlite"]) if healthy["swarmlite"] else None
    result.notes.append(
        "runs (s): swarmlite routable ["
        + runs_text(routed)
        + "], swarmlite healthy ["
        + runs_text(healthy["swarmlite"])
        + "], limit ["
        + runs_text(healthy["limit"])
        + "]"
        + (", swarm [" + runs_text(healthy["swarm"]) + "]" if "swarm" in healthy else "")
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
        return Row(
            metric, fmt_s(mine), f"{ref_name} {fmt_s(ref)}", f"{ratio:.2f}x", target, verdict
        )

    sl_failed = sum(1 for f in failures if f.startswith("swarmlite"))

    def row_sl(r: Row) -> Row:
        # A run that never became routable is a miss, whatever the other runs' median says.
        if sl_failed and r.verdict in ("PASS", "MISS"):
            r.verdict = (
                f"MISS ({sl_failed} of {rounds} swarmlite runs not routable in {TIMEOUT:.0f} s)"
            )
        return r

    result.rows.append(
        row(
            "routable (swarmlite) vs healthy (limit)",
            sl_r,
            "docker SDK, 20 threads",
            lim,
            "<= 1.3x",
            1.3,
            False,
        )
    )
    result.rows[-1] = row_sl(result.rows[-1])
    if "swarm" in healthy:
        result.rows.append(
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
        result.rows[-1] = row_sl(result.rows[-1])
        result.rows.append(
            row("healthy vs healthy (Swarm)", sl_h, "docker stack deploy", sw, "-", None, False)
        )
    else:
        result.rows.append(
            Row(
                "routable (swarmlite) vs healthy (Swarm)",
                fmt_s(sl_r),
                "Docker Swarm",
                "-",
                "< 1.0x (faster)",
                f"not measured: {swarm_reason}",
            )
        )
    result.rows.append(
        row("healthy vs healthy (limit)", sl_h, "docker SDK, 20 threads", lim, "-", None, False)
    )
    return result
