"""An image's own HEALTHCHECK, with none in the compose file, gates running, as in Swarm."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import SwarmNode, wait_until

pytestmark = pytest.mark.integration

IMAGE = "swarmlite/test-image-healthcheck:1"
RUNNING, FAILED = 5, 8

# Healthy once /tmp/ok exists (the service's command decides if and when); failures in
# the first 8 s do not count, as Docker defines start_period.
DOCKERFILE = """FROM {base}
HEALTHCHECK --interval=1s --timeout=2s --retries=2 --start-period=8s \\
  CMD ["sh", "-c", "test -f /tmp/ok"]
"""

COMPOSE = """
services:
  late:
    image: {image}
    command: ["sh", "-c", "sleep 4; touch /tmp/ok; exec sleep 600"]
  never:
    image: {image}
    command: ["sleep", "600"]
    deploy:
      restart_policy:
        condition: none
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, busybox_image: str) -> Iterator[SwarmNode]:
    ctx = tmp_path_factory.mktemp("image")
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=busybox_image))
    subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(ctx)], check=True)
    n = SwarmNode(tmp_path_factory.mktemp("node") / "data", pool="10.224.0.0/16")
    try:
        n.init()
        yield n
    finally:
        n.destroy()
        subprocess.run(["docker", "rmi", "-f", IMAGE], capture_output=True, check=False)


def test_the_images_healthcheck_decides_running_and_failure(
    node: SwarmNode, tmp_path: Path
) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(COMPOSE.format(image=IMAGE))
    deployed = time.monotonic()
    assert node.deploy(compose, "imgcheck").returncode == 0

    # The container is up at once, but the task waits for the image's check (~4 s).
    wait_until(lambda: node.containers("imgcheck_late"), timeout=30, what="late's container")
    states = []
    while time.monotonic() - deployed < 3.0:
        states += [t["status"]["state"] for t in node.tasks("imgcheck_late")]
        time.sleep(0.2)
    assert states and RUNNING not in states, states
    node.wait_running("imgcheck_late", 1, timeout=30)

    def failed_unhealthy() -> list[dict[str, object]]:
        return [
            t
            for t in node.tasks("imgcheck_never")
            if t["status"]["state"] == FAILED and "unhealthy" in (t["status"].get("err") or "")
        ]

    wait_until(failed_unhealthy, timeout=30, what="never's task failed as unhealthy")
    assert not any(t["status"]["state"] == RUNNING for t in node.tasks("imgcheck_never"))
