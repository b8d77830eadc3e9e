"""mesh: wrk through the routing mesh vs nginx vs one backend directly.

Backends: 3 replicas of ``swarmlite/nginx:1`` (one worker, a fixed "ok"), published
by swarmlite twice: a TCP port and an ``app_protocol: http`` port. The reference is
Debian's nginx as a host process, ``worker_processes 1``, round-robin reverse proxy to
the same 3 container IPs with upstream keepalive. Peak: ``wrk -t1 -c32 --latency``.
Added p99: ``hey`` rate-limited to half of nginx's peak, p99 minus direct's p99.
"""

from __future__ import annotations

import contextlib
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

NAME = "mesh"
TITLE = "Routing mesh throughput and latency"
TCP_PORT = 18410
HTTP_PORT = 18411
NGINX_PORT = 18412
CONNS = 32

METHOD = [
    "Backends: 3 replicas of `swarmlite/nginx:1` (1 worker, fixed `ok`), published by swarmlite "
    "as a TCP port "
    f"({TCP_PORT}) and an `app_protocol: http` port ({HTTP_PORT}). Reference: Debian's nginx as a "
    "host process, "
    "`worker_processes 1` (the mesh runs one event loop), round-robin `proxy_pass` to the same 3 "
    "container IPs, "
    "upstream `keepalive 64`, HTTP/1.1. Direct: wrk to one backend container's IP.",
    f"Peak: `wrk -t1 -c{CONNS} -d10s --latency` per target, targets interleaved (order rotated), "
    "3 rounds, median "
    "req/s and median p50/p99. Added p99: `hey -c 32 -q R/32 -z 10s` with R = half nginx's median "
    "peak, "
    "p99 of each path minus p99 direct to one backend at the same rate (hey reports 0.1 ms steps).",
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


def nginx_conf(tmp: Path, ips: list[str]) -> str:
    servers = "".join(f"        server {ip}:8080;\n" for ip in ips)
    temp = "".join(
        f"    {k}_temp_path {tmp}/{k};\n"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"worker_processes 1;\ndaemon off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n    access_log off;\n"
        + temp
        + "    upstream backends {\n"
        + servers
        + "        keepalive 64;\n    }\n"
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


def hey(url: str, rate: float, seconds: int) -> dict[str, float]:
    per_worker = max(1.0, rate / CONNS)
    out = subprocess.run(
        ["hey", "-c", str(CONNS), "-q", f"{per_worker:.1f}", "-z", f"{seconds}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99% in ([\d.]+) secs", out)
    ok = re.search(r"\[200\]\s+(\d+) responses", out)
    if not (rps and p99 and ok):
        raise RuntimeError(f"hey gave no result for {url}: {out[-300:]}")
    return {
        "rps": float(rps.group(1)),
        "p99": float(p99.group(1)) * 1e3,
        "ok": float(ok.group(1)),
        "errors": 1.0 if "Error distribution" in out else 0.0,
    }


def _answers_ok(port: int) -> bool:
    return http_get(port) == "ok"


def _paced_note(rate: float, paced: dict[str, dict[str, float]]) -> str:
    return f"hey paced at {rate:.0f} req/s: " + "; ".join(
        f"{n} got {v['rps']:.0f} req/s, p99 {v['p99']:.2f} ms"
        + (" (errors)" if v["errors"] else "")
        for n, v in paced.items()
    )


def _paced(targets: dict[str, str], rate: float, seconds: int) -> dict[str, dict[str, float]]:
    paced: dict[str, dict[str, float]] = {}
    for name in ("direct", "nginx", "mesh-tcp", "mesh-http"):
        paced[name] = hey(targets[name], rate, seconds)
        log(
            f"mesh: hey {name} at {rate:.0f}/s: got {paced[name]['rps']:.0f}/s p99 "
            f"{paced[name]['p99']:.2f} ms"
        )
    return paced


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
        (tmp / "nginx.conf").write_text(nginx_conf(tmp, ips))
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

    if not shutil.which("hey"):
        reason = "`hey` is not installed (`apt-get install hey`; wrk2 is not in Debian)"
        for metric in ("TCP added p99 at half nginx peak", "http added p99 at half nginx peak"):
            result.rows.append(
                Row(metric, "n/a", "direct", "-", "< 2 ms", f"not measured: {reason}")
            )
        return result
    rate = ng / 2
    paced = _paced(targets, rate, seconds)
    result.notes.append(_paced_note(rate, paced))
    client_bound = [n for n, v in paced.items() if v["rps"] < 0.9 * rate]
    base = paced["direct"]["p99"]
    for metric, name in (
        ("TCP added p99 at half nginx peak", "mesh-tcp"),
        ("http added p99 at half nginx peak", "mesh-http"),
    ):
        added = paced[name]["p99"] - base
        if client_bound:
            verdict = (
                f"not measured: hey paced only {min(paced[n]['rps'] for n in client_bound):.0f} "
                f"of {rate:.0f} req/s ({', '.join(client_bound)}): the client, not the path, is "
                "the limit"
            )
        else:
            verdict = "PASS" if added < 2.0 else "MISS"
        result.rows.append(
            Row(
                metric,
                f"p99 {paced[name]['p99']:.2f} ms ({added:+.2f})",
                f"direct p99 {base:.2f} ms; nginx {paced['nginx']['p99'] - base:+.2f}",
                "-",
                "< 2 ms",
                verdict,
            )
        )
    if client_bound:
        low = rate / 4
        slow = _paced(targets, low, seconds)
        result.notes.append(_paced_note(low, slow))
        lbase = slow["direct"]["p99"]
        for metric, name in (
            ("TCP added p99 at 1/8 nginx peak (info)", "mesh-tcp"),
            ("http added p99 at 1/8 nginx peak (info)", "mesh-http"),
        ):
            added = slow[name]["p99"] - lbase
            result.rows.append(
                Row(
                    metric,
                    f"p99 {slow[name]['p99']:.2f} ms ({added:+.2f})",
                    f"direct p99 {lbase:.2f} ms; nginx {slow['nginx']['p99'] - lbase:+.2f}",
                    "-",
                    "(< 2 ms)",
                    "-",
                )
            )
    return result
