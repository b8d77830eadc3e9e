"""A compose file all the way to the container the agent creates: each key the
README supports reaches Docker as Compose and Swarm would pass it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from swarmlite.spec.compose import load_stack
from swarmlite.spec.objects import Task
from swarmlite.spec.service import RestartPolicy, ServiceSpec


def service(tmp_path: Path, text: str) -> ServiceSpec:
    path = tmp_path / "compose.yaml"
    path.write_text(textwrap.dedent(text))
    stack = load_stack([path], stack="shop", environ={})
    return stack.services[0]


def task_of(spec: ServiceSpec) -> Task:
    return Task(
        id="t1",
        service_id="s1",
        service_name=spec.full_name,
        slot=1,
        spec=spec,
        spec_version=1,
        spec_hash="h",
    )


def test_restart_on_failure_0_is_unlimited_as_in_docker_and_swarm(tmp_path: Path) -> None:
    spec = service(tmp_path, 'services: {a: {image: x, restart: "on-failure:0"}}')
    assert spec.restart_policy == RestartPolicy(condition="on-failure", max_attempts=None)
