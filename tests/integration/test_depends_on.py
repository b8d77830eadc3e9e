"""depends_on on one real node: web waits for a healthy db, deploy waits and tells the
truth (converged lines, a failing image named), and stack rm stops web before db."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, SWARMLITE, SwarmNode, wait_until

pytestmark = pytest.mark.integration

POOL = "10.229.0.0/16"

# db turns healthy ~3 s after it starts; both stop at once on SIGTERM.
STACK = """
services:
  db:
    image: swarmlite/busybox:1
    command:
      - sh
      - -c
      - trap 'exit 0' TERM; sleep 3; touch /tmp/ready; while true; do sleep 0.2; done
    healthcheck:
      test: ["CMD-SHELL", "test -f /tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
    stop_grace_period: 2s
  web:
    image: swarmlite/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    depends_on:
      db:
        condition: service_healthy
    stop_grace_period: 2s
"""

MISSING_IMAGE = """
services:
  ghost:
    image: swarmlite/does-not-exist:404
    deploy:
      restart_policy:
        condition: any
        delay: 0s
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("depends") / "data", pool=POOL)
    try:
        n.init()
        yield n
    finally:
        n.destroy()


def write(tmp_path: Path, text: str, name: str = "compose.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_web_waits_for_a_healthy_db_and_deploy_waits_for_both(
    node: SwarmNode, tmp_path: Path
) -> None:
    compose = write(tmp_path, STACK)
    args = ["deploy", "-f", str(compose), "--stack", "deps", "--timeout", "60"]
    deploy = subprocess.Popen(
        [*SWARMLITE, *args, "--data-dir", str(node.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        # While db is not healthy yet, service ps shows web's task pending and why.
        held = wait_until(
            lambda: [
                t
                for t in node.tasks("deps_web")
                if t["status"]["state"] == 1 and "waiting for db" in t["pending_reason"]
            ],
            timeout=20,
            what="web held by its dependency",
        )
        assert "service_healthy (0/1 healthy)" in held[0]["pending_reason"]
        ps = node.cli("service", "ps", "deps_web", "--no-trunc").stdout
        assert "waiting for db" in ps
        out, err = deploy.communicate(timeout=90)
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait()
    assert deploy.returncode == 0, err
    lines = out.splitlines()
    assert "deps_web: 1 pending: waiting for db: service_healthy (0/1 healthy)" in lines
    assert "deps_db: converged" in lines and "deps_web: converged" in lines
    assert lines.index("deps_db: 1/1 running") < lines.index("deps_web: 1/1 running")
    assert lines[-1] == "Stack deps converged"
    (web_task,) = node.running("deps_web")
    assert web_task["pending_reason"] == ""

    # Nothing changed: the deploy sees a converged stack at once.
    again = node.deploy(compose, "deps", wait=True)
    assert again.returncode == 0, again.stderr
    assert "Stack deps converged" in again.stdout


def test_stack_rm_stops_web_before_db(node: SwarmNode, tmp_path: Path) -> None:
    if not node.running("deps_web"):
        assert node.deploy(write(tmp_path, STACK), "deps", wait=True).returncode == 0
    since = time.time() - 1
    out = node.cli("stack", "rm", "deps")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["Removing service deps_db", "Removing service deps_web"]
    wait_until(lambda: not node.containers("deps_db"), timeout=30, what="db stopped")
    events = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{time.time():.3f}",
            "--filter",
            "event=die",
            "--filter",
            f"label=swarmlite.node={node.node_id}",
            "--format",
            "{{json .}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    died = [
        (e["timeNano"], e["Actor"]["Attributes"].get("swarmlite.service", ""))
        for e in map(json.loads, events)
    ]
    order = [service for _, service in sorted(died)]
    assert order == ["deps_web", "deps_db"], died


def test_deploy_with_a_missing_image_exits_non_zero_and_says_why(
    node: SwarmNode, tmp_path: Path
) -> None:
    out = node.deploy(
        write(tmp_path, MISSING_IMAGE, "ghost.yml"), "ghost", "--timeout", "50", wait=True
    )
    assert out.returncode == 1, out.stdout
    assert "ghost_ghost: task ghost_ghost.1 failed: image not found" in out.stdout
    assert "deploy of stack ghost failed: ghost_ghost: task ghost_ghost.1 failed" in out.stderr
    assert "image not found: swarmlite/does-not-exist:404" in out.stderr
    node.cli("stack", "rm", "ghost")


CRASHLOOP = """
services:
  loop:
    image: swarmlite/busybox:1
    command: {command}
    stop_grace_period: 1s
    deploy:
      restart_policy:
        condition: any
        delay: 1s
"""


def test_a_crash_loop_fails_the_deploy_and_its_fix_converges(
    node: SwarmNode, tmp_path: Path
) -> None:
    crash = CRASHLOOP.format(command='["sh", "-c", "exit 1"]')
    bad = node.deploy(write(tmp_path, crash, "crash.yml"), "loop", wait=True, timeout=90)
    # Running for a moment after each restart is not converged: 3 failures fail it.
    assert bad.returncode == 1, bad.stdout
    assert "Stack loop converged" not in bad.stdout
    assert "(3 failed tasks)" in bad.stderr
    # The fix converges: the broken version's failures are not the fix's.
    fixed = CRASHLOOP.format(command='["sleep", "600"]')
    good = node.deploy(write(tmp_path, fixed, "fixed.yml"), "loop", wait=True, timeout=90)
    assert good.returncode == 0, good.stderr
    assert "Stack loop converged" in good.stdout
    assert "exit (1)" not in good.stdout  # no failure of the old version shown as news
    node.cli("stack", "rm", "loop")


VERSIONED = """
services:
  app:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    environment:
      VERSION: "{version}"
    stop_grace_period: 2s
    deploy:
      replicas: 2
      restart_policy:
        condition: any
        delay: 0s
      update_config:
        failure_action: pause
        monitor: 1s
"""


def test_rollback_on_failure_returns_the_updated_service_to_what_served(
    node: SwarmNode, tmp_path: Path
) -> None:
    good = write(tmp_path, VERSIONED.format(image="swarmlite/busybox:1", version="1"), "v1.yml")
    first = node.deploy(good, "rb", wait=True)
    assert first.returncode == 0, first.stderr
    bad_text = VERSIONED.format(image="swarmlite/does-not-exist:404", version="2")
    bad = node.deploy(
        write(tmp_path, bad_text, "v2.yml"),
        "rb",
        "--rollback-on-failure",
        "--timeout",
        "50",
        wait=True,
        timeout=120,
    )
    assert bad.returncode == 1, bad.stdout
    assert "deploy of stack rb failed: rb_app: update paused" in bad.stderr
    assert "update paused: update paused" not in bad.stderr  # said once
    assert "manually requested" not in bad.stdout  # the rollback says the deploy asked
    assert "rolled back rb_app" in bad.stderr
    assert "Rolling back rb_app" in bad.stdout
    running = node.wait_running("rb_app", 2)
    assert {t["spec"]["environment"]["VERSION"] for t in running} == {"1"}
    node.cli("stack", "rm", "rb")
