"""Several ``-f`` files merged in order, as Compose does."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from swarmlite.errors import ComposeError, ComposeErrors
from swarmlite.spec.compose import load_stack
from swarmlite.spec.service import Mount, PortSpec

BASE = """
services:
  web:
    image: app:1
    command: ["serve", "--port", "80"]
    environment: [A=1, B=2]
    labels: {tier: front}
    ports: ["8080:80"]
    expose: [9000]
    volumes:
      - data:/data
      - ./conf:/etc/app
    networks: [front]
    deploy:
      replicas: 2
      labels: [x=1]
      resources: {limits: {cpus: "1", memory: 256m}}
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
  db:
    image: postgres
volumes:
  data:
networks:
  front:
"""

OVERRIDE = """
services:
  web:
    image: app:2
    command: serve --debug
    environment: {B: two, C: "3"}
    labels: [owner=me]
    ports: ["8080:80", "9443:443"]
    expose: [9001]
    volumes:
      - cache:/data
    networks: {back: {}}
    deploy:
      labels: {y: "2"}
      resources: {limits: {memory: 1g}}
    healthcheck:
      test: ["CMD", "false"]
  worker:
    image: app:2
volumes:
  cache:
networks:
  back:
"""


def files(tmp_path: Path, *texts: str) -> list[Path]:
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"compose{i}.yaml"
        path.write_text(textwrap.dedent(text))
        paths.append(path)
    return paths


def test_merge_follows_compose_rules(tmp_path: Path) -> None:
    stack = load_stack(files(tmp_path, BASE, OVERRIDE), environ={})
    web = next(s for s in stack.services if s.name == "web")
    assert web.image == "app:2"
    assert web.command == ("serve", "--debug")  # overridden, not appended
    assert web.environment == {"A": "1", "B": "two", "C": "3"}
    assert web.labels == {"tier": "front", "owner": "me"}
    assert web.ports == (PortSpec(target=80, published=8080), PortSpec(target=443, published=9443))
    assert web.expose == (9000, 9001)
    # Merged by container path: the override's mount on /data replaces the base one.
    assert web.mounts == (
        Mount(type="bind", source=str((tmp_path / "conf").absolute()), target="/etc/app"),
        Mount(type="volume", source="cache", target="/data"),
    )
    assert web.networks == ("front", "back")
    assert web.replicas == 2
    assert web.deploy_labels == {"x": "1", "y": "2"}
    assert (web.resources.limits.cpus, web.resources.limits.memory) == (1.0, 2**30)
    assert web.healthcheck is not None
    assert (web.healthcheck.test, web.healthcheck.interval) == (("CMD", "false"), 5.0)
    assert [s.name for s in stack.services] == ["web", "db", "worker"]
    assert [v.name for v in stack.volumes] == ["data", "cache"]


def test_error_in_second_file_names_that_file(tmp_path: Path) -> None:
    paths = files(tmp_path, BASE, "services:\n  web:\n    deploy:\n      replicas: -1\n")
    with pytest.raises(ComposeError) as info:
        load_stack(paths, environ={})
    err = info.value
    assert (err.file, err.line, err.service, err.key) == (
        str(paths[1]),
        4,
        "web",
        "deploy.replicas",
    )


def test_stack_name_and_env_come_from_first_file(tmp_path: Path) -> None:
    first, second = tmp_path / "app", tmp_path / "other"
    first.mkdir()
    second.mkdir()
    (first / ".env").write_text("TAG=7\n")
    (first / "a.yaml").write_text("services:\n  web:\n    image: x\n")
    (second / "b.yaml").write_text("services:\n  web:\n    image: x:${TAG}\n")
    stack = load_stack([first / "a.yaml", second / "b.yaml"], environ={})
    assert (stack.name, stack.services[0].image) == ("app", "x:7")


def test_malformed_mounts_in_an_override_are_reported_not_a_crash(tmp_path: Path) -> None:
    over = "services:\n  web:\n    volumes:\n      - [a, b]\n      - target: [a]\n"
    paths = files(tmp_path, "services:\n  web:\n    image: x\n    volumes: [/srv:/b]\n", over)
    with pytest.raises(ComposeErrors) as info:
        load_stack(paths, environ={})
    found = [(e.file, e.line, e.key) for e in info.value.errors]
    assert (str(paths[1]), 4, "volumes") in found


def test_reset_and_override_tags(tmp_path: Path) -> None:
    base = """
    services:
      web:
        image: app:1
        command: ["a", "b"]
        ports: ["8080:80"]
        environment: {A: "1", B: "2"}
        deploy: {replicas: 3}
        labels: {gone: !reset x, kept: "1"}
    """
    over = """
    services:
      web:
        command: !reset null
        ports: !override ["9090:80"]
        environment: {A: !reset , C: "3"}
        deploy: !reset {}
    """
    web = load_stack(files(tmp_path, base, over), environ={}).services[0]
    assert web.command is None  # reset, not the string "null"
    assert web.ports == (PortSpec(target=80, published=9090),)  # replaced, not appended
    assert web.environment == {"B": "2", "C": "3"}
    assert web.replicas == 1
    assert web.labels == {"kept": "1"}  # a !reset in the same file removes the key too


def test_unknown_yaml_tag_is_refused_with_its_line(tmp_path: Path) -> None:
    paths = files(tmp_path, "services:\n  web:\n    image: x\n    command: !shell echo hi\n")
    with pytest.raises(ComposeError) as info:
        load_stack(paths, environ={})
    assert (info.value.file, info.value.line) == (str(paths[0]), 4)
    assert "!shell" in str(info.value)
