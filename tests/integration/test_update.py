"""Rolling updates and rollbacks on one real node: pause, automatic and manual rollback."""

from __future__ import annotations

import http.client
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import SwarmNode, wait_until

pytestmark = pytest.mark.integration

WEB_PORT = 18501
API_PORT = 18502
GOOD_IMAGE = "swarmlite/demo-web:update-test"  # a second tag of demo-web:1
PROBE = "echo -e 'GET /health HTTP/1.0\\\\r\\\\n\\\\r\\\\n' | nc 127.0.0.1 8080 | grep -q 200"

STACK = """
services:
  web:
    image: swarmlite/demo-web:1
    ports: ["{web_port}:8080"]
    healthcheck: {{test: ["CMD-SHELL", "{probe}"], interval: 1s, timeout: 2s, retries: 2}}
    deploy:
      replicas: 2
      restart_policy: {{condition: any, delay: 0s}}
      update_config: {{parallelism: 1, monitor: 1s, failure_action: pause}}
      rollback_config: {{parallelism: 0, monitor: 1s}}
  api:
    image: swarmlite/demo-web:1
{api_entrypoint}
    ports: ["{api_port}:8080"]
    healthcheck: {{test: ["CMD-SHELL", "{probe}"], interval: 1s, timeout: 2s, retries: 2}}
    deploy:
      replicas: 2
      restart_policy: {{condition: any, delay: 0s}}
      update_config: {{parallelism: 1, monitor: 2s, failure_action: rollback}}
      rollback_config: {{parallelism: 0, monitor: 1s}}
"""
CRASH = '    entrypoint: ["/bin/sh", "-c", "sleep 1; exit 3"]'


def compose(tmp: Path, api_entrypoint: str = "") -> Path:
    path = tmp / "compose.yml"
    path.write_text(
        STACK.format(
            web_port=WEB_PORT, api_port=API_PORT, probe=PROBE, api_entrypoint=api_entrypoint
        )
    )
    return path


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmNode]:
    subprocess.run(["docker", "tag", "swarmlite/demo-web:1", GOOD_IMAGE], check=True)
    n = SwarmNode(tmp_path_factory.mktemp("update") / "data", pool="10.227.0.0/16")
    try:
        n.init()
        out = n.deploy(compose(tmp_path_factory.mktemp("update-compose")), "upd")
        assert out.returncode == 0, out.stderr
        n.wait_running("upd_web", 2)
        n.wait_running("upd_api", 2)
        yield n
    finally:
        n.destroy()
        subprocess.run(["docker", "rmi", GOOD_IMAGE], capture_output=True)


def get(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, f"answered {resp.status}: {body!r}"
        return body
    finally:
        conn.close()


def inspect(node: SwarmNode, service: str) -> dict[str, Any]:
    [svc] = node.json("service", "inspect", service)
    return dict(svc)


def wait_state(node: SwarmNode, service: str, state: str, timeout: float = 40) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        svc = inspect(node, service)
        return svc if svc["update_status"]["state"] == state else None

    return wait_until(check, timeout=timeout, what=f"{service} update state {state}")


def test_missing_image_pauses_while_old_replicas_serve_then_manual_rollback(
    node: SwarmNode,
) -> None:
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal served
        while not stop.is_set():
            try:
                get(WEB_PORT)
                served += 1
            except Exception as exc:
                failures.append(repr(exc))
            time.sleep(0.05)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        out = node.cli("service", "update", "--image", "swarmlite/nope:9", "upd_web")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "upd_web: update started (version 2)"
        paused = wait_state(node, "upd_web", "paused")
        time.sleep(1.0)  # paused: nothing more happens, the old replicas keep serving
    finally:
        stop.set()
        thread.join()
    assert failures == [] and served > 10
    message = paused["update_status"]["message"]
    assert message.startswith("update paused: task upd_web.1 failed: ")
    assert "image not found: swarmlite/nope:9" in message
    old = [t for t in node.running("upd_web") if t["spec"]["image"] == "swarmlite/demo-web:1"]
    assert [t["slot"] for t in old] == [2]
    pretty = node.cli("service", "inspect", "--pretty", "upd_web").stdout
    assert "State:            paused" in pretty and "image not found" in pretty
    ls = node.cli("service", "ls").stdout
    assert "1/2 (paused)" in ls

    out = node.cli("service", "rollback", "upd_web")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "upd_web: rollback started (version 3)"
    done = wait_state(node, "upd_web", "rollback_completed")
    assert done["spec"]["image"] == "swarmlite/demo-web:1"
    assert done["previous_spec"]["image"] == "swarmlite/nope:9"
    node.wait_running("upd_web", 2)


def test_crashing_update_rolls_back_by_itself(node: SwarmNode, tmp_path: Path) -> None:
    before = inspect(node, "upd_api")
    out = node.deploy(compose(tmp_path, CRASH), "upd")
    assert out.returncode == 0, out.stderr
    done = wait_state(node, "upd_api", "rollback_completed", timeout=60)
    assert done["spec"] == before["spec"]
    assert done["version"] == before["version"] + 2
    assert done["update_status"]["message"] == "rollback completed"
    running = node.wait_running("upd_api", 2)
    assert all(t["spec"].get("entrypoint") is None for t in running)
    get(API_PORT)
    crashed = [t for t in node.tasks("upd_api") if t["status"]["state"] == 8]  # FAILED
    assert crashed and all(t["spec"]["entrypoint"][0] == "/bin/sh" for t in crashed)


def test_good_update_completes_and_rollback_returns(node: SwarmNode) -> None:
    out = node.cli("service", "update", "--image", GOOD_IMAGE, "--env-add", "MESSAGE=v2", "upd_web")
    assert out.returncode == 0, out.stderr
    done = wait_state(node, "upd_web", "completed", timeout=60)
    assert done["update_status"]["completed_at"] >= done["update_status"]["started_at"] > 0
    running = node.wait_running("upd_web", 2)
    assert {t["spec"]["image"] for t in running} == {GOOD_IMAGE}
    wait_until(lambda: get(WEB_PORT).startswith("v2 "), timeout=10, what="v2 answers")

    assert node.cli("service", "rollback", "upd_web").returncode == 0
    back = wait_state(node, "upd_web", "rollback_completed")
    assert back["spec"]["image"] == "swarmlite/demo-web:1"
    assert "MESSAGE" not in back["spec"]["environment"]
    wait_until(
        lambda: (
            {t["spec"]["image"] for t in node.wait_running("upd_web", 2)}
            == {"swarmlite/demo-web:1"}
        ),
        timeout=30,
        what="old image back",
    )
    wait_until(lambda: get(WEB_PORT).startswith("hello from "), timeout=10, what="v1 answers")
