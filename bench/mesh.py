"""mesh: wrk through the routing mesh vs nginx vs one backend directly.

Backends: 3 replicas of ``swarmlite/nginx:1`` (one worker, a fixed "ok"), published
by swarmlite twice: a TCP port and an ``app_protocol: http`` port. The reference is
Debian's nginx as a host process with as many workers as the mesh has event loops (one
per CPU but one), round-robin reverse proxy to
the same 3 container IPs with upstream keepalive. Peak: ``wrk -t1 -c32 --latency``.
Added p99: ``wrk`` paced to half of nginx's peak (a Lua ``delay()`` between each
connection's requests, many connections), p99 minus direct's p99.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from functools import partial
from pathlib import Path

from bench.common import (
    Bench,
    Row,
    ScenarioResult,
    container_ip,
    containers,
    http_get,
    log,
    median,
    not_measured,
    wait_for,
)
from swarmlite.config import MESH_WORKERS_ENV
from swarmlite.proxy.workers import default_workers

NAME = "mesh"
TITLE = "Routing mesh throughput and latency"
TCP_PORT = 18410
HTTP_PORT = 18411
NGINX_PORT = 18412
CONNS = 32
PACED_DELAY_MS = 10
PACED_ROUNDS = 5
# Idle upstream connections nginx keeps: above the paced run's ~260 client connections
# (as the mesh's pool, 128 per backend), so nginx is not timed opening new ones.
NGINX_KEEPALIVE = 512

METHOD = [
    "Backends: 3 replicas of `swarmlite/nginx:1` (1 worker, fixed `ok`), published by swarmlite "
    "as a TCP port "
    f"({TCP_PORT}) and an `app_protocol: http` port ({HTTP_PORT}). Reference: Debian's nginx as a "
    "host process, "
    "`worker_processes` as many as the mesh's event loops (one per CPU but one unless "
    f"`{MESH_WORKERS_ENV}` says; the daemon's and worker processes), round-robin "
    "`proxy_pass` to the same 3 "
    "container IPs, "
    f"upstream `keepalive {NGINX_KEEPALIVE}` (more than the paced run's connections), "
    "HTTP/1.1. Direct: wrk to one backend container's IP.",
    f"Peak: `wrk -t1 -c{CONNS} -d10s --latency` per target, targets interleaved (order rotated), "
    "3 rounds, median "
    "req/s and median p50/p99. Added p99: `wrk -t1 -cN --latency -s paced.lua` where each "
    f"connection waits {PACED_DELAY_MS} ms (Lua `delay()`) after each answer and N (the same "
    "for every path) is calibrated by a 3 s run against direct so the rate is about R = half "
    f"nginx's median peak; the 4 paths run in the same rotated order, {PACED_ROUNDS} "
    "rounds, and the added p99 is the median over rounds of each path's p99 minus direct's "
    "p99 (one backend) in the same round. A path that cannot keep the rate within 10% fails "
    "the row; if even direct cannot, the client is the limit and the row is not measured.",
    "Everything (wrk, proxies, 3 backends) shares this 2-core machine, so ratios, not absolute "
    "numbers, are the result.",
]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def compose() -> str:
    return (
        "services:\n  web:\n    image: swarmlite/nginx:1\n    ports:\n"
        f"      - target: 8080\n        published: {TCP_PORT}\n        protocol: tcp\n"
        f"      - target: 8080\n        published: {HTTP_PORT}\n        protocol: tcp\n"
        "        app_protocol: http\n"
        "    deploy:\n      replicas: 3\n"
    )


def mesh_loops() -> int:
    """The event loops the benchmark's node serves its mesh with (as the daemon decides)."""
    return int(os.environ.get(MESH_WORKERS_ENV) or 0) or default_workers()


def nginx_conf(tmp: Path, ips: list[str], workers: int) -> str:
    servers = "".join(f"        server {ip}:8080;\n" for ip in ips)
    temp = "".join(
        f"    {k}_temp_path {tmp}/{k};\n"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"worker_processes {workers};\ndaemon off;\npid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n    access_log off;\n"
        + temp
        + "    upstream backends {\n"
        + servers
        + f"        keepalive {NGINX_KEEPALIVE};\n    }}\n"
        f"    server {{\n        listen 127.0.0.1:{NGINX_PORT};\n"
        "        location / {\n            proxy_pass http://backends;\n"
        '            proxy_http_version 1.1;\n            proxy_set_header Connection "";\n'
        "        }\n    }\n}\n"
    )


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unparsed wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p50 and p99):
        raise RuntimeError(f"wrk gave no result for {url}: {out[-300:]}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps.group(1)),
        "p50": _ms(p50.group(1)),
        "p99": _ms(p99.group(1)),
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "errors": 1.0 if errs else 0.0,
    }


def paced(url: str, conns: int, seconds: int, script: Path) -> dict[str, float]:
    """wrk with ``conns`` connections, each idling PACED_DELAY_MS between requests."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    if not (rps and p99):
        raise RuntimeError(f"paced wrk gave no result for {url}: {out[-300:]}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "p99": _ms(p99.group(1)),
        "errors": 1.0 if (bad or re.search(r"Socket errors:.*", out)) else 0.0,
        "conns": float(conns),
    }


def _answers_ok(port: int) -> bool:
    return http_get(port) == "ok"


def _paced_note(rate: float, rounds: list[dict[str, dict[str, float]]]) -> str:
    conns = int(next(iter(rounds[0].values()))["conns"])
    names = list(rounds[0])
    return f"wrk paced at {rate:.0f} req/s ({conns} connections), per round: " + "; ".join(
        f"{n} got [{', '.join(format(r[n]['rps'], '.0f') for r in rounds)}] req/s, "
        f"p99 [{', '.join(format(r[n]['p99'], '.2f') for r in rounds)}] ms"
        + (" (errors)" if any(r[n]["errors"] for r in rounds) else "")
        for n in names
    )


def _paced(
    targets: dict[str, str], rate: float, seconds: int, rounds: int, script: Path
) -> list[dict[str, dict[str, float]]]:
    """Every target at about ``rate`` req/s, ``rounds`` times, order rotated each round.

    The connection count is calibrated on direct: each connection sends one request per
    delay + latency, and a short run against direct corrects the first guess (latency
    0.5 ms) for the latency this machine really has."""
    guess = max(1, round(rate * (PACED_DELAY_MS + 0.5) / 1000))
    probe = paced(targets["direct"], guess, 3, script)
    conns = min(2 * guess, max(guess, round(guess * rate / max(probe["rps"], 1.0))))
    names = ["direct", "nginx", "mesh-tcp", "mesh-http"]
    out: list[dict[str, dict[str, float]]] = []
    for r in range(rounds):
        got: dict[str, dict[str, float]] = {}
        for name in names[r % 4 :] + names[: r % 4]:
            got[name] = paced(targets[name], conns, seconds, script)
            log(
                f"mesh: paced wrk {name} round {r + 1} at {rate:.0f}/s ({conns} conns): got "
                f"{got[name]['rps']:.0f}/s p99 {got[name]['p99']:.2f} ms"
            )
        out.append({n: got[n] for n in names})
    return out


def _added_p99_rows(
    result: ScenarioResult, rate: float, rounds: list[dict[str, dict[str, float]]], label: str
) -> bool:
    """Rows for the added p99 of each mesh path at ``rate``; False if the client was the limit.

    Each round's added p99 is the path's p99 minus direct's p99 in the same round (the
    machine's load drifts between rounds); the row reports the median over rounds."""
    info = label != "half nginx peak"
    direct_rps = median([r["direct"]["rps"] for r in rounds])
    base = median([r["direct"]["p99"] for r in rounds])
    client_bound = direct_rps < 0.9 * rate
    for proto, name in (("TCP", "mesh-tcp"), ("http", "mesh-http")):
        added = median([r[name]["p99"] - r["direct"]["p99"] for r in rounds])
        nginx_added = median([r["nginx"]["p99"] - r["direct"]["p99"] for r in rounds])
        p99 = median([r[name]["p99"] for r in rounds])
        rps = median([r[name]["rps"] for r in rounds])
        if info:
            verdict = "-"
        elif client_bound:
            verdict = (
                f"not measured: wrk paced direct at only {direct_rps:.0f} of "
                f"{rate:.0f} req/s: the client, not the path, is the limit"
            )
        elif rps < 0.9 * rate:
            verdict = f"MISS: kept only {rps:.0f} of {rate:.0f} req/s"
        else:
            verdict = "PASS" if added < 2.0 else "MISS"
        result.rows.append(
            Row(
                f"{proto} added p99 at {label}" + (" (info)" if info else ""),
                f"p99 {p99:.2f} ms ({added:+.2f})",
                f"direct p99 {base:.2f} ms; nginx {nginx_added:+.2f}",
                "-",
                "(< 2 ms)" if info else "< 2 ms",
                verdict,
            )
        )
    return not client_bound


def run(bench: Bench) -> ScenarioResult:
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            return not_measured(
                NAME, TITLE, METHOD, f"`{tool}` is not installed (scripts/install-deps.sh)"
            )
    try:
        bench.node()
    except Exception as exc:
        return not_measured(NAME, TITLE, METHOD, f"swarmlite node did not start: {exc}")
    stack = f"bmesh{bench.run_id}"
    nginx: subprocess.Popen[bytes] | None = None
    tmp = bench.tmp / "nginx"
    try:
        bench.sl_deploy(bench.write("mesh.yml", compose()), stack)
        label = f"swarmlite.stack={stack}"
        ids = wait_for(
            lambda: (
                [c["Id"] for c in containers(bench.api, label)]
                if len(containers(bench.api, label)) == 3
                else None
            ),
            90,
            0.2,
            "3 nginx backends",
        )
        ips = [container_ip(bench.api, i) for i in ids]
        for port in (TCP_PORT, HTTP_PORT):
            wait_for(partial(_answers_ok, port), 30, 0.1, f"mesh port {port}")
        wait_for(
            lambda: all(http_get(8080, host=ip) == "ok" for ip in ips), 30, 0.1, "backends direct"
        )
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "nginx.conf").write_text(nginx_conf(tmp, ips, mesh_loops()))
        nginx = subprocess.Popen(
            ["nginx", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: http_get(NGINX_PORT) == "ok", 15, 0.1, "host nginx")
        return _measure(bench, ips[0])
    except Exception as exc:
        return not_measured(NAME, TITLE, METHOD, f"setup or load run failed: {exc}")
    finally:
        if nginx is not None:
            nginx.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                nginx.wait(10)
            if nginx.poll() is None:
                nginx.kill()
                nginx.wait(5)
        bench.sl_remove(stack)


def _measure(bench: Bench, direct_ip: str) -> ScenarioResult:
    targets = {
        "direct": f"http://{direct_ip}:8080/",
        "nginx": f"http://127.0.0.1:{NGINX_PORT}/",
        "mesh-tcp": f"http://127.0.0.1:{TCP_PORT}/",
        "mesh-http": f"http://127.0.0.1:{HTTP_PORT}/",
    }
    rounds, seconds = (1, 3) if bench.quick else (3, 10)
    # Added p99 is a difference of two noisy tails (single rounds here spread over ~5 ms):
    # 5 paced rounds, median reported.
    paced_rounds = 1 if bench.quick else PACED_ROUNDS
    peak: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
    names = list(targets)
    for r in range(rounds):
        for name in names[r % 4 :] + names[: r % 4]:
            res = wrk(targets[name], seconds)
            peak[name].append(res)
            log(
                f"mesh: wrk {name} round {r + 1}: {res['rps']:.0f} req/s p50 {res['p50']:.2f} ms "
                f"p99 {res['p99']:.2f} ms"
            )

    def med(name: str, key: str) -> float:
        return median([x[key] for x in peak[name]])

    result = ScenarioResult(NAME, TITLE, METHOD)
    result.notes.append(f"mesh event loops and nginx worker processes: {mesh_loops()} each")
    for name in targets:
        if any(x["non2xx"] or x["errors"] for x in peak[name]):
            result.notes.append(f"wrk reported non-2xx responses or socket errors for {name}")
    ng = med("nginx", "rps")
    for metric, name, target, floor in (
        ("TCP port req/s", "mesh-tcp", ">= 0.9x nginx", 0.9),
        ("http port req/s", "mesh-http", ">= 0.6x nginx", 0.6),
    ):
        ratio = med(name, "rps") / ng
        result.rows.append(
            Row(
                metric,
                f"{med(name, 'rps'):,.0f}",
                f"nginx {ng:,.0f}",
                f"{ratio:.2f}x",
                target,
                "PASS" if ratio >= floor else "MISS",
            )
        )
    result.detail.append("| wrk -t1 -c32 (median) | req/s | vs nginx | p50 ms | p99 ms |")
    result.detail.append("|---|---:|---:|---:|---:|")
    for name in targets:
        result.detail.append(
            f"| {name} | {med(name, 'rps'):,.0f} | {med(name, 'rps') / ng:.2f}x | "
            f"{med(name, 'p50'):.2f} | {med(name, 'p99'):.2f} |"
        )
    result.notes.append(
        "req/s per round: "
        + "; ".join(f"{n} [{', '.join(format(x['rps'], '.0f') for x in peak[n])}]" for n in targets)
    )

    script = bench.write("paced.lua", f"function delay()\n  return {PACED_DELAY_MS}\nend\n")
    rate = ng / 2
    at_half = _paced(targets, rate, seconds, paced_rounds, script)
    result.notes.append(_paced_note(rate, at_half))
    if not _added_p99_rows(result, rate, at_half, "half nginx peak"):
        low = rate / 4
        slow = _paced(targets, low, seconds, paced_rounds, script)
        result.notes.append(_paced_note(low, slow))
        _added_p99_rows(result, low, slow, "1/8 nginx peak")
    return result
