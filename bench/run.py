"""Run the benchmarks and write docs/benchmarks.md from this one run.

    python bench/run.py                  # deploy, mesh, kill, schedule, cluster, lifecycle
    python bench/run.py deploy kill      # a subset (the doc keeps the others' earlier sections)
    python bench/run.py --quick          # fewer rounds, shorter load runs
    python bench/run.py --no-write mesh  # print only
    python bench/run.py --ref HEAD       # measure a commit (git archive of swarmlite/ and
                                         # tests/), not the working tree others are editing

Everything the run creates (a one-node swarmlite cluster in a temp dir with pool
10.226.0.0/16, ports 184xx, maybe a Docker Swarm it initialized; for ``cluster`` node
containers on a private network, for ``schedule`` an etcd in a temp dir) is removed at
the end.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
if TYPE_CHECKING:
    from bench.common import ScenarioResult

SCENARIOS = ("deploy", "mesh", "kill", "schedule", "cluster", "lifecycle")
DOC = REPO / "docs" / "benchmarks.md"


def use_ref(ref: str) -> tuple[str, Path]:
    """Export ``ref``'s swarmlite/ and tests/ and make this process and its children use them."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    src = Path(tempfile.mkdtemp(prefix="swarmlite-bench-src-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "swarmlite", "tests"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    sys.path.insert(0, str(src))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(src), os.environ.get("PYTHONPATH")])
    )
    os.chdir(src)  # `python -m swarmlite...` children look in their cwd first
    return commit, src


def earlier_sections(
    text: str, skip: set[str]
) -> tuple[str, dict[str, list[str]], dict[str, list[str]]]:
    """From a previous doc: (its date and commit, summary rows and body section per scenario),
    for the scenarios not in ``skip`` (this run's), so a partial run keeps the others."""
    head = text.split("\n## ", 1)[0]
    stamp = "; ".join(
        ln[2:] for ln in head.splitlines() if ln.startswith(("- Date:", "- swarmlite:"))
    )
    rows: dict[str, list[str]] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].split(":", 1)[0]
            current = name if name in SCENARIOS and name not in skip else None
            if current:
                sections[current] = []
        elif line.startswith("| ") and current is None:
            name = line[2:].split(" |", 1)[0]
            if name in SCENARIOS and name not in skip:
                rows.setdefault(name, []).append(line)
            continue
        if current:
            sections[current].append(line)
    for lines in sections.values():  # say which run a kept section comes from, once
        if not any(ln.startswith("_From an earlier run") for ln in lines):
            lines[1:1] = ["", f"_From an earlier run ({stamp}); not re-measured in the run above._"]
    return stamp, rows, sections


def render(
    results: list[ScenarioResult],
    info: dict[str, str],
    quick: bool,
    seconds: float,
    leaks: list[str],
    earlier: str = "",
) -> str:
    from bench.common import loadavg

    ran = {r.name for r in results}
    _, old_rows, old_sections = earlier_sections(earlier, ran)
    kept = [n for n in SCENARIOS if n in old_sections]

    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`.venv/bin/python bench/run.py`); every comparison below comes "
        "from one run.",
        "This is a shared 2-core machine: read the ratios, not the absolute numbers.",
        "",
        *(
            [
                f"Scenarios {', '.join(kept)} were not run this time: their rows and sections are "
                "kept from an earlier run (each section names it); everything else is from the run "
                "below.",
                "",
            ]
            if kept
            else []
        ),
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z')}" + (" (--quick run)" if quick else ""),
        f"- Machine: {info['nproc']} CPUs, {info['memory']} memory, Docker {info['docker']}, "
        f"kernel {info['kernel']}, Python {info['python']}",
        f"- swarmlite: commit {info['commit']}",
        f"- Run time: {seconds / 60:.1f} min; 1-minute load average {info['load']} at the start, "
        f"{loadavg()} at the end (2 CPUs: above 2 means others were competing for them)",
        "",
        "## Summary",
        "",
        "| scenario | metric | swarmlite | compared with | ratio | target | result |",
        "|---|---|---|---|---|---|---|",
    ]
    by_name = {r.name: r for r in results}
    order = [n for n in SCENARIOS if n in by_name or n in kept]
    for name in order:  # the summary, in SCENARIOS order, kept rows in their place
        r = by_name.get(name)
        if r is None:
            lines += old_rows.get(name, [])
            continue
        if r.error:
            lines.append(f"| {r.name} | - | - | - | - | - | {r.error} |")
        for row in r.rows:
            lines.append(
                f"| {r.name} | {row.metric} | {row.swarmlite} | {row.reference} | {row.ratio} | "
                f"{row.target} | {row.verdict} |"
            )
    for name in order:
        r = by_name.get(name)
        if r is None:
            lines += ["", *old_sections[name]]
            while lines and not lines[-1]:
                lines.pop()
            continue
        lines += ["", f"## {r.name}: {r.title}", "", "Method:", ""]
        lines += [f"- {m}" for m in r.method]
        if r.error:
            lines += ["", f"Result: {r.error}"]
        if r.detail:
            lines += ["", *r.detail]
        if r.notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in r.notes]
    if leaks:
        lines += ["", "## Seen while cleaning up", ""] + [f"- {x}" for x in leaks]
    return "\n".join(lines) + "\n"


def print_table(results: list[ScenarioResult]) -> None:
    print()
    print(
        f"{'scenario':8} {'metric':42} {'swarmlite':26} {'compared with':34} {'ratio':7} "
        f"{'target':16} result"
    )
    for r in results:
        if r.error:
            print(f"{r.name:8} {r.error}")
        for row in r.rows:
            print(
                f"{r.name:8} {row.metric:42} {row.swarmlite:26} {row.reference:34} {row.ratio:7} "
                f"{row.target:16} {row.verdict}"
            )
        for d in r.detail:
            print("         " + d)


# The fixed ports the scenarios publish or listen on (deploy, mesh, kill, lifecycle).
FIXED_PORTS = (18400, 18410, 18411, 18412, 18420, 18421, 18430)


def ports_taken() -> list[int]:
    taken = []
    for port in FIXED_PORTS:
        with socket.socket() as probe:
            # As a server binds: fails for a listener only, not for TIME_WAIT leftovers.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                taken.append(port)
    return taken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="swarmlite benchmarks")
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter load runs")
    parser.add_argument(
        "--ref", help="benchmark this commit of swarmlite instead of the working tree"
    )
    parser.add_argument(
        "--no-write", action="store_true", help=f"do not write {DOC.relative_to(REPO)}"
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    chosen = [s for s in SCENARIOS if s in args.scenarios] or list(SCENARIOS)
    ref = use_ref(args.ref) if args.ref else None
    import swarmlite
    from bench.common import Bench, log, machine_info, not_measured

    if ref:
        log(f"measuring commit {ref[0]} exported to {ref[1]} (swarmlite from {swarmlite.__file__})")
    # Bytecode for the code measured, as an installed package has: with
    # PYTHONDONTWRITEBYTECODE set (it is on these machines), every CLI call and the daemon
    # compiled ~40 modules again, ~45 ms of each `swarmlite deploy`.
    compileall.compile_dir(Path(swarmlite.__file__).parent, quiet=1)

    taken = ports_taken()
    if taken:
        # Another listener there (a node or nginx left by an earlier run) would answer
        # the load in place of what this run starts, and the tables would be about it.
        log(f"ports {', '.join(map(str, taken))} are in use: stop what listens there first")
        return 2

    # SIGTERM unwinds like Ctrl-C, so the cleanup below still runs.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.perf_counter()
    info = machine_info()
    if ref:
        info["commit"] = f"{ref[0]} (`--ref {args.ref}`: a clean export, not the working tree)"
    bench = Bench(quick=args.quick)
    results: list[ScenarioResult] = []
    try:
        for name in chosen:
            module = importlib.import_module(f"bench.{name}")
            log(f"scenario {name}")
            try:
                results.append(module.run(bench))
            except Exception as exc:
                log(f"scenario {name} failed: {exc!r}")
                results.append(not_measured(name, module.TITLE, module.METHOD, f"crashed: {exc!r}"))
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        bench.close()
        if ref:
            shutil.rmtree(ref[1], ignore_errors=True)
    print_table(results)
    if not args.no_write:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        earlier = DOC.read_text() if DOC.exists() else ""
        DOC.write_text(
            render(results, info, args.quick, time.perf_counter() - started, bench.leaks, earlier)
        )
        log(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
