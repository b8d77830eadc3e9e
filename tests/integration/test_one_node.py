"""One real node (etcd + Docker): deploy, scale, remove, redeploy, self-healing, adoption."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import REPO, SWARMLITE, SwarmNode, wait_until

pytestmark = pytest.mark.integration

WEB = """
services:
  web:
    image: swarmlite/demo-web:1
    environment:
      MESSAGE: "{message}"
    ports:
      - "{port}:8080"
    healthcheck:
      test: ["CMD-SHELL",
             "echo -e 'GET /health HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc 127.0.0.1 8080 | grep -q 200"]
      interval: 1s
      timeout: 2s
      retries: 2
    deploy:
      replicas: {replicas}
      restart_policy:
        condition: any
        delay: 0s
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    n = SwarmNode(tmp_path_factory.mktemp("node") / "data", pool="10.221.0.0/16")
    try:
        n.init()
        yield n
    finally:
        n.destroy()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "compose.yml"
    path.write_text(text)
    return path


def test_deploy_scale_redeploy_and_remove(node: SwarmNode, tmp_path: Path) -> None:
    compose = write(tmp_path, WEB.format(message="v1", port=18180, replicas=2))
    out = node.deploy(compose, "life")
    assert out.returncode == 0, out.stderr
    assert "Creating service life_web" in out.stdout
    first = node.wait_running("life_web", 2)

    again = node.deploy(compose, "life")
    assert again.returncode == 0
    assert "Creating" not in again.stdout and "Updating" not in again.stdout
    time.sleep(1.0)  # give a wrong redeploy the chance to show itself
    assert {t["id"] for t in node.running("life_web")} == {t["id"] for t in first}

    assert node.cli("service", "scale", "life_web=4").returncode == 0
    node.wait_running("life_web", 4)
    assert len(node.containers("life_web")) == 4
    assert node.cli("service", "scale", "life_web=1").returncode == 0
    node.wait_running("life_web", 1)
    wait_until(lambda: len(node.containers("life_web")) == 1, timeout=30, what="scale down")

    changed = write(tmp_path, WEB.format(message="v2", port=18180, replicas=1))
    out = node.deploy(changed, "life")
    assert "Updating service life_web" in out.stdout
    wait_until(
        lambda: (
            all(t["spec"]["environment"]["MESSAGE"] == "v2" for t in node.running("life_web"))
            and len(node.running("life_web")) == 1
        ),
        timeout=60,
        what="updated task",
    )

    assert node.cli("service", "rm", "life_web").returncode == 0
    wait_until(lambda: not node.containers("life_web"), timeout=30, what="containers removed")
    missing = node.cli("service", "ps", "life_web")
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_killed_container_is_replaced(node: SwarmNode, tmp_path: Path) -> None:
    node.deploy(write(tmp_path, WEB.format(message="k", port=18181, replicas=2)), "heal")
    before = node.wait_running("heal_web", 2)
    victim = node.containers("heal_web")[0]
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    wait_until(
        lambda: (
            len(node.running("heal_web")) == 2
            and {t["id"] for t in node.running("heal_web")} != {t["id"] for t in before}
        ),
        timeout=30,
        what="replacement",
    )
    assert victim not in node.containers("heal_web")
    ps = node.cli("service", "ps", "heal_web").stdout
    assert "non-zero exit (137)" in ps
    node.cli("service", "rm", "heal_web")


NO_START = """
services:
  broken:
    image: swarmlite/busybox:1
    command: ["/no/such/binary"]
    deploy:
      restart_policy:
        condition: none
"""


def test_container_that_cannot_start_fails_and_is_removed(node: SwarmNode, tmp_path: Path) -> None:
    """Docker creates the container but cannot start it: the task fails with Docker's
    reason, and the created container is still known to the agent, so it goes with the
    service."""
    node.deploy(write(tmp_path, NO_START), "nostart")

    def failed() -> list[dict[str, object]]:
        return [
            t
            for t in node.tasks("nostart_broken")
            if t["status"]["state"] == 8 and "/no/such/binary" in (t["status"].get("err") or "")
        ]

    wait_until(failed, timeout=30, what="the task failed with the start error")
    ps = node.cli("service", "ps", "--no-trunc", "nostart_broken").stdout
    assert "/no/such/binary" in ps

    def all_containers() -> list[str]:
        return subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=swarmlite.service=nostart_broken"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()

    assert len(all_containers()) == 1  # created, never started
    assert node.cli("service", "rm", "nostart_broken").returncode == 0
    wait_until(lambda: not all_containers(), timeout=30, what="the unstarted container removed")


def test_sigkilled_daemon_adopts_its_containers(node: SwarmNode, tmp_path: Path) -> None:
    node.deploy(write(tmp_path, WEB.format(message="a", port=18182, replicas=3)), "adopt")
    node.wait_running("adopt_web", 3)
    before = node.containers("adopt_web")
    node.kill()
    assert node.containers("adopt_web") == before  # Docker keeps them running
    node.start()
    node.wait_running("adopt_web", 3)
    time.sleep(2.0)  # a duplicate start would show up here
    assert node.containers("adopt_web") == before
    all_ids = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", "label=swarmlite.service=adopt_web"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert sorted(all_ids) == before
    node.cli("service", "rm", "adopt_web")


TALKER = """
services:
  talker:
    image: swarmlite/demo-web:1
    entrypoint: ["/bin/sh", "-c",
                 "for i in 1 2 3; do echo line $$i; done; sleep 3; echo late line; exec sleep 600"]
    deploy:
      replicas: 2
"""


def test_service_logs_tail_and_follow(node: SwarmNode, tmp_path: Path) -> None:
    assert node.deploy(write(tmp_path, TALKER), "talk").returncode == 0
    tasks = node.wait_running("talk_talker", 2)
    names = {f"talk_talker.{t['slot']}" for t in tasks}
    # Followed from the start, the late line arrives while the stream is open.
    follow = subprocess.Popen(
        [*SWARMLITE, "service", "logs", "-f", "talk_talker", "--data-dir", str(node.data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert follow.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while sum("late line" in s for s in seen) < 2 and time.monotonic() < deadline:
            seen.append(follow.stdout.readline().strip())
        assert {f"{n} | late line" for n in names} <= set(seen), seen
        assert {f"{n} | line 1" for n in names} <= set(seen), seen
        # A replica started while following (a scale-up) is followed too, from its
        # first line, and the replicas already followed print nothing twice.
        node.cli("service", "scale", "talk_talker=3", check=True)
        deadline = time.monotonic() + 30
        while "talk_talker.3 | late line" not in seen and time.monotonic() < deadline:
            seen.append(follow.stdout.readline().strip())
        assert [s for s in seen if s.startswith("talk_talker.3 | ")] == [
            f"talk_talker.3 | {line}" for line in ("line 1", "line 2", "line 3", "late line")
        ], seen
        assert len(seen) == len(set(seen)), seen
    finally:
        follow.terminate()
        follow.wait(10)
    # --tail 2: each replica's last two lines, prefixed with its task.
    out = node.cli("service", "logs", "--tail", "2", "talk_talker", check=True).stdout
    assert sorted(out.splitlines()) == sorted(
        f"{n} | {line}" for n in names | {"talk_talker.3"} for line in ("line 3", "late line")
    ), out
    node.cli("stack", "rm", "talk", check=True)


def test_a_port_without_a_number_is_published_from_30000(node: SwarmNode, tmp_path: Path) -> None:
    text = WEB.format(message="auto", port=0, replicas=1).replace('"0:8080"', '"8080"')
    node.deploy(write(tmp_path, text), "autoport")
    node.wait_running("autoport_web", 1)
    (svc,) = [
        s for s in node.json("service", "ls", "--format", "json") if s["name"] == "autoport_web"
    ]
    (mapping,) = svc["ports"]
    published = int(mapping.removeprefix("*:").split("->")[0])
    assert 30000 <= published <= 32767 and mapping.endswith("->8080/tcp"), mapping

    def answer() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{published}/", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return None

    assert "auto" in wait_until(answer, timeout=30, what=f"the mesh on port {published}")
    assert node.cli("service", "rm", "autoport_web").returncode == 0
