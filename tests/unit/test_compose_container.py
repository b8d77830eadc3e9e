"""A compose file all the way to the container the agent creates: each key the
README supports reaches Docker as Compose and Swarm would pass it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from swarmlite.agent.containers import container_config
from swarmlite.errors import ComposeErrors
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


def test_cpus_and_healthcheck_durations_are_exact_nanos(tmp_path: Path) -> None:
    spec = service(
        tmp_path,
        """
        services:
          a:
            image: x
            deploy: {resources: {limits: {cpus: '2.01'}}}
            healthcheck: {test: "true", interval: 4.1s, timeout: 2.01s, start_period: 4.1s}
        """,
    )
    cfg = container_config(task_of(spec), [], "n1")
    assert cfg.host_config["NanoCpus"] == 2_010_000_000  # docker run --cpus 2.01
    assert cfg.healthcheck is not None
    assert cfg.healthcheck["interval"] == cfg.healthcheck["start_period"] == 4_100_000_000
    assert cfg.healthcheck["timeout"] == 2_010_000_000


def test_an_ingress_udp_port_warns_it_is_not_published(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(
        "services: {dns: {image: x, ports: ['53:53/udp', "
        "{target: 54, published: 54, protocol: udp, mode: host}]}}"
    )
    stack = load_stack([path], stack="shop", environ={})
    udp = [w for w in stack.warnings if "udp" in w]
    assert len(udp) == 1 and "53/udp" in udp[0] and "mode: host" in udp[0], stack.warnings


def test_tmpfs_options_other_than_size_are_named_as_ignored(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services: {a: {image: x, tmpfs: ['/run:size=1m,mode=0700,noexec']}}")
    stack = load_stack([path], stack="shop", environ={})
    assert stack.services[0].mounts[0].tmpfs_size == 2**20
    assert len(stack.warnings) == 1
    assert "tmpfs:mode" in stack.warnings[0] and "tmpfs:noexec" in stack.warnings[0]


def test_env_file_quoted_value_may_be_followed_by_a_comment(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text(
        'A="quoted" # the port\nB=\'single\'  # c\nC="say \\"hi\\"" #\n'
    )
    spec = service(tmp_path, "services: {a: {image: x, env_file: app.env}}")
    assert spec.environment == {"A": "quoted", "B": "single", "C": 'say "hi"'}


def test_infinite_or_nan_numbers_and_durations_are_refused(tmp_path: Path) -> None:
    # .inf crashed the agent (math.ceil of the grace period); .nan cpus was stored as null.
    path = tmp_path / "compose.yaml"
    path.write_text(
        textwrap.dedent(
            """
            services:
              a:
                image: x
                stop_grace_period: .inf
                deploy:
                  resources: {limits: {cpus: .nan}}
                  update_config: {max_failure_ratio: .nan}
                healthcheck: {test: "true", interval: -.inf}
            """
        )
    )
    with pytest.raises(ComposeErrors) as info:
        load_stack([path], stack="shop", environ={})
    keys = sorted(e.key or "" for e in info.value.errors)
    assert keys == [
        "deploy.resources.limits.cpus",
        "deploy.update_config.max_failure_ratio",
        "healthcheck.interval",
        "stop_grace_period",
    ]
